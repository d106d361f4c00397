"""Hypergradient error against a sweep: inner steps, truncation `k`, tolerance."""

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ._common import lines, new_figure, require


STRATEGY = "strategy"
# A zero error (exact to round-off) would vanish from a log axis: drawn here.
FLOOR = 1e-16


def hypergradient_error(
    ds: xr.Dataset,
    variables: Sequence[str] | None = None,
    *,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    fig=None,
):
    """The error of hypergradients against what was swept, one panel per sweep.

    **The Dataset.** Each variable is one sweep: a non-negative error (e.g. the
    relative error ``|g - g_ref| / |g_ref|`` against a closed form or
    `FiniteDifference`) over exactly one *sweep dim*, whose coordinate holds the
    values swept, e.g.

    - ``error_steps`` on ``steps`` (inner iterations, ``max_steps`` of the
      solver);
    - ``error_k`` on ``k`` (the truncation of `Truncated(k)`);
    - ``error_rtol`` on ``rtol`` (the tolerance of the backward linear solve);

    and optionally a `strategy` dim (one line each, labelled by its coordinate,
    e.g. ``["Unrolled", "Implicit"]``). Sweeps with different dims live in one
    Dataset side by side; NaN marks a configuration not run. A `long_name` attr
    of a variable or a sweep coordinate labels its axis. The benchmark
    ``benchmarks/hypergradients.py`` writes such a Dataset (`error_sweeps`).

    **Arguments:**

    - `ds`: the Dataset above.
    - `variables`: the sweeps to draw, one panel each (default: all).
    - `title`, `figsize`: an overall title; inches (default 3.6 by 3.0 per panel).
    - `fig`: a `Figure` or `SubFigure` to draw in (default: a new `Figure`).

    **Returns:** a `matplotlib.figure.Figure`: errors on a log axis (values
    below 1e-16, exact to round-off, drawn at 1e-16) with markers at the swept
    values, on a log axis too when every swept value is positive.

    **Raises:** `KeyError` for a missing variable; `ValueError` for an empty
    Dataset, a variable without exactly one sweep dim besides `strategy`, or one
    with a negative error.
    """
    names = list(map(str, ds.data_vars)) if variables is None else list(variables)
    if not names:
        raise ValueError("hypergradient_error: no variable to plot.")
    require("hypergradient_error", ds, names, "a sweep of errors")
    fig, axes = new_figure(len(names), (3.6, 3.0), figsize, fig)
    for ax, name in zip(axes, names):
        da = ds[name]
        sweep = [d for d in da.dims if d != STRATEGY]
        if len(sweep) != 1:
            raise ValueError(
                f"hypergradient_error: `{name}` has dims {da.dims}: expected one "
                f"sweep dim (e.g. `steps`, `k`, `rtol`) and optionally `{STRATEGY}`."
            )
        (dim,) = sweep
        da = da.transpose(dim, ...)
        values = np.asarray(da.values, float)
        if np.any(values[np.isfinite(values)] < 0):
            raise ValueError(
                f"hypergradient_error: `{name}` has negative values: plot the "
                "absolute (or relative) error."
            )
        swept = (
            np.asarray(da[dim].values, float)
            if dim in da.coords
            else np.arange(da.sizes[dim], dtype=float)
        )
        series = STRATEGY if STRATEGY in da.dims else None
        for line_label, errors in lines(da, dim, series):
            keep = np.isfinite(errors)
            ax.plot(
                swept[keep],
                np.maximum(errors[keep], FLOOR),
                marker="o",
                markersize=4,
                label=line_label,
            )
        ax.set_yscale("log")
        if np.all(swept > 0):
            ax.set_xscale("log")
        ax.set_xlabel(da[dim].attrs.get("long_name", dim) if dim in da.coords else dim)
        ax.set_ylabel(da.attrs.get("long_name", "relative error"))
        ax.set_title(name, fontsize="medium")
        if series is not None:
            ax.legend(fontsize="small")
    if title is not None:
        fig.suptitle(title)
    return fig
