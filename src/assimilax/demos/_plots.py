"""Saving a demo's figure when matplotlib is there (an optional dependency)."""

import pathlib
from collections.abc import Callable
from typing import Any


def save_figure(
    draw: Callable[[Any, Any], None],
    data: Any,
    path: pathlib.Path,
    figsize: tuple[float, float] = (9, 3.5),
) -> bool:
    """Draw `data` on a new figure (`figsize` inches) with ``draw(data, figure)``
    and save it as PNG.

    Uses `matplotlib.figure.Figure` directly (no pyplot, no GUI backend). Returns
    `False`, with a note on stdout, when matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(f"matplotlib is not installed: no plot ({path.name}).")
        return False
    figure = Figure(figsize=figsize, layout="constrained")
    draw(data, figure)
    figure.savefig(path, dpi=100)
    return True


def save_plot(plot: Callable[[], Any], path: pathlib.Path) -> bool:
    """Save the figure that ``plot()`` returns (an `assimilax.plotting` function,
    e.g. ``lambda: fit_history(history)``) as PNG.

    Returns `False`, with a note on stdout, when matplotlib is not installed (the
    plotting functions raise `ImportError` then).
    """
    try:
        figure = plot()
    except ImportError:
        print(f"matplotlib is not installed: no plot ({path.name}).")
        return False
    figure.savefig(path, dpi=100)
    return True
