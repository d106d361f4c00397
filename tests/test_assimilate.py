"""Twin experiments and `assimilate`: from a Dataset to an analysis Dataset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import assimilax as ax
from assimilax.assimilation import analysis_rmse, assimilate
from assimilax.costs import (
    ControlVariable,
    StrongConstraint4DVar,
    ThreeDVar,
    WeakConstraint4DVar,
)
from assimilax.dynamics import Heat1D
from assimilax.io import observations_from_dataset, twin_experiment
from assimilax.observations import AbstractNoise, Identity, ScalarNoise, Stations
from assimilax.priors import DiagonalBackground, DiffusionBackground


N = 128
NOISE = 0.05


def _heat_twin(seed=0):
    grid = np.arange(N) / N
    truth0 = jnp.asarray(
        np.sin(2 * np.pi * grid)
        + 0.5 * np.cos(6 * np.pi * grid)
        + 0.3 * np.sin(10 * np.pi * grid)
    )
    model = Heat1D(n=N, kappa=0.5 / (4 * np.pi**2))
    times = jnp.arange(21.0) * 0.01
    operator = Stations.every(4, N)  # a quarter of the points
    noise = ScalarNoise(NOISE)
    ds = twin_experiment(
        model, truth0, times, operator, noise, jax.random.key(seed), observe_every=5
    )
    return model, truth0, operator, noise, ds, grid


def test_twin_experiment_dataset():
    model, truth0, operator, noise, ds, _ = _heat_twin()
    assert set(ds.data_vars) == {"truth", "obs"}
    assert ds["truth"].dims == ("time", "x") and ds["obs"].dims == ("time", "station")
    np.testing.assert_allclose(ds["truth"].isel(time=0), truth0, rtol=1e-12)
    observed = ~np.isnan(ds["obs"].values).all(axis=1)
    np.testing.assert_array_equal(np.flatnonzero(observed), [0, 5, 10, 15, 20])
    # The noise has the requested spread: obs - H(truth) ~ N(0, 0.05^2).
    clean = ds["truth"].values[observed][:, ::4]
    errors = ds["obs"].values[observed] - clean
    assert abs(errors.std() - NOISE) < 0.15 * NOISE  # 160 samples: ~6% sd of the sd
    assert abs(errors.mean()) < 3 * NOISE / np.sqrt(errors.size)
    obs = observations_from_dataset(ds, operator=operator, noise=noise)
    assert int(obs.mask.sum()) == 5 * 32


def test_twin_experiment_errors():
    model, truth0, operator, noise, _, _ = _heat_twin()
    with pytest.raises(ValueError, match="`observe_every` must be >= 1"):
        twin_experiment(
            model,
            truth0,
            jnp.arange(3.0),
            operator,
            noise,
            jax.random.key(0),
            observe_every=0,
        )

    class WeightsOnly(AbstractNoise):
        def whiten(self, residual):
            return residual

    with pytest.raises(NotImplementedError, match="WeightsOnly cannot draw noise"):
        twin_experiment(
            model, truth0, jnp.arange(3.0), operator, WeightsOnly(), jax.random.key(0)
        )


def test_heat_4dvar_recovers_initial_state_below_noise():
    # Issue acceptance: Heat 1D, n=128, 1/4 of the points observed every 5 steps
    # with noise; strong-constraint 4DVar recovers the initial state to an RMSE
    # below the observation noise. Correlated B (length 8 grid points) spreads the
    # station information to the unobserved points.
    model, truth0, operator, noise, ds, grid = _heat_twin()
    obs = observations_from_dataset(ds, operator=operator, noise=noise)
    xb = truth0 + jnp.asarray(0.3 * np.sin(4 * np.pi * grid + 1.0))
    background = DiffusionBackground(xb, std=0.3, length_scale=8.0)
    problem = StrongConstraint4DVar(
        model, obs, background, t0=0.0, control=ControlVariable()
    )
    out = assimilate(problem, solver=ax.LBFGS(rtol=1e-6))
    assert out.attrs["converged"] == 1 and out.attrs["result"] == "successful"
    rmse0 = float(np.sqrt(np.mean((out["analysis"].isel(time=0) - truth0) ** 2)))
    rmse_background = float(np.sqrt(np.mean((xb - truth0) ** 2)))
    assert rmse0 < NOISE, rmse0
    assert rmse0 < 0.25 * rmse_background
    # The whole analysis trajectory too, via the twin Dataset's truth.
    merged = xr.merge([out, ds[["truth"]]])
    assert analysis_rmse(merged) < NOISE
    # The cost went down, term by term it is reported before and after.
    assert float(out["cost_after"].sum()) < float(out["cost_before"].sum())
    assert list(out["term"].values) == ["background", "observations"]


def test_assimilate_threedvar_single_time():
    xb = jnp.zeros(8)
    y = jnp.linspace(-1.0, 1.0, 8)
    obs = ax.observations.Observations(
        y[None], None, jnp.zeros(1), Identity(), ScalarNoise(1.0)
    )
    problem = ThreeDVar(obs, DiagonalBackground(xb, std=1.0))
    out = assimilate(
        problem,
        solver=ax.GradientDescent(learning_rate=0.5, rtol=1e-10, max_steps=1000),
    )
    # B = R = I: the analysis is the average of background and observation.
    np.testing.assert_allclose(out["analysis"].isel(time=0), y / 2, atol=1e-9)
    assert out["analysis"].sizes["time"] == 1


def test_assimilate_weak_constraint_reports_its_trajectory():
    # The driver asks the problem for its states and times: a weak-constraint
    # problem gives its control trajectory on its grid.
    model, truth0, operator, noise, ds, grid = _heat_twin()
    obs = observations_from_dataset(ds, operator=operator, noise=noise)
    xb = truth0 + jnp.asarray(0.3 * np.sin(4 * np.pi * grid + 1.0))
    background = DiffusionBackground(xb, std=0.3, length_scale=8.0)
    problem = WeakConstraint4DVar(model, obs, background, 1e-2, t0=0.0)
    out = assimilate(problem, solver=ax.LBFGS(rtol=1e-6, max_steps=2000))
    states, times = problem.states_and_times(problem.first_guess())
    # The analysis is on the problem's grid: here every time of the Dataset (the
    # unobserved ones are masked, not dropped), a state per time.
    analysed = out.dropna("time", how="all", subset=["analysis"])
    assert analysed.sizes["time"] == 21 and states.shape == (21, N)
    np.testing.assert_allclose(times, analysed["time"].values)
    np.testing.assert_allclose(analysed["background"].values, states, rtol=1e-12)
    assert out.attrs["converged"] == 1
    assert list(out["term"].values) == ["background", "model_error", "observations"]
    # The analysis fits the truth better than the background forecast does.
    truth = ds["truth"].sel(time=analysed["time"]).values
    error = np.sqrt(np.mean((analysed["analysis"].values - truth) ** 2))
    assert error < 0.5 * np.sqrt(np.mean((states - truth) ** 2)), error
