"""Eager checks shared by the dynamics: times, state shapes, parameter values."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Real


def is_concrete(value) -> bool:
    """Whether `value` is known now (not a tracer inside `jit`/`grad`/`vmap`)."""
    return not isinstance(value, jax.core.Tracer)


def as_float(value: Real[ArrayLike, "..."]) -> Float[Array, "..."]:
    """A floating JAX array; Python floats stay weakly typed (precision follows x)."""
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating):
        value = value.astype(jnp.result_type(float))
    return value


def check_nonnegative(owner: str, name: str, value: Float[Array, "..."]) -> None:
    """Eager `ValueError` for a negative concrete value; traced values pass."""
    if is_concrete(value) and np.any(~(np.asarray(value) >= 0)):
        raise ValueError(
            f"{owner}({name}=...) must be >= 0 (and not NaN), got {np.asarray(value)}."
        )


def check_times(times: Real[ArrayLike, "..."], dtype) -> Float[Array, " time"]:
    """`times` as a 1-D strictly increasing array in the dtype of the state.

    Static problems (rank, length) raise a `ValueError` at once; monotonicity is
    checked eagerly when `times` is concrete and with `eqx.error_if` under `jit`.
    Casting to the state's dtype keeps strict dtype promotion happy inside diffrax.
    Times known now (NumPy arrays, lists, concrete arrays) stay concrete under
    `jit`, so that `FixedStepRK4` takes its `lax.scan` path there too.
    """
    if is_concrete(times):
        # Under `jit`, `jnp.asarray` of constants would give a tracer.
        with jax.ensure_compile_time_eval():
            times = jnp.asarray(times)
            times = times.astype(dtype) if times.ndim == 1 else times
    else:
        times = jnp.asarray(times)
    if times.ndim != 1:
        raise ValueError(
            f"`times` must be 1-D (one time per output), got shape {times.shape}."
        )
    if times.shape[0] == 0:
        raise ValueError("`times` must hold at least one time (the initial time).")
    times = times.astype(dtype)
    message = "`times` must be strictly increasing (times[0] is the initial time)."
    if is_concrete(times):
        if np.any(~(np.diff(np.asarray(times)) > 0)):
            raise ValueError(message)
        return times
    return eqx.error_if(times, jnp.any(~(jnp.diff(times) > 0)), message)


def check_state(
    owner: str, x0: Real[ArrayLike, "..."], shape: tuple[int, ...] | None
) -> Float[Array, "..."]:
    """`x0` as a floating array of the model's state `shape` (None: any shape)."""
    x0 = jnp.asarray(x0)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        raise TypeError(f"`x0` must be floating point, got dtype {x0.dtype}.")
    if shape is not None and x0.shape != tuple(shape):
        raise ValueError(
            f"`x0` has shape {x0.shape} but {owner} has state shape {tuple(shape)}."
        )
    return x0


def step_counts(times: Real[ArrayLike, " time"], dt: float, dtype) -> np.ndarray | None:
    """Steps of size `dt` from ``times[0]`` to each time (concrete `times` only), or
    None when some time is not ``times[0]`` plus a multiple of `dt`.

    The tolerance absorbs the rounding of times built as ``k * dt`` in `dtype`.
    """
    times = np.asarray(times, np.float64)
    offsets = (times - times[0]) / dt
    steps = np.rint(offsets).astype(int)
    tol = 1e3 * np.finfo(dtype).eps * np.maximum(1.0, np.abs(offsets))
    return steps if np.all(np.abs(offsets - steps) <= tol) else None
