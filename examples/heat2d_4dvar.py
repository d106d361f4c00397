"""Heat 2D twin experiment: strong-constraint 4DVar from a gappy, noisy field.

A truth diffuses on a periodic 64x64 grid. A random 30% of the points are observed
every 5 model steps with noise 0.05, except in a rectangular gap (a "cloud") where
nothing is ever observed. Strong-constraint 4DVar with a diffusion-correlated
background error recovers the initial state, inside the gap too, from the
model's smoothing and the correlations of ``B``. Saves maps of truth /
observations / background / analysis at the initial time and the Dataset.

    python examples/heat2d_4dvar.py [--out examples/output] [--quick]
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
from assimilax.costs import ControlVariable, StrongConstraint4DVar  # noqa: E402
from assimilax.dynamics import Heat2D  # noqa: E402
from assimilax.io import observations_from_dataset, twin_experiment  # noqa: E402
from assimilax.observations import Mask, ScalarNoise  # noqa: E402
from assimilax.plotting import snapshot  # noqa: E402
from assimilax.priors import DiffusionBackground  # noqa: E402


NAME = "heat2d_4dvar"


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def main(out="examples/output", quick=False, seed=0):
    """Run the experiment, print a summary, save ``NAME.png`` and ``NAME.nc``.

    Returns a dict of the printed numbers (RMSEs, noise, steps, seconds).
    """
    start = time.perf_counter()
    n, noise_std = (32 if quick else 64), 0.05
    x = np.arange(n) / n
    X, Y = np.meshgrid(x, x, indexing="ij")  # arrays are (x, y)
    truth0 = jnp.asarray(
        np.sin(2 * np.pi * X) * np.cos(2 * np.pi * Y)
        + 0.5 * np.cos(2 * np.pi * (2 * X + Y))
        + 0.3 * np.sin(2 * np.pi * 3 * Y)
    )
    model = Heat2D(shape=(n, n), kappa=0.5 / (4 * np.pi**2))
    times = jnp.arange(21.0) * 0.01
    rng = np.random.default_rng(seed)
    gap = (X > 0.55) & (X < 0.85) & (Y > 0.2) & (Y < 0.6)
    mask = Mask((rng.random((n, n)) < 0.3) & ~gap)
    noise = ScalarNoise(noise_std)
    axis = {"long_name": "position", "units": "1"}
    coords = {"x": ("x", x, axis), "y": ("y", x, axis)}
    twin = twin_experiment(
        model,
        truth0,
        times,
        mask,
        noise,
        jax.random.key(seed),
        observe_every=5,
        coords=coords,
    )
    obs = observations_from_dataset(twin, operator=mask, noise=noise)
    # A smooth background error of amplitude ~0.3, as B describes (length 4 points
    # of a 64 grid, about the scale of the error below).
    error = 0.3 * np.sin(2 * np.pi * (X + 2 * Y) + 1.0) * np.cos(2 * np.pi * X)
    xb = truth0 + jnp.asarray(error)
    background = DiffusionBackground(xb, std=0.3, length_scale=4.0 * n / 64)
    problem = StrongConstraint4DVar(
        model, obs, background, t0=0.0, control=ControlVariable()
    )
    result = assimilate(problem, solver=ax.LBFGS(rtol=1e-6))

    ds = result.assign(truth=twin["truth"]).assign_coords(x=twin["x"], y=twin["y"])
    # Gappy observations are stored on the grid with NaN where unobserved.
    analysis0 = ds["analysis"].isel(time=0).values
    numbers = {
        "obs_noise": noise_std,
        "observed_fraction": float(np.mean(np.asarray(mask.mask))),
        "rmse_background_x0": rmse(xb, truth0),
        "rmse_analysis_x0": rmse(analysis0, truth0),
        "rmse_analysis_x0_gap": rmse(analysis0[gap], np.asarray(truth0)[gap]),
        "rmse_background": rmse(ds["background"], ds["truth"]),
        "rmse_analysis": rmse(ds["analysis"], ds["truth"]),
        "num_steps": int(result.attrs["num_steps"]),
        "seconds": time.perf_counter() - start,
    }
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(out / f"{NAME}.nc")
    fig = snapshot(
        ds,
        ("truth", "obs", "background", "analysis"),
        time=0.0,
        title=f"Heat 2D, {n}x{n}, gappy mask: strong-constraint 4DVar",
    )
    fig.savefig(out / f"{NAME}.png", dpi=100)
    print(f"Heat 2D ({n}x{n}, {numbers['observed_fraction']:.0%} observed, gap)")
    print(f"  {'':<24}{'RMSE':>10}")
    print(f"  {'observation noise':<24}{noise_std:>10.4f}")
    rows = [
        ("background (x0)", "rmse_background_x0"),
        ("background (window)", "rmse_background"),
        ("analysis (x0)", "rmse_analysis_x0"),
        ("analysis (x0, in gap)", "rmse_analysis_x0_gap"),
        ("analysis (window)", "rmse_analysis"),
    ]
    for label, key in rows:
        print(f"  {label:<24}{numbers[key]:>10.4f}")
    print(f"  L-BFGS steps {numbers['num_steps']}, {numbers['seconds']:.1f} s")
    return numbers


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output", help="output directory")
    parser.add_argument("--quick", action="store_true", help="a smaller problem")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main(**vars(_parse()))
