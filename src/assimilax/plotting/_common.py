"""Shared checks and helpers of the plotting functions."""

from collections.abc import Sequence

import numpy as np
import xarray as xr

from .._dims import STATION, TIME


def new_figure(
    num_panels: int, panel_size: tuple[float, float], figsize, fig=None, **kwargs
):
    """A matplotlib `Figure` with one row of `num_panels` axes.

    The `Figure` is built directly, without `pyplot`: no global figure registry and
    no GUI backend, so plotting works headless and in threads; `savefig` renders
    with Agg (PNG) or the vector backends. A `fig` given (a `Figure` or a
    `SubFigure`, e.g. one of ``Figure.subfigures``) receives the axes instead, so
    that a plot can be one part of a larger figure.
    """
    try:
        from matplotlib.figure import Figure, FigureBase
    except ImportError as error:  # matplotlib is an optional extra
        raise ImportError(
            "assimilax.plotting needs matplotlib: `pip install assimilax[plot]`."
        ) from error
    if fig is None:
        if figsize is None:
            figsize = (panel_size[0] * num_panels + 1.0, panel_size[1])
        fig = Figure(figsize=figsize, layout="constrained")
    elif not isinstance(fig, FigureBase):
        raise TypeError(
            "fig=... must be a matplotlib Figure or SubFigure, got "
            f"{type(fig).__name__}."
        )
    axes = fig.subplots(1, num_panels, squeeze=False, **kwargs)[0]
    return fig, list(axes)


def require(owner: str, ds: xr.Dataset, names: Sequence[str], what: str) -> None:
    """Raise a `KeyError` naming the first of `names` missing from `ds`."""
    for name in names:
        if name not in ds.data_vars:
            raise KeyError(
                f"{owner}: the Dataset has no variable {name!r} ({what}; variables: "
                f"{list(map(str, ds.data_vars))})."
            )


def series_dim(owner: str, da: xr.DataArray, along: str) -> str | None:
    """The one dim of `da` besides `along` (one line per label along it), or None.

    E.g. the `strategy` of ``xr.concat(histories, dim="strategy")``.
    """
    others = [d for d in da.dims if d != along]
    if len(others) > 1:
        raise ValueError(
            f"{owner}: `{da.name}` has dims {da.dims}: expected `{along}` and at "
            "most one more (one line per label along it)."
        )
    return str(others[0]) if others else None


def lines(da: xr.DataArray, along: str, series: str | None):
    """``(label, values)`` of each line of `da`: one per label along `series`."""
    if series is None:
        return [(None, np.asarray(da.values, float))]
    labels = da[series].values if series in da.coords else range(da.sizes[series])
    return [
        (str(label), np.asarray(da.isel({series: i}).values, float))
        for i, label in enumerate(labels)
    ]


def check_variables(
    owner: str, ds: xr.Dataset, variables: Sequence[str], space_ndim: int
) -> list[xr.DataArray]:
    """The variables of `ds` with dims ``(time, *space)``, checked eagerly.

    A variable on ``(time, station)`` is accepted in place of the grid dims (point
    observations, drawn as markers).
    """
    if isinstance(variables, str):
        raise TypeError(
            f"{owner}(variables=...) must be a sequence of names, e.g. "
            f"('truth', 'analysis'), not the string {variables!r}."
        )
    if len(variables) == 0:
        raise ValueError(f"{owner}(variables=...) is empty: nothing to plot.")
    arrays = []
    for name in variables:
        if name not in ds.data_vars:
            raise KeyError(
                f"{owner}: the Dataset has no variable {name!r} (variables: "
                f"{list(map(str, ds.data_vars))})."
            )
        da = ds[name]
        if TIME not in da.dims:
            raise ValueError(
                f"{owner}: `ds[{name!r}]` has no `{TIME}` dimension (dims {da.dims})."
            )
        space = [d for d in da.dims if d != TIME]
        if len(space) != space_ndim and space != [STATION]:
            raise ValueError(
                f"{owner}: `ds[{name!r}]` has space dims {tuple(space)}, expected "
                f"{space_ndim} (or `{STATION}`)."
            )
        arrays.append(da.transpose(TIME, *space))
    return arrays


def colour_limits(arrays: Sequence[xr.DataArray], vmin, vmax) -> tuple[float, float]:
    """One colour scale for every panel, so that they can be compared by eye.

    Defaults to the finite range of all the arrays (NaN = missing is ignored).
    """
    if vmin is not None and vmax is not None:
        return float(vmin), float(vmax)
    finite = [np.asarray(a.values, float) for a in arrays]
    finite = np.concatenate([a[np.isfinite(a)] for a in finite])
    if finite.size == 0:
        raise ValueError("Nothing to plot: every value is NaN (missing).")
    lo = float(finite.min()) if vmin is None else float(vmin)
    hi = float(finite.max()) if vmax is None else float(vmax)
    return lo, hi


def station_positions(da: xr.DataArray) -> np.ndarray:
    """Where the stations of a ``(time, station)`` variable are along the grid.

    A `station` coordinate (e.g. ``ds.assign_coords(station=x[indices])``) gives
    positions in grid units; without one the stations are numbered 0, 1, ....
    """
    if STATION in da.coords:
        return np.asarray(da[STATION].values, float)
    return np.arange(da.sizes[STATION], dtype=float)


def label(da: xr.DataArray) -> str:
    """The panel title: the variable name, with its `long_name` when it has one."""
    long_name = da.attrs.get("long_name")
    return f"{da.name} ({long_name})" if long_name else str(da.name)
