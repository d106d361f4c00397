"""Time series of a small state (Lorenz-63), one panel per component."""

from collections.abc import Sequence

import numpy as np
import xarray as xr

from .._dims import TIME
from ._common import check_variables, new_figure


# Styles by role: the truth a black reference line, observations points, every
# other variable a line in the default colour cycle.
_STYLES = {
    "truth": dict(color="black", linewidth=1.6),
    "obs": dict(linestyle="none", marker="o", markersize=3),
}


def timeseries(
    ds: xr.Dataset,
    variables: Sequence[str] = ("truth", "obs", "analysis"),
    *,
    max_panels: int = 6,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
):
    """Each state component against time, with one line per variable.

    **Arguments:**

    - `ds`: a Dataset whose `variables` have dims ``(time, x)`` with a few
      components along `x` (e.g. the three of `Lorenz63`). A variable named
      ``"obs"`` is drawn as points (NaN, missing, left out), ``"truth"`` as a
      black line, the others as lines.
    - `variables`: the names to plot, overlaid in every panel (one legend entry
      each).
    - `max_panels`: at most this many components (the first ones) are drawn: a
      time series of a large state is unreadable, use `hovmoller` for that.
    - `title`, `figsize`: an overall title; inches (default 3.2 by 2.6 per panel).

    **Returns:** a `matplotlib.figure.Figure`.

    **Raises:** as `hovmoller`; `ValueError` for `max_panels < 1`.
    """
    if max_panels < 1:
        raise ValueError(f"timeseries(max_panels=...) must be >= 1, got {max_panels}.")
    arrays = check_variables("timeseries", ds, variables, space_ndim=1)
    size = min(max(da.shape[1] for da in arrays), max_panels)
    fig, axes = new_figure(size, (3.2, 2.6), figsize, sharex=True)
    for da in arrays:
        times = np.asarray(da[TIME].values, float)
        values = np.asarray(da.values, float)
        style = _STYLES.get(str(da.name), dict(linewidth=1.2))
        for i, ax in enumerate(axes[: values.shape[1]]):
            keep = np.isfinite(values[:, i])
            ax.plot(times[keep], values[keep, i], label=str(da.name), **style)
    for i, ax in enumerate(axes):
        ax.set_title(f"{arrays[0].dims[1]}[{i}]", fontsize="medium")
        ax.set_xlabel(TIME)
    axes[0].legend(fontsize="small")
    if title is not None:
        fig.suptitle(title)
    return fig
