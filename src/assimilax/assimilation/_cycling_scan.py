"""The compiled part of `cycle`: its windows' observations, and a `lax.scan`
over them in chunks (one compiled program, called once per chunk)."""

import math

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .._progress import AbstractProgress
from ..costs._window import grid_array
from ..observations import Observations
from ._cycling_methods import AbstractCyclingMethod


def regular_times(times: np.ndarray, t0: float | None) -> tuple[float, float]:
    """The observation interval, and the first guess's time ``t0``."""
    if times.size < 1:
        raise ValueError("cycle: `observations` hold no observed time.")
    # Times are stored in the observations' dtype: in float32 each carries a
    # rounding error of eps * |t|, so intervals far from t = 0 differ by more
    # than 1e-6 of their length.
    floating = np.issubdtype(times.dtype, np.floating)
    eps = float(np.finfo(times.dtype).eps) if floating else 0.0
    rounding = 8 * eps * float(np.abs(times).max()) if times.size else 0.0
    if times.size > 1:
        steps = np.diff(times)
        interval = float(steps.mean())
        if np.any(np.abs(steps - interval) > max(1e-6 * interval, rounding)):
            raise ValueError(
                "cycle: `observations` must be at regular times (one interval "
                f"between all observed times); got intervals {np.unique(steps)[:4]}."
            )
    elif t0 is None:
        raise ValueError("cycle: with a single observation time, give `t0`.")
    else:
        interval = float(times[0] - t0)
    t0 = float(times[0] - interval) if t0 is None else float(t0)
    if abs(times[0] - t0 - interval) > max(1e-6 * interval, rounding):
        raise ValueError(
            f"cycle(t0=...) must be one observation interval ({interval}) before "
            f"the first observation time {float(times[0])}, got {t0}."
        )
    return interval, t0


def window_data(
    observations: Observations,
    keep: np.ndarray,
    method: AbstractCyclingMethod,
    num: int,
):
    """Values and mask of the observations each window assimilates, ``(num,
    assimilated, ...)``, and the indices of the times new to each window,
    ``(num, shift)`` (where the window's analysis is reported)."""
    values = np.asarray(observations.values)[keep]
    mask = np.asarray(observations.mask)[keep]
    starts = np.arange(num)[:, None] * method.shift
    used = starts + method.window - method.assimilated + np.arange(method.assimilated)
    new = starts + method.window - method.shift + np.arange(method.shift)
    return jnp.asarray(values[used]), jnp.asarray(mask[used]), new


@eqx.filter_jit
def _run(dynamics, method, solver, operator, noise, carry, values, mask, interval):
    """Scan the windows of one chunk; `carry` is the background and the state of
    the method's covariance model (`None` for a static ``B``)."""
    first = method.window - method.assimilated + 1
    relative = np.arange(first, method.window + 1) * interval
    times = grid_array(relative, values.dtype)
    new = method.window - method.shift + 1

    def one_window(carry, data):
        xb, covariance_state = carry
        # The times are checked while traced (their eager check is not meant for
        # constants under jit), then swapped for a concrete copy: 4DVar problems
        # need a known window grid.
        observations = Observations(data[0], data[1], relative, operator, noise)
        observations = eqx.tree_at(lambda o: o.times, observations, times)
        out = method.analyse(
            dynamics, xb, observations, interval, solver, covariance_state
        )
        step = (out.analysis[new:], out.forecast[new:], xb)
        spread = method.covariance.spread(covariance_state)
        outputs = (*step, out.converged, out.num_steps, spread)
        return (out.analysis[method.shift], out.next_covariance), outputs

    return lax.scan(one_window, carry, (values, mask))


def scan_windows(
    args: tuple,
    xb: Float[Array, "*state"],
    values: Float[Array, "num assimilated *obs"],
    masks: Bool[Array, "num assimilated *obs"],
    interval: float,
    *,
    chunk: int,
    progress: AbstractProgress,
) -> tuple[np.ndarray | None, ...]:
    """Run the `num` windows of `values` (shape ``(num, assimilated, *obs)``)
    from the first background `xb` (shape ``(*state)``), `chunk` per compiled
    call, telling `progress` of each chunk; the last chunk is padded with
    unobserved windows, whose outputs are dropped.

    `args` are the dynamics, method, solver, operator and noise. **Returns:**
    the per-window outputs of the scan concatenated over the chunks, as NumPy
    arrays (`None` for an output the method does not give).
    """
    method = args[1]
    num = values.shape[0]
    carry = (xb, method.covariance.init(method.background))
    outputs = []
    meter = progress.open(total=math.ceil(num / chunk), desc="cycle")
    try:
        for start in range(0, num, chunk):
            pad = max(0, start + chunk - num)
            part = [
                jnp.concatenate([a[start:], jnp.zeros_like(a[:pad])])
                if pad
                else a[start : start + chunk]
                for a in (values, masks)
            ]
            carry, out = _run(*args, carry, *part, interval)
            outputs.append(jax.tree.map(lambda a: np.asarray(a)[: chunk - pad], out))
            meter.update()
    finally:
        meter.close()
    return tuple(
        None if parts[0] is None else np.concatenate(parts) for parts in zip(*outputs)
    )
