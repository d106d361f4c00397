"""Cycled 4DVar with each model on a block of observations: time-averaged
``rmse.a`` of the slow variables (the issue's second measure of skill)."""

import jax.numpy as jnp
import numpy as np

from ... import bilevel as ax
from ...assimilation import cycle, FourDVarCycling
from ...observations import Identity, Observations, ScalarNoise
from ...priors import CovarianceBackground


def cycled_rmse(
    model,
    truth: dict[str, np.ndarray],
    first: int,
    last: int,
    *,
    obs_std: float,
    background_var: float,
    window: int = 2,
    burn_in: float = 1.0,
) -> dict[str, float]:
    """Cycled strong-constraint 4DVar with `model` over the observations
    ``first + 1 ... last`` (indices of `truth["time"]`); returns the
    time-averaged ``rmse.a`` and ``rmse.f`` after `burn_in` (against the true
    slow states, used for scoring only).

    Windows of `window` observation times sliding by one (DAPPER's
    ``Var4D(Lag=window)``), a static ``B = background_var I`` (the same for every
    model), the first guess the observations at ``first`` where there are any,
    else their mean.
    """
    obs = truth["obs"][first + 1 : last + 1]
    times = truth["time"][first + 1 : last + 1]
    observations = Observations(
        jnp.asarray(obs), None, jnp.asarray(times), Identity(), ScalarNoise(obs_std)
    )
    start = truth["obs"][first]
    first_guess = np.where(np.isfinite(start), start, np.nanmean(truth["obs"]))
    size = obs.shape[1]
    background = CovarianceBackground(jnp.zeros(size), background_var * jnp.eye(size))
    ds = cycle(
        model,
        observations,
        jnp.asarray(first_guess),
        method=FourDVarCycling(background, window=window, shift=1),
        solver=ax.LBFGS(rtol=1e-6, max_steps=500),
        truth=jnp.asarray(truth["slow"][first + 1 : last + 1]),
        t0=float(truth["time"][first]),
        burn_in=burn_in,
    )
    return {"rmse.a": float(ds.attrs["rmse.a"]), "rmse.f": float(ds.attrs["rmse.f"])}
