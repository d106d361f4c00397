"""Snapshots of 2D fields at one time, one panel per variable."""

from collections.abc import Sequence

import numpy as np
import xarray as xr

from .._dims import TIME
from ._common import check_variables, colour_limits, new_figure


def snapshot(
    ds: xr.Dataset,
    variables: Sequence[str] = ("truth", "obs", "analysis"),
    *,
    time: float | None = None,
    cmap: str = "RdBu_r",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
):
    """Side-by-side maps of 2D fields (dims ``(time, x, y)``) at one time.

    **Arguments:**

    - `ds`: a Dataset whose `variables` have dims ``(time, x, y)`` (or ``(time, y,
      x)``). NaN (missing, e.g. the gaps of a `Mask`) is left blank.
    - `variables`: the names to plot, one panel each, left to right.
    - `time`: the model time to show, matched to the nearest `time` of each
      variable; default the first time (the initial state, which is what
      strong-constraint 4DVar estimates).
    - `cmap`, `vmin`, `vmax`, `title`, `figsize`: as for `hovmoller` (default 3.0
      by 3.6 inches per panel).

    **Returns:** a `matplotlib.figure.Figure`, `x` across and `y` up.

    **Raises:** as `hovmoller`, with two space dims instead of one.
    """
    arrays = check_variables("snapshot", ds, variables, space_ndim=2)
    if time is None:
        time = float(np.min([da[TIME].values[0] for da in arrays]))
    arrays = [da.sel({TIME: time}, method="nearest") for da in arrays]
    lo, hi = colour_limits(arrays, vmin, vmax)
    fig, axes = new_figure(len(arrays), (3.0, 3.6), figsize, sharey=True)
    mesh = None
    for ax, da in zip(axes, arrays):
        xdim, ydim = da.dims
        x, y = (
            np.asarray(da[d].values, float)
            if d in da.coords
            else np.arange(da.sizes[d], dtype=float)
            for d in (xdim, ydim)
        )
        # Arrays are (x, y); pcolormesh wants rows along its vertical axis (y).
        values = np.ma.masked_invalid(np.asarray(da.values, float).T)
        mesh = ax.pcolormesh(
            x, y, values, cmap=cmap, vmin=lo, vmax=hi, shading="nearest"
        )
        ax.set_aspect("equal")
        ax.set_title(f"{da.name}, {TIME} = {float(da[TIME]):.3g}", fontsize="medium")
        ax.set_xlabel(xdim)
    axes[0].set_ylabel(arrays[0].dims[1])
    fig.colorbar(mesh, ax=axes, shrink=0.9)
    if title is not None:
        fig.suptitle(title)
    return fig
