"""Hovmöller diagrams: a 1D field against space and time, one panel per variable."""

from collections.abc import Sequence

import numpy as np
import xarray as xr

from .._dims import STATION, TIME
from ._common import (
    check_variables,
    colour_limits,
    label,
    new_figure,
    station_positions,
)


def hovmoller(
    ds: xr.Dataset,
    variables: Sequence[str] = ("truth", "obs", "analysis"),
    *,
    cmap: str = "RdBu_r",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
):
    """Side-by-side Hovmöller diagrams (space across, time up) of 1D fields.

    **Arguments:**

    - `ds`: a Dataset whose `variables` have dims ``(time, x)`` (e.g. a
      `twin_experiment` merged with the output of `assimilate`). A ``(time,
      station)`` variable (`Stations` observations) is drawn as square markers at
      the positions of its `station` coordinate (assign one with
      ``ds.assign_coords(station=x[indices])``; without it, at 0, 1, ...). NaN
      (missing) values are left blank.
    - `variables`: the names to plot, one panel each, left to right.
    - `cmap`, `vmin`, `vmax`: one colour scale shared by every panel (default:
      the finite range of all of them), so that panels compare by eye.
    - `title`: an overall title.
    - `figsize`: inches; default 3.2 wide per panel, 4 high.

    **Returns:** a `matplotlib.figure.Figure` (save it with ``fig.savefig(path)``).
    It is made without `pyplot`, so nothing is shown and no GUI backend is needed.

    **Raises:** `KeyError` for a variable not in `ds`; `ValueError` for a variable
    without a `time` dim or with other than one space dim, or with only NaN;
    `TypeError` for `variables` given as a single string; `ImportError` when
    matplotlib is not installed (``pip install assimilax[plot]``).
    """
    arrays = check_variables("hovmoller", ds, variables, space_ndim=1)
    lo, hi = colour_limits(arrays, vmin, vmax)
    fig, axes = new_figure(len(arrays), (3.2, 4.0), figsize, sharey=True)
    mesh = None
    for ax, da in zip(axes, arrays):
        times = np.asarray(da[TIME].values, float)
        space = da.dims[1]
        values = np.asarray(da.values, float)
        if space == STATION:
            # Point data: one marker per finite value, so that sparse observations
            # stay visible (a mesh would be mostly blank).
            t, s = np.nonzero(np.isfinite(values))
            where = station_positions(da)[s]
            mesh = ax.scatter(
                where,
                times[t],
                c=values[t, s],
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                marker="s",
                s=12,
                linewidths=0,
            )
        else:
            grid = (
                np.asarray(da[space].values, float)
                if space in da.coords
                else (np.arange(da.sizes[space], dtype=float))
            )
            mesh = ax.pcolormesh(
                grid,
                times,
                np.ma.masked_invalid(values),
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                shading="nearest",
            )
        ax.set_title(label(da), fontsize="medium")
        ax.set_xlabel(space)
    axes[0].set_ylabel(TIME)
    fig.colorbar(mesh, ax=axes, shrink=0.9)
    if title is not None:
        fig.suptitle(title)
    return fig
