"""`fit` learns Lorenz-96's forcing ``F`` through 4DVar windows (slow: ~1-2 min)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import assimilax as ax
from assimilax.costs import StrongConstraint4DVar
from assimilax.dynamics import Lorenz96
from assimilax.learning import fit
from assimilax.observations import Identity, Observations, ScalarNoise
from assimilax.priors import DiagonalBackground


N, DT = 40, 0.05
OBS_TIMES = np.arange(1, 5) * 0.1  # four observation times in a 0.4 window
FORECAST = np.arange(0, 11) * 0.1  # the outer loss: a forecast to t = 1


def _windows(num, seed=0):
    """Windows 2 time units apart on one truth (F = 8); all 40 variables observed
    with unit noise; the background is the truth plus unit noise."""
    model = Lorenz96(n=N)
    keys = jax.random.split(jax.random.key(seed), 3)
    spun_up = model.integrate(
        8.0 + 0.01 * jax.random.normal(keys[0], (N,)), np.arange(401.0) * DT
    )[-1]
    starts = model.integrate(spun_up, np.arange(num) * 2.0)
    grid = np.concatenate([[0.0], OBS_TIMES])
    states = jax.vmap(lambda s: model.integrate(s, grid))(starts)[:, 1:]
    return {
        "obs": states + jax.random.normal(keys[1], states.shape),
        "xb": starts + jax.random.normal(keys[2], starts.shape),
        "future": jax.vmap(lambda s: model.integrate(s, FORECAST))(starts),
    }


def _problem(params, window):
    model = Lorenz96(n=N, F=params["F"])
    observations = Observations(
        window["obs"], None, OBS_TIMES, Identity(), ScalarNoise(1.0)
    )
    return StrongConstraint4DVar(
        model, observations, DiagonalBackground(window["xb"], 1.0), t0=0.0
    )


def _forecast_error(x0, params, window):
    # Depends on F through the analysis (hypergradient) and through the forecast
    # (the direct term).
    forecast = Lorenz96(n=N, F=params["F"]).integrate(x0, FORECAST)
    return jnp.mean((forecast - window["future"]) ** 2)


@pytest.mark.slow
def test_lorenz96_forcing_recovered_from_six():
    result = fit(
        _problem,
        _forecast_error,
        {"F": jnp.asarray(6.0)},
        _windows(16),
        optimiser=optax.adam(0.2, b1=0.5),
        solver=ax.LBFGS(rtol=1e-8, max_steps=500),
        steps=40,
        batch_size=16,
    )
    forcing = float(result.params["F"])
    assert abs(forcing - 8.0) / 8.0 < 0.02, forcing
    assert int(result.history["inner_failures"].sum()) == 0
