"""Lorenz-63 twin experiment: strong-constraint 4DVar over one chaotic window.

The truth starts on the attractor; all three variables are observed every 0.1
time units (10 model steps of 0.01) with noise 1 over a window of 1 time unit
(about one Lyapunov time). The background is the truth plus an error of standard
deviation 2 at the initial time. Strong-constraint 4DVar (L-BFGS) finds the
initial state that best fits the whole window; the analysis error is well below
both the background's and the observations'. Saves time series of truth /
observations / background / analysis and the Dataset.

    python examples/lorenz63_4dvar.py [--out examples/output] [--quick]
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
from assimilax.dynamics import Lorenz63  # noqa: E402
from assimilax.io import observations_from_dataset, twin_experiment  # noqa: E402
from assimilax.observations import Identity, ScalarNoise  # noqa: E402
from assimilax.plotting import timeseries  # noqa: E402
from assimilax.priors import DiagonalBackground  # noqa: E402


NAME = "lorenz63_4dvar"


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def main(out="examples/output", quick=False, seed=0):
    """Run the experiment, print a summary, save ``NAME.png`` and ``NAME.nc``.

    Returns a dict of the printed numbers (RMSEs, noise, steps, seconds).
    """
    start = time.perf_counter()
    model = Lorenz63()  # RK4, dt = 0.01
    dt, noise_std, background_std = 0.01, 1.0, 2.0
    # Spin up onto the attractor: 10 time units (~9 Lyapunov times) from (1, 1, 1).
    spin = model.integrate(jnp.ones(3), jnp.asarray([0.0, 10.0]))
    truth0 = spin[-1]
    steps = 50 if quick else 100
    times = jnp.arange(steps + 1.0) * dt
    operator, noise = Identity(), ScalarNoise(noise_std)
    key_obs, key_b = jax.random.split(jax.random.key(seed))
    twin = twin_experiment(
        model, truth0, times, operator, noise, key_obs, observe_every=10
    )
    obs = observations_from_dataset(twin, operator=operator, noise=noise)
    xb = truth0 + background_std * jax.random.normal(key_b, (3,), truth0.dtype)
    problem = StrongConstraint4DVar(
        model, obs, DiagonalBackground(xb, std=background_std), t0=0.0
    )
    result = assimilate(problem, solver=ax.LBFGS(rtol=1e-8, max_steps=1000))

    ds = result.assign(truth=twin["truth"])
    observed = np.isfinite(ds["obs"].values).all(axis=1)
    numbers = {
        "obs_noise": noise_std,
        "rmse_obs": rmse(ds["obs"].values[observed], ds["truth"].values[observed]),
        "rmse_background_x0": rmse(xb, truth0),
        "rmse_analysis_x0": rmse(ds["analysis"].isel(time=0), truth0),
        "rmse_background": rmse(ds["background"], ds["truth"]),
        "rmse_analysis": rmse(ds["analysis"], ds["truth"]),
        "num_steps": int(result.attrs["num_steps"]),
        "seconds": time.perf_counter() - start,
    }
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out / f"{NAME}.nc")
    fig = timeseries(
        ds,
        ("truth", "obs", "background", "analysis"),
        title=f"Lorenz-63, window {steps * dt:g}: strong-constraint 4DVar",
    )
    fig.savefig(out / f"{NAME}.png", dpi=100)
    print(f"Lorenz-63 (window {steps * dt:g}, all observed every 0.1, noise 1)")
    print(f"  {'':<24}{'RMSE':>10}")
    rows = [
        ("observations", "rmse_obs"),
        ("background (x0)", "rmse_background_x0"),
        ("background (window)", "rmse_background"),
        ("analysis (x0)", "rmse_analysis_x0"),
        ("analysis (window)", "rmse_analysis"),
    ]
    for label, key in rows:
        print(f"  {label:<24}{numbers[key]:>10.4f}")
    print(f"  L-BFGS steps {numbers['num_steps']}, {numbers['seconds']:.1f} s")
    return numbers


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output", help="output directory")
    parser.add_argument("--quick", action="store_true", help="a shorter window")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main(**vars(_parse()))
