"""Plain-text summaries printed by the commands."""

import math
from collections.abc import Sequence
from typing import Any

from ._options import Named
from ._setup import Experiment


def number(value: Any) -> str:
    """A number in a short, readable form (`-` for none or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A right-aligned text table (the first column left-aligned)."""
    cells = [list(headers)] + [
        [c if isinstance(c, str) else number(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        first = row[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join([first, *rest]))
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, tuple | list):
        shown = ", ".join(number(v) for v in value[:4])
        return f"[{shown}{', ...' if len(value) > 4 else ''}]"
    if isinstance(value, str):
        return value
    # A config value as read from TOML or a data file: numbers, strings, lists,
    # or any array type (NumPy, JAX): duck-typed data, so ask for a shape.
    if hasattr(value, "shape"):
        return f"array{tuple(value.shape)}"
    return number(value)


def options(named: Named, skip: tuple[str, ...] = ()) -> str:
    """``name (key=value, ...)`` of a choice, options left at None omitted."""
    shown = ", ".join(
        f"{key}={_value(value)}"
        for key, value in named.options.items()
        if value is not None and key not in skip
    )
    return f"{named.name} ({shown})" if shown else named.name


def describe(experiment: Experiment) -> str:
    """One paragraph on what the experiment is (printed before it runs)."""
    config = experiment.config
    observed = experiment.operator.observed()
    if observed is None:
        observed = math.prod(experiment.operator.obs_shape(experiment.state_shape))
    else:
        observed = int(observed.sum())
    source = (
        f"twin experiment (seed {config.data.twin.seed})"
        if config.data.twin is not None
        else str(config.data.netcdf)
    )
    times = experiment.times
    lines = {
        "model": f"{options(config.model)}, state {experiment.state_shape}",
        "observations": f"{options(config.observations)}, {observed} observed per time",
        "background": options(config.background),
        "prior": None if config.prior is None else options(config.prior),
        "problem": options(config.problem),
        "solver": options(config.solver),
        "data": f"{source}: {experiment.num_windows} window(s), {times.size} "
        f"time(s) from {number(float(times[0]))} to {number(float(times[-1]))}",
    }
    return "\n".join(f"{k:<13}{v}" for k, v in lines.items() if v is not None)
