"""Forecast skill on held-out times: RMSE against lead time and the valid time."""

import equinox as eqx
import jax
import numpy as np


def forecast_rmse(model, starts, truth, interval: float) -> np.ndarray:
    """The RMSE of forecasts from the true slow states `starts`
    ``(num, K)`` against `truth` ``(num, leads, K)`` (lead ``j`` at ``j
    interval``): shape ``(leads,)``, averaged over variables and starts."""
    times = np.arange(truth.shape[1]) * interval
    forecasts = eqx.filter_jit(jax.vmap(lambda x: model.integrate(x, times)))(starts)
    return np.sqrt(np.mean((np.asarray(forecasts) - truth) ** 2, axis=(0, 2)))


def valid_time(leads: np.ndarray, normalised: np.ndarray, level=0.5) -> float:
    """The first lead time where `normalised` RMSE reaches `level` (linear
    interpolation between leads); the last lead if it never does."""
    above = np.nonzero(normalised >= level)[0]
    if above.size == 0:
        return float(leads[-1])
    j = above[0]
    if j == 0:
        return float(leads[0])
    frac = (level - normalised[j - 1]) / (normalised[j] - normalised[j - 1])
    return float(leads[j - 1] + frac * (leads[j] - leads[j - 1]))


def evaluation_set(truth: dict, first: int, stride: int, lead_steps: int):
    """True slow states from observation index `first` every `stride`, with
    their next `lead_steps` states: ``(num, K)`` and ``(num, lead_steps + 1, K)``."""
    slow = truth["slow"]
    idx = np.arange(first, slow.shape[0] - lead_steps, stride)
    return slow[idx], np.stack([slow[i : i + lead_steps + 1] for i in idx])
