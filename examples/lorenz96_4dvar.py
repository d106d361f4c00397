"""Lorenz-96 twin experiment: strong-constraint 4DVar on the Sakov & Oke setup.

The setup of Sakov & Oke (2008) as DAPPER packages it: ``n = 40``, ``F = 8``, RK4
step 0.05, all 40 variables observed every 0.2 time units (every 4th step) with
unit-variance noise. One window of 4 observation intervals (0.8 time units,
about 1.4 Lyapunov times) from a background with error standard deviation 1:
strong-constraint 4DVar brings the analysis error well below the observation
noise. (Cycled over many windows, this is the DAPPER benchmark of
`benchmarks/lorenz96.py`.) Saves a Hovmöller diagram and the Dataset.

    python examples/lorenz96_4dvar.py [--out examples/output] [--quick]
"""

import argparse
import pathlib
import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.assimilation import assimilate  # noqa: E402
from assimilax.costs import StrongConstraint4DVar  # noqa: E402
from assimilax.dynamics import Lorenz96  # noqa: E402
from assimilax.io import observations_from_dataset, twin_experiment  # noqa: E402
from assimilax.observations import Identity, ScalarNoise  # noqa: E402
from assimilax.plotting import hovmoller  # noqa: E402
from assimilax.priors import DiagonalBackground  # noqa: E402


NAME = "lorenz96_4dvar"


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def main(out="examples/output", quick=False, seed=0):
    """Run the experiment, print a summary, save ``NAME.png`` and ``NAME.nc``.

    Returns a dict of the printed numbers (RMSEs, noise, steps, seconds).
    """
    start = time.perf_counter()
    n = 20 if quick else 40
    model = Lorenz96(n=n, F=8.0)  # RK4, dt = 0.05
    dt, noise_std, background_std = 0.05, 1.0, 1.0
    key_spin, key_obs, key_b = jax.random.split(jax.random.key(seed), 3)
    # Spin up onto the attractor: 20 time units from a perturbed rest state F.
    x = 8.0 + 0.01 * jax.random.normal(key_spin, (n,), jnp.float64)
    truth0 = model.integrate(x, jnp.asarray([0.0, 20.0]))[-1]
    times = jnp.arange(17.0) * dt  # 4 observation intervals of 4 steps
    operator, noise = Identity(), ScalarNoise(noise_std)
    twin = twin_experiment(
        model,
        truth0,
        times,
        operator,
        noise,
        key_obs,
        observe_every=4,
        coords={"x": ("x", np.arange(n), {"long_name": "variable index"})},
    )
    obs = observations_from_dataset(twin, operator=operator, noise=noise)
    xb = truth0 + background_std * jax.random.normal(key_b, (n,), truth0.dtype)
    problem = StrongConstraint4DVar(
        model, obs, DiagonalBackground(xb, std=background_std), t0=0.0
    )
    result = assimilate(problem, solver=ax.LBFGS(rtol=1e-8, max_steps=1000))

    ds = result.assign(truth=twin["truth"]).assign_coords(x=twin["x"])
    observed = np.isfinite(ds["obs"].values).all(axis=1)
    numbers = {
        "obs_noise": noise_std,
        "rmse_obs": rmse(ds["obs"].values[observed], ds["truth"].values[observed]),
        "rmse_background_x0": rmse(xb, truth0),
        "rmse_analysis_x0": rmse(ds["analysis"].isel(time=0), truth0),
        "rmse_background": rmse(ds["background"], ds["truth"]),
        "rmse_analysis": rmse(ds["analysis"], ds["truth"]),
        "rmse_analysis_end": rmse(ds["analysis"].isel(time=-1), twin["truth"][-1]),
        "num_steps": int(result.attrs["num_steps"]),
        "seconds": time.perf_counter() - start,
    }
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out / f"{NAME}.nc")
    fig = hovmoller(
        ds,
        ("truth", "obs", "background", "analysis"),
        title=f"Lorenz-96, n={n}, F=8, window 0.8: strong-constraint 4DVar",
    )
    fig.savefig(out / f"{NAME}.png", dpi=100)
    print(f"Lorenz-96 (n={n}, all observed every 0.2, noise 1, window 0.8)")
    print(f"  {'':<24}{'RMSE':>10}")
    rows = [
        ("observations", "rmse_obs"),
        ("background (x0)", "rmse_background_x0"),
        ("background (window)", "rmse_background"),
        ("analysis (x0)", "rmse_analysis_x0"),
        ("analysis (window end)", "rmse_analysis_end"),
        ("analysis (window)", "rmse_analysis"),
    ]
    for label, key in rows:
        print(f"  {label:<24}{numbers[key]:>10.4f}")
    print(f"  L-BFGS steps {numbers['num_steps']}, {numbers['seconds']:.1f} s")
    return numbers


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output", help="output directory")
    parser.add_argument("--quick", action="store_true", help="n = 20 variables")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main(**vars(_parse()))
