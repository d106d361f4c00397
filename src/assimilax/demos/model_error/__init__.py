"""Demo: learn what the model gets wrong, through 4DVar (``assimilax demo
model-error``; issue 17).

The truth is the two-scale Lorenz-96 (`TwoScaleLorenz96`, K = 36, J = 10, F = 10,
h = 1, b = c = 10), observed in its slow variables only, every 0.05 time units,
half of them (a random half at each time), with unit Gaussian noise. The model is
the one-scale `Lorenz96(n=36, F=10)`, which misses the coupling to the fast
variables; a `LocalConvCorrection` is added to its tendency and learnt four ways
on the same training block:

1. none (the uncorrected model);
2. two-step: 4DVar analyses with the uncorrected model, then the network fitted
   offline to make forecasts from one analysis match the next;
3. truth-trained (the upper bound, supervised): the network fitted to the true
   unresolved tendency ``-(h c / b) sum_j Y_j``;
4. joint (ours): `fit` through strong-constraint 4DVar windows with the corrected
   model, the outer loss being the misfit of the *next* two windows'
   observations to the forecast from the analysis (no truth), `Implicit`
   hypergradients, adam with a cosine decay.

Scored on a held-out test block: forecast RMSE of the slow variables from the
true slow state against lead time, normalised by the climatological std, and the
valid time (the lead where it reaches 0.5); and the time-averaged ``rmse.a`` /
``rmse.f`` of cycled 4DVar with each model (`cycle`, windows of 2 observation
times sliding by one, the same static ``B`` for all). Run it in float64.
"""

import pathlib
import time

import numpy as np
import xarray as xr

from .._plots import save_figure
from ._data import (
    climatology as climatology,
    DataConfig as DataConfig,
    make_truth as make_truth,
    make_windows as make_windows,
    observe as observe,
)
from ._evaluate import (
    evaluation_set as evaluation_set,
    forecast_rmse as forecast_rmse,
    valid_time as valid_time,
)
from ._models import (
    analyses as analyses,
    Experiment as Experiment,
    masked_mse as masked_mse,
    network as network,
    Standardised as Standardised,
)
from ._run import Config as Config, QUICK as QUICK, run as run
from ._train import (
    train_joint as train_joint,
    train_truth as train_truth,
    train_two_step as train_two_step,
)


NAME = "model_error"
MODELS = ("uncorrected", "two-step", "joint", "truth-trained")


def table(results: dict, block: str = "test", leads=(0.5, 1.0, 2.0)) -> str:
    """The forecast-skill table of `run`'s results on `block`, as text."""
    grid = results["leads"]
    columns = [int(np.argmin(np.abs(grid - lead))) for lead in leads]
    head = f"{'model':<14} {'valid time':>10} " + " ".join(
        f"{'nRMSE@' + format(grid[j], 'g'):>9}" for j in columns
    )
    cycling = results.get("cycling") if block == "test" else None
    if cycling:
        head += f" {'rmse.a':>7} {'rmse.f':>7}"
    lines = [head]
    for name in MODELS:
        score = results["scores"][block, name]
        bound = " " if score["crossed"] else ">"
        line = f"{name:<14} {bound}{score['valid_time']:9.2f} " + " ".join(
            f"{score['nrmse'][j]:9.3f}" for j in columns
        )
        if cycling:
            line += f" {cycling[name]['rmse.a']:7.3f} {cycling[name]['rmse.f']:7.3f}"
        lines.append(line)
    return "\n".join(lines)


def to_dataset(results: dict) -> xr.Dataset:
    """Normalised RMSE per block, model and lead, with the valid times."""
    blocks = ("valid", "test")
    nrmse = [[results["scores"][b, m]["nrmse"] for m in MODELS] for b in blocks]
    valid = [[results["scores"][b, m]["valid_time"] for m in MODELS] for b in blocks]
    cycling = results["cycling"]
    return xr.Dataset(
        {
            "nrmse": (("block", "model", "lead"), np.asarray(nrmse)),
            "valid_time": (("block", "model"), np.asarray(valid)),
            "cycled_rmse_a": (
                ("model",),
                np.asarray([cycling[m]["rmse.a"] for m in MODELS]),
                {"long_name": "time-averaged analysis RMSE, cycled 4DVar, test"},
            ),
            "cycled_rmse_f": (
                ("model",),
                np.asarray([cycling[m]["rmse.f"] for m in MODELS]),
                {"long_name": "time-averaged forecast RMSE, cycled 4DVar, test"},
            ),
        },
        coords={"block": list(blocks), "model": list(MODELS), "lead": results["leads"]},
        attrs={"clim_std": results["clim_std"], "title": "model-error forecast skill"},
    )


def main(
    out: str | pathlib.Path = "assimilax-output", quick: bool = False, seed: int = 0
) -> dict:
    """Run the experiment, print the test table, save ``NAME.nc`` and ``.png``.

    Returns a dict: the test valid time of each model and the seconds taken.
    """
    start = time.perf_counter()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = run(QUICK if quick else Config(), seed)
    print(table(results))
    ds = to_dataset(results)
    ds.to_netcdf(out / f"{NAME}.nc")
    save_figure(_plot, ds, out / f"{NAME}.png")
    numbers = {m: results["scores"]["test", m]["valid_time"] for m in MODELS}
    numbers["seconds"] = time.perf_counter() - start
    return numbers


def _plot(ds: xr.Dataset, figure) -> None:
    axis = figure.subplots(1, 1)
    for model in ds["model"].values:
        axis.plot(ds["lead"], ds["nrmse"].sel(block="test", model=model), label=model)
    axis.axhline(0.5, color="k", linestyle=":")
    axis.set(xlabel="lead time", ylabel="RMSE / climatological std", title="test")
    axis.legend()
