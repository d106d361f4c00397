"""Demo: cycled 4DVar on Lorenz-96 with a learnt and with a flow-dependent
background covariance (``assimilax demo lorenz96``).

The Sakov & Oke (2008) setup as packaged by DAPPER: ``n = 40``, ``F = 8``, RK4
steps of 0.05, all variables observed every 4 steps (``Δ = 0.2``) with unit
noise. Strong-constraint 4DVar windows of 2 observation intervals slide by one,
each assimilating its newest observation (DAPPER's ``Var4D(Lag=2)``). ``B`` is
first DAPPER's, the climatology scaled by 0.1, then the covariance of the
background errors of a training cycle on another twin
(`background_error_covariance`, three times), then a flow-dependent ``B``
cycled from each window's Hessian (``covariance=CycledB()``, starting from ``I``,
the error covariance of the first guess). Prints the time-averaged analysis RMSE
of the three, saves the cycled-``B`` test cycle (``lorenz96_cycling.nc``) and a
Hovmöller diagram of truth, analysis and error over the last 10 time units
(``lorenz96_cycling.png``, with matplotlib), and its ``rmse.a``/``rmse.f`` over
time with the cycled ``B``'s spread against its error
(``lorenz96_cycling_rmse.png``, `assimilax.plotting.cycling_rmse`).
Everything is generated: no data to download. Run it in float64.
"""

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .. import bilevel as ax
from ..assimilation import (
    AbstractBackgroundCovariance,
    background_error_covariance,
    cycle,
    CycledB,
    FourDVarCycling,
    StaticB,
)
from ..dynamics import Lorenz96
from ..io import twin_experiment
from ..observations import Identity, ScalarNoise
from ..plotting import cycling_rmse
from ..priors import CovarianceBackground
from ._plots import save_figure, save_plot


NAME = "lorenz96_cycling"
N, DT, EVERY, BURN_IN = 40, 0.05, 4, 10.0


def make_twin(num_obs: int, seed: int):
    """A truth on the attractor, observed every 4 steps (not at ``t = 0``)."""
    model = Lorenz96(n=N)
    keys = jax.random.split(jax.random.key(seed), 3)
    start = 8.0 + 0.01 * jax.random.normal(keys[0], (N,))
    truth0 = model.integrate(start, np.arange(401.0) * DT)[-1]  # 20 time units
    times = np.arange(num_obs * EVERY + 1.0) * DT
    ds = twin_experiment(model, truth0, times, Identity(), ScalarNoise(1.0), keys[1])
    observed = np.zeros(times.size, bool)
    observed[EVERY::EVERY] = True
    ds["obs"] = ds["obs"].where(xr.DataArray(observed, dims="time"))
    first_guess = truth0 + jax.random.normal(keys[2], (N,))
    return model, ds, first_guess


def run_cycle(
    model,
    ds,
    first_guess,
    covariance,
    window: int = 2,
    model_of_b: AbstractBackgroundCovariance = StaticB(),
) -> xr.Dataset:
    """Cycled 4DVar with this ``B`` (every window's with `StaticB()`, the first
    window's with `CycledB()`); the output of `cycle` with statistics."""
    background = CovarianceBackground(jnp.zeros(N), covariance)
    method = FourDVarCycling(background, window=window, shift=1, covariance=model_of_b)
    return cycle(
        model,
        ds,
        first_guess,
        method=method,
        solver=ax.LBFGS(rtol=1e-6, max_steps=1000),
        noise=ScalarNoise(1.0),
        t0=0.0,
        burn_in=BURN_IN,
    )


def main(
    out: str | pathlib.Path = "assimilax-output", quick: bool = False, seed: int = 0
) -> dict:
    """Train ``B``, cycle the test twin, print a table, save ``NAME.nc``/``.png``.

    Returns a dict of the printed RMSEs and the seconds taken.
    """
    start = time.perf_counter()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    num_obs = 200 if quick else 500
    model, train, train_fg = make_twin(2 * num_obs, seed + 1)
    model, test, test_fg = make_twin(num_obs, seed)
    climatology = 0.1 * np.cov(train["truth"].values, rowvar=False)
    rows = {"climatological B (x 0.1)": run_cycle(model, test, test_fg, climatology)}
    covariance = climatology
    for _ in range(3):
        training = run_cycle(model, train, train_fg, covariance)
        covariance = background_error_covariance(training, truth=train["truth"])
    rows["B from background errors"] = run_cycle(model, test, test_fg, covariance)
    # The cycled B starts from the first guess's error covariance, I.
    rows["flow-dependent B (cycled)"] = run_cycle(
        model, test, test_fg, np.eye(N), model_of_b=CycledB(additive=1e-3)
    )
    numbers = {name: ds.attrs["rmse.a"] for name, ds in rows.items()}
    print(f"{'4DVar (window 2 x 0.2), B':<32} {'rmse.a':>7} {'rmse.f':>7}")
    for name, ds in rows.items():
        print(f"{name:<32} {ds.attrs['rmse.a']:7.3f} {ds.attrs['rmse.f']:7.3f}")
    print(f"observation noise std 1; {num_obs} observation times; burn-in {BURN_IN}")
    best = rows["flow-dependent B (cycled)"]
    best = best.assign(error=best["analysis"] - best["truth"])
    best.to_netcdf(out / f"{NAME}.nc")
    save_figure(_plot, best, out / f"{NAME}.png")
    save_plot(
        lambda: cycling_rmse(best, title="4DVar, flow-dependent B"),
        out / f"{NAME}_rmse.png",
    )
    numbers["seconds"] = time.perf_counter() - start
    return numbers


def _plot(ds: xr.Dataset, figure) -> None:
    ds = ds.isel(time=slice(-50, None))  # the last 10 time units
    axes = figure.subplots(1, 3, sharey=True)
    for axis, name in zip(axes, ("truth", "analysis", "error")):
        field = ds[name]
        limit = float(np.abs(field).max())
        mesh = axis.pcolormesh(
            np.arange(N), ds["time"], field, cmap="RdBu_r", vmin=-limit, vmax=limit
        )
        axis.set(title=name, xlabel="variable")
        figure.colorbar(mesh, ax=axis)
    axes[0].set(ylabel="time")
