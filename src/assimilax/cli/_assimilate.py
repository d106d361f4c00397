"""``assimilax assimilate CONFIG.toml``: analyse every window, write the analyses."""

import sys

import jax
import numpy as np
import xarray as xr

from .._dims import OBS, TIME
from ..assimilation import assimilate
from ._config import Config
from ._data import ordered, WINDOW
from ._report import number, table
from ._setup import Experiment


def _rms(difference: xr.DataArray) -> float:
    values = np.asarray(difference.values, float)
    if not np.isfinite(values).any():
        return float("nan")
    return float(np.sqrt(np.nanmean(values**2)))


def _innovations(experiment: Experiment, ds: xr.Dataset, variable: str) -> np.ndarray:
    """``y - H(x)`` of the trajectory `variable` at the observation times."""
    states = ordered(ds[variable].sel({TIME: ds[OBS][TIME]}))
    predicted = np.asarray(jax.vmap(experiment.operator)(states.values))
    return ordered(ds[OBS]).values - predicted


def _window(
    experiment: Experiment, solver, window: dict, index: int
) -> tuple[xr.Dataset, list]:
    """The analysis Dataset of window `index` and its summary row."""
    problem = experiment.problem(window)
    ds = assimilate(problem, solver=solver, throw=False)
    rmse = {}
    if "truth" in experiment.data:
        truth = ordered(experiment.data["truth"].isel({WINDOW: index}))
        # The analysis times are the data's (and `t0` when it comes before them,
        # where the truth is unknown: NaN). Nearest, to forgive float rounding.
        tolerance = 1e-9 * max(1.0, float(np.ptp(experiment.times)))
        ds["truth"] = truth.reindex(
            {TIME: ds[TIME].values}, method="nearest", tolerance=tolerance
        ).assign_coords({TIME: ds[TIME]})
        for name in ("background", "analysis"):
            rmse[name] = _rms(ds[name] - ds["truth"])
        rmse["t0"] = _rms(ds["analysis"].isel({TIME: 0}) - ds["truth"].isel({TIME: 0}))
    before = float(ds["cost_before"].sum())
    after = float(ds["cost_after"].sum())
    row = [
        str(index),
        bool(ds.attrs["converged"]),
        int(ds.attrs["num_steps"]),
        before,
        after,
        _rms(xr.DataArray(_innovations(experiment, ds, "background"))),
        _rms(xr.DataArray(_innovations(experiment, ds, "analysis"))),
        rmse.get("background"),
        rmse.get("analysis"),
        rmse.get("t0"),
    ]
    return ds, row


HEADERS = (
    "window",
    "converged",
    "steps",
    "cost before",
    "cost after",
    "rms(o-b)",
    "rms(o-a)",
    "rmse(b)",
    "rmse(a)",
    "rmse(a,t0)",
)


def _combine(datasets: list[xr.Dataset], windowed: bool) -> xr.Dataset:
    """One Dataset: per-window convergence as variables, `window` dim if several."""
    for ds in datasets:
        for name in ("converged", "num_steps", "grad_norm"):
            ds[name] = ds.attrs.pop(name)
        ds.attrs["result"] = ds.attrs.get("result", "")
    if not windowed:
        return datasets[0]
    results = [ds.attrs.pop("result") for ds in datasets]
    out = xr.concat(datasets, dim=WINDOW, combine_attrs="drop_conflicts")
    out["result"] = (WINDOW, np.asarray(results, dtype=str))
    return out


def run_assimilate(config: Config, experiment: Experiment) -> int:
    """Run every window, print the summary, write ``NAME.nc``; the exit status."""
    solver = config.solver.build()
    datasets, rows, failures = [], [], []
    arrays = experiment.arrays()
    for index in range(experiment.num_windows):
        window = {name: values[index] for name, values in arrays.items()}
        ds, row = _window(experiment, solver, window, index)
        datasets.append(ds)
        rows.append(row)
        if not row[1]:
            failures.append(
                f"assimilax: window {index}: the inner solve did not converge "
                f"({row[2]} steps, gradient norm {number(ds.attrs['grad_norm'])}): "
                f"{ds.attrs['result']}"
            )
    print(table(HEADERS, rows))
    print(
        "rms(o-b), rms(o-a): observation minus background/analysis; rmse: against "
        "the truth over the window and at its start"
        if "truth" in experiment.data
        else "rms(o-b), rms(o-a): observation minus background/analysis"
    )
    out = _combine(datasets, experiment.windowed)
    out.attrs.update(config=config.text, config_file=str(config.path.resolve()))
    folder = config.output.folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{config.output.name}.nc"
    out.to_netcdf(path)
    print(f"analysis written to {path}")
    for message in failures:
        print(message, file=sys.stderr)
    return 1 if failures else 0
