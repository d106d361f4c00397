"""Statistics of a cycled assimilation: RMSE over time, spread against skill."""

import numpy as np
import xarray as xr

from .._dims import TIME, TRUTH
from ._common import new_figure, require


RMSE_A, RMSE_F, SPREAD = "rmse.a", "rmse.f", "background_spread"


def background_rmse(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(window_start, spread, rmse)`` of the windows whose start has a truth in `ds`.

    The skill matching a background spread is the RMSE over the state of the
    window's `background` against the truth at its `window_start` (the first
    window starts before the first analysed time: it has none).
    """
    starts = ds["window_start"].values
    times = ds[TIME].values
    tolerance = 1e-6 * float(ds.attrs.get("interval", 1.0))
    found = np.isclose(starts[:, None], times[None, :], rtol=0.0, atol=tolerance)
    keep = found.any(axis=1)
    truth = ds[TRUTH].values[found[keep].argmax(axis=1)]
    error = ds["background"].values[keep] - truth
    rmse = np.sqrt(np.mean(error.reshape(error.shape[0], -1) ** 2, axis=1))
    return starts[keep], ds[SPREAD].values[keep], rmse


def cycling_rmse(
    ds: xr.Dataset,
    *,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    fig=None,
):
    """Analysis and forecast RMSE of a cycled assimilation over time, and the
    background spread against its error (spread-skill) when there is a spread.

    **Arguments:**

    - `ds`: the output of `cycle` with a truth: ``rmse.a`` and ``rmse.f`` over
      `time` (as `cycling_statistics` adds them), their time averages and
      `burn_in` in attrs; with a cycled ``B`` (`CycledB`) also the per-window
      `background_spread` (with `background`, `truth` and the `window_start`
      coordinate for the spread-skill panel).
    - `title`, `figsize`: an overall title; inches (default 4.5 by 3.2 per panel).
    - `fig`: a `Figure` or `SubFigure` to draw in (default: a new `Figure`).

    **Returns:** a `matplotlib.figure.Figure`. Left: ``rmse.a`` and ``rmse.f``
    against time (the legend gives their time averages after the burn-in, whose
    end is a dotted line), and the `background_spread` against `window_start`
    when present. Right, with a spread: each window's background spread
    against the RMSE of its background (markers; after the burn-in in colour,
    before it in grey), with the diagonal where spread equals error.

    **Raises:** `KeyError` when ``rmse.a`` or ``rmse.f`` is missing (cycle with
    a truth, or apply `cycling_statistics`).
    """
    require("cycling_rmse", ds, (RMSE_A, RMSE_F), "cycle with a truth")
    spread = SPREAD in ds.data_vars
    fig, axes = new_figure(1 + spread, (4.5, 3.2), figsize, fig)
    ax = axes[0]
    times = np.asarray(ds[TIME].values, float)
    t0 = float(ds.attrs.get("t0", times[0]))
    end = t0 + float(ds.attrs.get("burn_in", 0.0))
    for name, colour in ((RMSE_F, "C1"), (RMSE_A, "C0")):
        text = name if name not in ds.attrs else f"{name} (mean {ds.attrs[name]:.3g})"
        ax.plot(times, ds[name].values, color=colour, linewidth=1.0, label=text)
    if spread:
        ax.plot(
            ds["window_start"].values,
            ds[SPREAD].values,
            color="C2",
            linestyle="--",
            linewidth=1.0,
            label="background spread",
        )
    if end > t0:
        ax.axvline(end, color="black", linestyle=":", label="end of burn-in")
    ax.set(xlabel=TIME, ylabel="RMSE", title="errors over time")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")
    if spread:
        _spread_skill(axes[1], ds, end)
    if title is not None:
        fig.suptitle(title)
    return fig


def _spread_skill(ax, ds: xr.Dataset, end: float) -> None:
    require("cycling_rmse", ds, ("background", TRUTH), "for the spread-skill panel")
    starts, spread, rmse = background_rmse(ds)
    after = starts > end
    ax.scatter(rmse[~after], spread[~after], s=8, color="0.6", label="burn-in")
    ax.scatter(rmse[after], spread[after], s=8, color="C2", label="after burn-in")
    top = float(np.nanmax(np.concatenate([spread, rmse, [0.0]])))
    ax.plot(
        [0.0, top], [0.0, top], color="black", linewidth=0.8, label="spread = error"
    )
    ax.set(
        xlabel="background RMSE",
        ylabel="background spread",
        title="spread-skill",
    )
    ax.legend(fontsize="small")
