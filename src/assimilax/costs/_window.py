"""The time grid of an assimilation window (checked eagerly: it fixes shapes).

The grid is kept as Python numbers in static fields of the problems, not as array
fields: a problem is `argmin`'s `args`, so its array fields are traced under
`eqx.filter_jit`, and an integrator that needs concrete times (`FixedStepRK4`'s
`lax.scan`, whose reverse mode is ~3x cheaper than diffrax's checkpointed loop)
would then fall back to its general path.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int


def _concrete(owner: str, name: str, value) -> np.ndarray:
    try:
        return np.asarray(value)
    except jax.errors.TracerArrayConversionError:
        raise ValueError(
            f"{owner}({name}=...) must be concrete (the time grid fixes array "
            "shapes): build the problem outside jit/vmap."
        ) from None


def window_grid(
    owner: str,
    observation_times: Float[ArrayLike, " time"],
    t0: float | Float[ArrayLike, ""] | None,
    grid: Float[ArrayLike, " grid"] | None = None,
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """The model time grid of a window, and where the observations sit on it.

    Both are returned as tuples of Python numbers (hashable: static fields).

    Without `grid`, it is `t0` followed by the observation times, `t0` not repeated
    when an observation is at `t0` (integrators need increasing times); `t0`
    defaults to the first observation time.

    **Raises:** `ValueError` for traced or non-1D times, times that do not
    increase, observations before `t0`, or (with `grid`) off the grid.
    """
    times = _concrete(owner, "observations.times", observation_times)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(
            f"{owner}: observations.times must be a non-empty 1D array, got shape "
            f"{times.shape}."
        )
    if np.any(np.diff(times) <= 0):
        raise ValueError(f"{owner}: observations.times must be strictly increasing.")
    if grid is not None:
        points = _concrete(owner, "times", grid)
        if points.ndim != 1 or np.any(np.diff(points) <= 0):
            raise ValueError(f"{owner}(times=...) must be strictly increasing 1D.")
        if t0 is not None and _concrete(owner, "t0", t0) != points[0]:
            raise ValueError(f"{owner}(t0=...) must be times[0] when both are given.")
    else:
        start = times[0] if t0 is None else _concrete(owner, "t0", t0)
        if np.ndim(start) != 0:
            raise ValueError(f"{owner}(t0=...) must be a scalar.")
        points = times if times[0] == start else np.concatenate([[start], times])
    if times[0] < points[0]:
        raise ValueError(
            f"{owner}: observations.times start at {times[0]}, before the window "
            f"start t0={points[0]}: observations outside the window."
        )
    # Nearest grid point, accepted up to rounding of the times (1e-9 of the span).
    index = np.clip(np.searchsorted(points, times), 0, points.size - 1)
    lower = np.clip(index - 1, 0, points.size - 1)
    closer = np.abs(points[lower] - times) < np.abs(points[index] - times)
    index = np.where(closer, lower, index)
    span = max(float(points[-1] - points[0]), 1.0)
    if np.any(np.abs(points[index] - times) > 1e-9 * span):
        raise ValueError(
            f"{owner}(times=...): every observation time must be on the time grid; "
            f"{times[np.abs(points[index] - times) > 1e-9 * span][:3]} are not."
        )
    return tuple(float(t) for t in points), tuple(int(i) for i in index)


def grid_array(grid: tuple[float, ...] | np.ndarray, dtype) -> Float[Array, " grid"]:
    """The static `grid` (a tuple or NumPy array of times) as a concrete array,
    also while tracing.

    Under `jit`, `jnp.asarray` of constants would give a tracer; evaluating it at
    trace time keeps it concrete, so fixed-step integrators (`FixedStepRK4`) see
    known times (and `lax.scan` step counts) and 4DVar problems can build their
    static window grid.
    """
    with jax.ensure_compile_time_eval():
        return jnp.asarray(grid, dtype)


def index_array(index: tuple[int, ...]) -> Int[Array, " time"]:
    """The static observation `index` as a concrete integer array (see `grid_array`)."""
    with jax.ensure_compile_time_eval():
        return jnp.asarray(index, int)
