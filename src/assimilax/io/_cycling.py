"""`cycle`: consecutive assimilation windows, the analysis of one giving the
background of the next, with DAPPER-style RMSE statistics."""

import math

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import ArrayLike, Float

from ..bilevel import AbstractInnerSolver
from ..dynamics import AbstractDynamics
from ..observations import AbstractNoise, AbstractObservationOperator, Observations
from ._cycling_methods import AbstractCyclingMethod, static_grid
from ._cycling_stats import cycling_statistics
from ._twin import TRUTH
from ._xarray import observations_from_dataset, trajectory_to_dataset


def _regular_times(times: np.ndarray, t0: float | None) -> tuple[float, float]:
    """The observation interval, and the first guess's time ``t0``."""
    if times.size < 1:
        raise ValueError("cycle: `observations` hold no observed time.")
    if times.size > 1:
        steps = np.diff(times)
        interval = float(steps.mean())
        if np.any(np.abs(steps - interval) > 1e-6 * interval):
            raise ValueError(
                "cycle: `observations` must be at regular times (one interval "
                f"between all observed times); got intervals {np.unique(steps)[:4]}."
            )
    elif t0 is None:
        raise ValueError("cycle: with a single observation time, give `t0`.")
    else:
        interval = float(times[0] - t0)
    t0 = float(times[0] - interval) if t0 is None else float(t0)
    if abs(times[0] - t0 - interval) > 1e-6 * interval:
        raise ValueError(
            f"cycle(t0=...) must be one observation interval ({interval}) before "
            f"the first observation time {float(times[0])}, got {t0}."
        )
    return interval, t0


def _window_data(observations: Observations, keep: np.ndarray, method, num: int):
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
    """Scan the windows of one chunk; `carry` is the background and, for a
    cycled ``B``, its covariance (else `None`)."""
    first = method.window - method.assimilated + 1
    relative = np.arange(first, method.window + 1) * interval
    times = static_grid(relative, values.dtype)
    new = method.window - method.shift + 1

    def one_window(carry, data):
        xb, covariance = carry
        # The times are checked while traced (their eager check is not meant for
        # constants under jit), then swapped for a concrete copy: 4DVar problems
        # need a known window grid.
        observations = Observations(data[0], data[1], relative, operator, noise)
        observations = eqx.tree_at(lambda o: o.times, observations, times)
        out = method.analyse(dynamics, xb, observations, interval, solver, covariance)
        step = (out.analysis[new:], out.forecast[new:], xb)
        spread = (
            None if covariance is None else jnp.sqrt(jnp.trace(covariance) / xb.size)
        )
        outputs = (*step, out.converged, out.num_steps, spread)
        return (out.analysis[method.shift], out.next_covariance), outputs

    return lax.scan(one_window, carry, (values, mask))


