"""Scripting with xarray: netCDF in, netCDF out (the code of the tutorial
``docs/tutorials/xarray-scripting.md``).

Reads observations from a hand-made `xarray.Dataset`; runs a heat-equation twin
experiment and one strong-constraint 4DVar window with `assimilate`; selects and
plots with xarray; writes the analysis to netCDF and reads it back unchanged;
cycles 3DVar on a small Lorenz-96; builds a Dataset of windows with a `window`
dim and learns the diffusivity from it with `fit`. Writes ``analysis.nc``,
``cycle.nc``, ``windows.nc``, ``history.nc`` and ``analysis.png`` into `--out`.

    python examples/xarray_scripting.py [--out examples/output] [--quick]
"""

import argparse
import pathlib
import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import xarray as xr  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.assimilation import (  # noqa: E402
    analysis_rmse,
    assimilate,
    cycle,
    ThreeDVarCycling,
)
from assimilax.costs import ControlVariable, StrongConstraint4DVar  # noqa: E402
from assimilax.dynamics import Heat1D, Lorenz96  # noqa: E402
from assimilax.io import (  # noqa: E402
    observations_from_dataset,
    observations_to_dataset,
    twin_experiment,
)
from assimilax.learning import fit  # noqa: E402
from assimilax.observations import (  # noqa: E402
    Identity,
    Observations,
    ScalarNoise,
    Stations,
)
from assimilax.plotting import hovmoller  # noqa: E402
from assimilax.priors import DiagonalBackground, DiffusionBackground  # noqa: E402


def own_observations(model):
    """Section 1: observations read from a Dataset built by hand."""
    times = np.array([0.0, 0.05, 0.10, 0.15, 0.20])
    positions = np.array([0.1, 0.35, 0.6, 0.85])
    values = np.cos(2 * np.pi * (positions[None, :] - 0.5 * times[:, None]))
    values[2, 1] = np.nan  # station 1 missed its third report
    mine = xr.Dataset(
        {"obs": (("time", "station"), values, {"long_name": "temperature"})},
        coords={
            "time": ("time", times, {"long_name": "time", "units": "s"}),
            "station": ("station", positions, {"long_name": "position", "units": "m"}),
        },
    )
    operator = Stations.nearest(mine["station"].values, model.grid)
    observations = observations_from_dataset(
        mine, operator=operator, noise=ScalarNoise(0.05)
    )
    print(observations.values.shape, int(observations.mask.sum()))
    # ... and back: the same Dataset, NaN where nothing was observed.
    back = observations_to_dataset(observations, mine.coords, attrs=mine["obs"].attrs)
    xr.testing.assert_identical(back, mine)
    return observations


def one_window(model, n, seed):
    """Sections 2-4: a twin experiment and its 4DVar analysis as Datasets."""
    x = model.grid[0]
    truth0 = jnp.asarray(np.sin(2 * np.pi * x) + 0.5 * np.cos(6 * np.pi * x))
    stations, noise = Stations.every(4, n), ScalarNoise(0.05)
    twin = twin_experiment(
        model,
        truth0,
        jnp.arange(21.0) * 0.01,
        stations,
        noise,
        jax.random.key(seed),
        observe_every=5,
        coords={
            "x": ("x", x, {"long_name": "position", "units": "m"}),
            "station": ("station", x[::4], {"long_name": "position", "units": "m"}),
        },
    )
    print(twin)

    observations = observations_from_dataset(twin, operator=stations, noise=noise)
    xb = truth0 + 0.3 * jnp.sin(4 * np.pi * jnp.asarray(x) + 1.0)
    background = DiffusionBackground(xb, std=0.3, length_scale=8.0 * n / 128)
    problem = StrongConstraint4DVar(
        model, observations, background, t0=0.0, control=ControlVariable()
    )
    ds = assimilate(problem, solver=ax.LBFGS(rtol=1e-6))
    print(ds.attrs)
    print(ds[["cost_before", "cost_after"]].to_dataframe())

    ds = ds.assign(truth=twin["truth"]).assign_coords(twin.coords)
    print(f"analysis RMSE {analysis_rmse(ds):.4f}, noise {noise.std:.2f}")
    error = ds["analysis"] - ds["truth"]
    rmse_per_time = np.sqrt((error**2).mean("x"))
    print(rmse_per_time.round(4).values)
    x0 = ds["analysis"].sel(time=0.0)
    middle = ds["analysis"].sel(x=slice(0.25, 0.75)).isel(time=-1)
    print(x0.shape, dict(middle.sizes))
    return ds


def round_trip(ds, out):
    """Section 5: netCDF out and in."""
    ds.to_netcdf(out / "analysis.nc")
    with xr.open_dataset(out / "analysis.nc") as back:
        back = back.load()
    xr.testing.assert_identical(back, ds)
    return back


