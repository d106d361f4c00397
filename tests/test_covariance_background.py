"""`CovarianceBackground` (dense B) and `background_error_covariance` (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import assimilax as ax
from assimilax.assimilation import background_error_covariance
from assimilax.costs import ThreeDVar
from assimilax.observations import Identity, Observations, ScalarNoise
from assimilax.priors import CovarianceBackground


def _spd(n, key):
    a = jax.random.normal(key, (n, n))
    return a @ a.T / n + 0.1 * jnp.eye(n)


def test_square_root_whitening_and_energy(getkey):
    n = 7
    covariance = _spd(n, getkey())
    xb = jax.random.normal(getkey(), (n,))
    background = CovarianceBackground(xb, covariance)
    v, x = jax.random.normal(getkey(), (n,)), jax.random.normal(getkey(), (n,))
    np.testing.assert_allclose(background.covariance(v), covariance @ v, rtol=1e-12)
    np.testing.assert_allclose(background.covariance_matrix, covariance, rtol=1e-12)
    np.testing.assert_allclose(background.whiten(background.to_state(v)), v, rtol=1e-10)
    expected = 0.5 * (x - xb) @ jnp.linalg.solve(covariance, x - xb)
    np.testing.assert_allclose(background.energy(x), expected, rtol=1e-10)


def test_threedvar_with_dense_b_matches_blue(getkey):
    n = 6
    covariance = _spd(n, getkey())
    xb, y = jax.random.normal(getkey(), (n,)), jax.random.normal(getkey(), (1, n))
    observations = Observations(y, None, jnp.zeros(1), Identity(), ScalarNoise(0.5))
    problem = ThreeDVar(observations, CovarianceBackground(xb, covariance))
    sol = ax.argmin(
        lambda v, p: p.cost(v),
        problem.first_guess(),
        problem,
        solver=ax.LBFGS(rtol=1e-10),
    )
    gain = covariance @ jnp.linalg.inv(covariance + 0.25 * jnp.eye(n))
    blue = xb + gain @ (y[0] - xb)
    np.testing.assert_allclose(problem.to_state(sol.value), blue, rtol=1e-8)


def test_hypergradient_through_the_factorisation():
    # B = s * C built inside the differentiated function; d analysis / d s
    # against central differences.
    n = 4
    covariance = _spd(n, jax.random.key(3))
    y = jnp.linspace(-1.0, 1.0, n)[None]
    observations = Observations(y, None, jnp.zeros(1), Identity(), ScalarNoise(1.0))

    def analysis_norm(scale):
        background = CovarianceBackground(jnp.zeros(n), scale * covariance)
        problem = ThreeDVar(observations, background)
        sol = ax.argmin(
            lambda v, p: p.cost(v),
            problem.first_guess(),
            problem,
            solver=ax.LBFGS(rtol=1e-12),
            hypergradient=ax.Implicit(),
        )
        return jnp.sum(problem.to_state(sol.value) ** 2)

    grad = jax.grad(analysis_norm)(0.7)
    eps = 1e-5
    fd = (analysis_norm(0.7 + eps) - analysis_norm(0.7 - eps)) / (2 * eps)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_bad_covariances_raise():
    xb = jnp.zeros(3)
    with pytest.raises(ValueError, match="covariance=...\\) must have shape"):
        CovarianceBackground(xb, jnp.eye(4))
    with pytest.raises(ValueError, match="symmetric"):
        CovarianceBackground(xb, jnp.eye(3).at[0, 1].set(0.5))
    with pytest.raises(ValueError, match="positive definite"):
        CovarianceBackground(xb, jnp.diag(jnp.array([1.0, 0.0, 1.0])))
    with pytest.raises(ValueError, match="xb=...\\) must be 1-D"):
        CovarianceBackground(jnp.zeros((2, 2)), jnp.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        CovarianceBackground(xb.at[1].set(jnp.nan), jnp.eye(3))


def _fake_cycle(getkey, num=30, n=3):
    # A cycle-like Dataset: backgrounds at window starts 0, 1, 2, ...
    starts = np.arange(num, dtype=float)
    truth = np.asarray(jax.random.normal(getkey(), (num + 1, n)))
    errors = np.asarray(jax.random.normal(getkey(), (num, n)))
    ds = xr.Dataset(
        {"background": (("window", "x"), truth[:num] + errors)},
        coords={"window_start": ("window", starts)},
        attrs={"t0": 0.0, "interval": 1.0},
    )
    truth = xr.DataArray(
        truth, dims=("time", "x"), coords={"time": np.arange(num + 1.0)}
    )
    return ds, truth, errors


def test_background_error_covariance_is_the_sample_covariance(getkey):
    ds, truth, errors = _fake_cycle(getkey)
    out = background_error_covariance(ds, truth=truth, burn_in=4.5)
    np.testing.assert_allclose(out, np.cov(errors[5:], rowvar=False), rtol=1e-12)
    with pytest.raises(ValueError, match="has no `truth`"):
        background_error_covariance(ds)
    with pytest.raises(ValueError, match="need >= 2"):
        background_error_covariance(ds, truth=truth, burn_in=28.5)
    with pytest.raises(ValueError, match="no `background`"):
        background_error_covariance(ds.drop_vars("background"), truth=truth)