def cycle(
    dynamics: AbstractDynamics,
    observations: Observations | xr.Dataset,
    x_first_guess: Float[ArrayLike, "*state"],
    *,
    method: AbstractCyclingMethod,
    solver: AbstractInnerSolver,
    operator: AbstractObservationOperator | None = None,
    noise: AbstractNoise | None = None,
    truth: Float[ArrayLike, " time *state"] | xr.DataArray | None = None,
    t0: float | None = None,
    burn_in: float = 0.0,
    progress: bool = False,
    chunk: int | None = None,
) -> xr.Dataset:
    """Cycle an assimilation method over consecutive windows.

    The first window's background is `x_first_guess` at ``t0``; each window's
    analysis, forecast to the next window start, is the next background. See
    `ThreeDVarCycling` and `FourDVarCycling` for what a window is.

    **Arguments:**

    - `dynamics`: the (autonomous) forecast model.
    - `observations`: an `Observations`, or a Dataset with an `obs` variable (e.g.
      from `twin_experiment`; then give `operator` and `noise`, and its `truth`
      is used for the statistics). Times where nothing is observed are dropped;
      the others must be regular, one interval ``Δ`` apart.
    - `x_first_guess`: the background of the first window, valid at `t0`.
    - `method`, `solver`: the window method and the inner solver (e.g. `LBFGS`).
    - `truth`: the true states at the observation times (an array, or a
      DataArray with a `time` coordinate); enables the statistics.
    - `t0`: the time of the first guess (default: one ``Δ`` before the first
      observation, which is the only value accepted).
    - `burn_in`: time after `t0` excluded from the time-averaged statistics.
    - `progress`, `chunk`: show a tqdm bar, running `chunk` windows per compiled
      call (default: 20 chunks; the last one is padded with unobserved windows).

    **Returns:** a Dataset on the analysed observation times with `analysis` and
    `forecast` (the background forecast, before assimilation) states, per window
    the `background` (the state the window starts from, at `window_start`),
    `converged` and `num_steps` (dim `window`; with a cycled ``B`` also its
    `background_spread`, ``sqrt(trace(B) / n)``), and with a truth `truth`,
    ``rmse.a``/``rmse.f`` per time and their time averages after `burn_in` in
    attrs (DAPPER's convention: the mean over time of the RMSE over space).

    **Raises:** `TypeError` for a wrong `method`; `ValueError` for irregular
    observation times, too few observations for one window, a `t0` that is not
    one interval before them, a first guess or truth of the wrong shape.

    **Cost:** one compiled `lax.scan` over the windows (per chunk), each an inner
    solve; observations left after the last full window are not used.
    """
    if not isinstance(method, AbstractCyclingMethod):
        raise TypeError(
            "cycle(method=...) must be a cycling method such as "
            f"ThreeDVarCycling(background) or FourDVarCycling(...); got {method!r}."
        )
    if isinstance(observations, xr.Dataset):
        if noise is None:
            raise ValueError("cycle: a Dataset of observations needs `noise=`.")
        if truth is None and TRUTH in observations:
            truth = observations[TRUTH]
        kwargs = {} if operator is None else {"operator": operator}
        observations = observations_from_dataset(observations, noise=noise, **kwargs)
    xb = jnp.asarray(x_first_guess)
    if xb.shape != method.background.xb.shape:
        raise ValueError(
            f"cycle(x_first_guess=...) has shape {xb.shape} but the method's "
            f"background has shape {method.background.xb.shape}."
        )
    mask = np.asarray(observations.mask)
    keep = mask.reshape(mask.shape[0], -1).any(axis=1)
    obs_times = np.asarray(observations.times)[keep]
    interval, t0 = _regular_times(obs_times, t0)
    num = (obs_times.size - method.window) // method.shift + 1
    if num < 1:
        raise ValueError(
            f"cycle: {obs_times.size} observation times are fewer than one window "
            f"({method.window})."
        )
    values, masks, index = _window_data(observations, keep, method, num)
    args = (dynamics, method, solver, observations.operator, observations.noise)
    carry = (xb, method.initial_covariance())
    chunk = num if not progress and chunk is None else chunk
    chunk = max(1, math.ceil(num / 20)) if chunk is None else chunk
    outputs, iterator = [], range(0, num, chunk)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=math.ceil(num / chunk), desc="cycle")
    for start in iterator:
        pad = max(0, start + chunk - num)
        part = (
            [
                jnp.concatenate([a[start:], jnp.zeros_like(a[:pad])])
                for a in (values, masks)
            ]
            if pad
            else [values[start : start + chunk], masks[start : start + chunk]]
        )
        carry, out = _run(*args, carry, *part, interval)
        outputs.append(jax.tree.map(lambda a: np.asarray(a)[: chunk - pad], out))
    analysis, forecast, background, converged, steps, spread = (
        None if parts[0] is None else np.concatenate(parts) for parts in zip(*outputs)
    )
    times = obs_times[index.reshape(-1)]
    state = analysis.shape[2:]
    ds = xr.merge(
        [
            trajectory_to_dataset(
                analysis.reshape((-1,) + state), times, name="analysis"
            ),
            trajectory_to_dataset(
                forecast.reshape((-1,) + state), times, name="forecast"
            ),
        ],
        combine_attrs="override",
    )
    space_dims = ds["analysis"].dims[1:]
    ds["background"] = (("window", *space_dims), background)
    ds["background"].attrs = {"long_name": "background at the window start"}
    ds["converged"] = ("window", converged)
    ds["num_steps"] = ("window", steps)
    if spread is not None:
        ds["background_spread"] = ("window", spread)
        ds["background_spread"].attrs = {
            "long_name": "sqrt(trace(B) / n) of the cycled B at the window start"
        }
    ds = ds.assign_coords(
        window_start=("window", t0 + interval * method.shift * np.arange(num))
    )
    ds.attrs.update(t0=t0, interval=interval, num_windows=num, method=repr(method))
    if truth is None:
        return ds
    if isinstance(truth, xr.DataArray):
        truth = truth.sel(time=times, method="nearest", tolerance=1e-6 * interval)
        truth = truth.values
    else:
        truth = np.asarray(truth)
        if truth.shape[0] != keep.size:
            raise ValueError(
                f"cycle(truth=...) must hold one state per observation time "
                f"({keep.size}), got shape {truth.shape}."
            )
        truth = truth[keep][index.reshape(-1)]
    if truth.shape != ds["analysis"].shape:
        raise ValueError(
            f"cycle(truth=...) gives states of shape {truth.shape} at the analysed "
            f"times, but the analysis has shape {ds['analysis'].shape}."
        )
    ds[TRUTH] = (ds["analysis"].dims, truth)
    return cycling_statistics(ds, burn_in=burn_in)
