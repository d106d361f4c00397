"""`cycle`: consecutive assimilation windows, the analysis of one giving the
background of the next, with DAPPER-style RMSE statistics."""

import math

import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import ArrayLike, Float

from .._dims import space_dim_roles, TIME, TRUTH
from .._progress import AbstractProgress, check_progress, NoProgress
from ..bilevel import AbstractInnerSolver
from ..dynamics import AbstractDynamics
from ..io import observations_from_dataset, trajectory_to_dataset
from ..observations import AbstractNoise, AbstractObservationOperator, Observations
from ._cycling_methods import AbstractCyclingMethod
from ._cycling_scan import regular_times, scan_windows, window_data
from ._cycling_stats import cycling_statistics


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
    progress: AbstractProgress = NoProgress(),
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
    - `progress`: a progress meter, `NoProgress()` (the default) or
      `TqdmProgress()`, told of each chunk of windows.
    - `chunk`: windows per compiled call (an int >= 1; default: all of them in
      one call with `NoProgress()`, else as many as make the meter's
      `preferred_updates` chunks, 20 for `TqdmProgress`). The last chunk is
      padded with unobserved windows.

    **Returns:** a Dataset on the analysed observation times with `analysis` and
    `forecast` (the background forecast, before assimilation) states, per window
    the `background` (the state the window starts from, at `window_start`),
    `converged` and `num_steps` (dim `window`; with a cycled ``B`` also its
    `background_spread`, ``sqrt(trace(B) / n)``), and with a truth `truth`,
    ``rmse.a``/``rmse.f`` per time and their time averages after `burn_in` in
    attrs (DAPPER's convention: the mean over time of the RMSE over space).

    **Raises:** `TypeError` for a wrong `method` or `progress`; `ValueError` for
    a `chunk` < 1, irregular
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
    check_progress("cycle", progress)
    if chunk is not None and not (isinstance(chunk, int) and chunk >= 1):
        raise ValueError(f"cycle(chunk=...) must be an int >= 1, got {chunk!r}.")
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
    interval, t0 = regular_times(obs_times, t0)
    num = (obs_times.size - method.window) // method.shift + 1
    if num < 1:
        raise ValueError(
            f"cycle: {obs_times.size} observation times are fewer than one window "
            f"({method.window})."
        )
    values, masks, index = window_data(observations, keep, method, num)
    args = (dynamics, method, solver, observations.operator, observations.noise)
    if chunk is None:
        chunk = max(1, math.ceil(num / progress.preferred_updates))
    analysis, forecast, background, converged, steps, spread = scan_windows(
        args, xb, values, masks, interval, chunk=chunk, progress=progress
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
        # By dim names, not file order (a (time, y, x) truth on a square grid).
        truth = truth.transpose(TIME, *space_dim_roles(truth, TRUTH))
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