def cycling(num_obs, seed):
    """Section 6: cycled 3DVar on Lorenz-96 (n=10), a Dataset of results."""
    model = Lorenz96(n=10)
    spin_up = model.integrate(8.0 + 0.01 * jnp.arange(10.0), jnp.arange(201.0) * 0.05)
    keys = jax.random.split(jax.random.key(seed))
    twin = twin_experiment(
        model,
        spin_up[-1],
        jnp.arange(num_obs + 1.0) * 0.05,
        Identity(),
        ScalarNoise(1.0),
        keys[0],
    )
    first_guess = twin["truth"].isel(time=0).values + jax.random.normal(keys[1], (10,))
    method = ThreeDVarCycling(DiagonalBackground(jnp.zeros(10), 0.6))
    cycled = cycle(
        model,
        twin,
        first_guess,
        method=method,
        solver=ax.LBFGS(rtol=1e-8),
        noise=ScalarNoise(1.0),
        burn_in=1.0,
    )
    print(cycled)
    print(f"rmse.a {cycled.attrs['rmse.a']:.3f}, rmse.f {cycled.attrs['rmse.f']:.3f}")
    after = cycled["time"] > cycled.attrs["t0"] + cycled.attrs["burn_in"]
    print(f"{cycled['rmse.a'].where(after).mean().item():.3f}")  # NaN: skipped
    return cycled


def windows_dataset(n, num_windows, seed):
    """Section 7: a Dataset of windows, stacked along a `window` dim."""
    model = Heat1D(n=n, kappa=0.5, length=2 * np.pi)
    prior = DiffusionBackground(jnp.zeros(n), std=1.0, length_scale=8.0 * n / 128)
    stations, noise = Stations.every(4, n), ScalarNoise(0.05)
    keys = jax.random.split(jax.random.key(seed), 2 * num_windows)
    twins = []
    for i in range(num_windows):
        truth0 = prior.to_state(jax.random.normal(keys[2 * i], (n,)))
        times = jnp.arange(21.0) * 0.01
        twin = twin_experiment(
            model, truth0, times, stations, noise, keys[2 * i + 1], observe_every=5
        )
        twins.append(twin)
    windows = xr.concat(twins, dim="window")
    windows = windows.dropna("time", how="all", subset=["obs"])
    windows["truth0"] = windows["truth"].isel(time=0)
    print(dict(windows.sizes))
    return windows, prior, stations, noise


def learn(windows, prior, stations, noise, steps):
    """Section 7: `fit` over the windows of the Dataset, and its history."""
    obs_times = windows["time"].values

    def problem_fn(params, window):  # window: {"obs": (time, station), ...}
        kappa = jnp.exp(params["log_kappa"])
        model = Heat1D(n=prior.xb.shape[0], kappa=kappa, length=2 * np.pi)
        observations = Observations(window["obs"], None, obs_times, stations, noise)
        return StrongConstraint4DVar(
            model, observations, prior, t0=0.0, control=ControlVariable()
        )

    def outer_loss(x0, params, window):
        return jnp.mean((x0 - window["truth0"]) ** 2)

    solver = ax.GaussNewton(
        residuals=lambda control, problem: problem.residuals(control),
        linear_solver=lx.CG(rtol=1e-10, atol=1e-10, max_steps=400),
        max_steps=3,
        rtol=1e-8,
    )
    result = fit(
        problem_fn,
        outer_loss,
        {"log_kappa": jnp.log(1.0)},
        windows,
        optimiser=optax.adam(0.05, b1=0.5),
        solver=solver,
        steps=steps,
        batch_size=windows.sizes["window"],
    )
    history = result.history
    print(history)
    kappa = np.exp(history["params.log_kappa"])
    print(kappa.isel(step=[0, -1]).values, float(history["loss"][-1]))
    return result


def main(out="examples/output", quick=False, seed=0):
    """Run every section, print as it goes, write the netCDF files and the PNG.

    Returns a dict of the numbers the test checks.
    """
    start = time.perf_counter()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = 64 if quick else 128
    model = Heat1D(n=n, kappa=0.5 / (4 * np.pi**2))

    observations = own_observations(model)
    ds = one_window(model, n, seed)
    fig = hovmoller(ds, ("truth", "obs", "background", "analysis"))
    fig.savefig(out / "analysis.png", dpi=80)
    round_trip(ds, out)

    cycled = cycling(num_obs=40 if quick else 100, seed=seed)
    cycled.to_netcdf(out / "cycle.nc")

    windows, prior, stations, noise = windows_dataset(
        n, num_windows=4 if quick else 8, seed=seed
    )
    windows.to_netcdf(out / "windows.nc")  # later, or elsewhere:
    windows = xr.load_dataset(out / "windows.nc")
    i, share = jax.process_index(), windows.sizes["window"] // jax.process_count()
    mine = windows.isel(window=slice(i * share, (i + 1) * share))
    result = learn(mine, prior, stations, noise, steps=20 if quick else 30)
    result.history.to_netcdf(out / "history.nc")

    numbers = {
        "own_observed": int(observations.mask.sum()),
        "obs_noise": 0.05,
        "rmse_analysis": analysis_rmse(ds),
        "rmse_background": float(
            np.sqrt(((ds["background"] - ds["truth"]) ** 2).mean())
        ),
        "converged": int(ds.attrs["converged"]),
        "cycle_rmse_a": float(cycled.attrs["rmse.a"]),
        "cycle_rmse_f": float(cycled.attrs["rmse.f"]),
        "kappa_first": float(np.exp(result.history["params.log_kappa"][0])),
        "kappa_learnt": float(jnp.exp(result.params["log_kappa"])),
        "kappa_true": 0.5,
        "seconds": time.perf_counter() - start,
    }
    print(f"done in {numbers['seconds']:.1f} s; outputs in {out}/")
    return numbers


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output", help="output directory")
    parser.add_argument("--quick", action="store_true", help="smaller problems")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main(**vars(_parse()))
