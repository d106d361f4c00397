"""Observation operators, noise models and `Observations` against hand computations."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.observations import (
    AbstractNoise,
    DiagonalNoise,
    Identity,
    Linear,
    Mask,
    Observations,
    ScalarNoise,
    Stations,
)


# Float64 round-off on these small sums is ~1e-15; 1e-12 leaves room but would
# catch any real error (a wrong index or a missing term is O(1)).
TOL = 1e-12


def _random(seed, *shape):
    return np.random.default_rng(seed).normal(size=shape)


# --- operators --------------------------------------------------------------------


def test_identity():
    x = _random(0, 3, 4)
    np.testing.assert_array_equal(Identity()(jnp.asarray(x)), x)
    assert Identity().state_shape is None
    assert Identity().obs_shape((3, 4)) == (3, 4)


def test_mask_hand():
    mask = np.array([True, False, True, True, False])
    x = _random(1, 5)
    out = Mask(jnp.asarray(mask))(jnp.asarray(x))
    np.testing.assert_array_equal(out, [x[0], 0.0, x[2], x[3], 0.0])
    assert Mask(mask).obs_shape((5,)) == (5,)


def test_stations_every_1d():
    op = Stations.every(4, 16)
    np.testing.assert_array_equal(op.indices, [0, 4, 8, 12])
    x = _random(2, 16)
    np.testing.assert_array_equal(op(jnp.asarray(x)), x[::4])
    np.testing.assert_array_equal(
        Stations.every(4, 16, offset=2).indices, [2, 6, 10, 14]
    )
    assert op.state_shape == (16,) and op.obs_shape((16,)) == (4,)


def test_stations_every_2d():
    op = Stations.every(2, (4, 6))
    x = _random(3, 4, 6)
    # Row-major order of the sub-lattice x[::2, ::2].
    np.testing.assert_array_equal(op(jnp.asarray(x)), x[::2, ::2].ravel())


def test_stations_indices_and_coordinates():
    x = _random(4, 5, 3)
    op = Stations(np.array([[0, 2], [4, 1], [3, 0]]))
    np.testing.assert_array_equal(op(jnp.asarray(x)), [x[0, 2], x[4, 1], x[3, 0]])
    grid_x = np.linspace(0.0, 1.0, 5)  # spacing 0.25
    grid_y = np.array([0.0, 10.0, 20.0])
    near = Stations.nearest(np.array([[0.1, 19.0], [0.9, 4.0]]), [grid_x, grid_y])
    np.testing.assert_array_equal(near.indices, [[0, 2], [4, 0]])
    near_1d = Stations.nearest(np.array([0.3, 0.74]), [grid_x])
    np.testing.assert_array_equal(near_1d.indices, [1, 3])
    assert near.grid_shape == (5, 3)


def test_linear_hand():
    matrix = _random(5, 3, 6)
    x = _random(6, 2, 3)
    op = Linear(jnp.asarray(matrix), state_shape=(2, 3))
    np.testing.assert_allclose(op(jnp.asarray(x)), matrix @ x.ravel(), rtol=TOL)
    assert op.obs_shape((2, 3)) == (3,)


ADJOINT_CASES = [
    (Identity(), (7,)),
    (Mask(np.array([[True, False, True], [False, True, True]])), (2, 3)),
    (Stations.every(3, 10), (10,)),
    # Repeated stations: the adjoint must add, not overwrite (scatter-add).
    (Stations(np.array([[1, 1], [0, 2], [1, 1]])), (2, 3)),
    (Linear(jnp.asarray(_random(7, 4, 6)), state_shape=(2, 3)), (2, 3)),
]


@pytest.mark.parametrize("op, shape", ADJOINT_CASES)
def test_adjoint_consistency(op, shape):
    """<H x, y> == <x, Hᵀ y> with Hᵀ from jax.linear_transpose (and from vjp)."""
    x = jnp.asarray(_random(8, *shape))
    y = jnp.asarray(_random(9, *op.obs_shape(shape)))
    (adjoint_y,) = jax.linear_transpose(op, x)(y)
    lhs = jnp.vdot(op(x), y)
    np.testing.assert_allclose(lhs, jnp.vdot(x, adjoint_y), rtol=TOL, atol=TOL)
    _, vjp = jax.vjp(op, x)
    np.testing.assert_allclose(vjp(y)[0], adjoint_y, rtol=TOL, atol=TOL)


def test_operator_errors():
    with pytest.raises(TypeError, match="Mask\\(mask=...\\) must be boolean"):
        Mask(np.ones(3))
    with pytest.raises(ValueError, match="Mask: the state has shape"):
        Mask(np.ones(3, dtype=bool))(jnp.zeros(4))
    with pytest.raises(TypeError, match="Stations\\(indices=...\\) must be integers"):
        Stations(np.array([0.5]))
    with pytest.raises(ValueError, match="indices outside grid_shape=\\(4,\\)"):
        Stations(np.array([0, 4]), grid_shape=4)
    with pytest.raises(ValueError, match="index 2 dimension"):
        Stations(np.array([[0, 1]]), grid_shape=(4,))
    with pytest.raises(ValueError, match="give \\(station, ndim\\) indices"):
        Stations.every(2, 4)(jnp.zeros((4, 4)))
    with pytest.raises(ValueError, match="needs k >= 1"):
        Stations.every(0, 10)
    with pytest.raises(ValueError, match="outside the grid range"):
        Stations.nearest(np.array([1.5]), [np.linspace(0.0, 1.0, 5)])
    # NaN fails every comparison: it used to pass the range check and snap to 0.
    finite = "positions=...\\) must be finite: station\\(s\\) \\[1\\] have NaN or inf"
    with pytest.raises(ValueError, match=finite):
        Stations.nearest(np.array([0.5, np.nan]), [np.linspace(0.0, 1.0, 5)])
    grid_2d = [np.linspace(0.0, 1.0, 5), np.linspace(0.0, 1.0, 3)]
    with pytest.raises(ValueError, match=finite):
        Stations.nearest(np.array([[0.5, 0.5], [0.5, np.inf]]), grid_2d)
    with pytest.raises(ValueError, match="Linear\\(state_shape=\\(2, 2\\)\\)"):
        Linear(jnp.ones((2, 3)), state_shape=(2, 2))
    with pytest.raises(ValueError, match="Linear: the state has shape"):
        Linear(jnp.ones((2, 3)))(jnp.zeros(4))


# --- noise ------------------------------------------------------------------------


def test_noise_hand():
    r = _random(10, 3, 2)
    std = np.abs(_random(11, 3, 2)) + 0.5
    np.testing.assert_allclose(
        ScalarNoise(0.5).weighted_square(jnp.asarray(r)),
        0.5 * np.sum(r**2) / 0.25,
        rtol=TOL,
    )
    diag = DiagonalNoise(jnp.asarray(std))
    np.testing.assert_allclose(
        diag.weighted_square(jnp.asarray(r)), 0.5 * np.sum((r / std) ** 2), rtol=TOL
    )
    np.testing.assert_allclose(diag.whiten(jnp.asarray(r)), r / std, rtol=TOL)


@pytest.mark.parametrize("std", [0.0, -1.0])
def test_scalar_noise_nonpositive(std):
    with pytest.raises(ValueError, match="ScalarNoise\\(std=...\\) must be > 0"):
        ScalarNoise(std)


def test_diagonal_noise_nonpositive_and_traced():
    with pytest.raises(ValueError, match="DiagonalNoise\\(std=...\\) must be > 0"):
        DiagonalNoise(jnp.array([1.0, 0.0]))
    # Built under jit from a (learnable) parameter, the check runs with the program.
    build = eqx.filter_jit(lambda s: ScalarNoise(s).weighted_square(jnp.ones(2)))
    np.testing.assert_allclose(build(jnp.array(2.0)), 0.25, rtol=TOL)
    with pytest.raises(eqx.EquinoxRuntimeError, match="ScalarNoise\\(std=...\\)"):
        build(jnp.array(-2.0))


def test_noise_type_and_shape_errors():
    with pytest.raises(TypeError, match="must be floating point"):
        ScalarNoise(jnp.array(1))
    with pytest.raises(ValueError, match="ScalarNoise\\(std=...\\) must be a scalar"):
        ScalarNoise(jnp.ones(2))
    with pytest.raises(ValueError, match="the residual has shape \\(3,\\)"):
        DiagonalNoise(jnp.ones(2)).whiten(jnp.ones(3))


# --- Observations -----------------------------------------------------------------


def _gappy_case():
    """3 times, 8 grid points, stations every 2nd point, two values missing."""
    rng = np.random.default_rng(12)
    values = rng.normal(size=(3, 4))
    values[0, 1] = np.nan
    values[2, 3] = np.nan
    std = np.array([0.5, 1.0, 2.0, 0.25])
    obs = Observations(
        jnp.asarray(values),
        None,
        jnp.array([0.0, 0.3, 1.1]),
        Stations.every(2, 8),
        DiagonalNoise(jnp.asarray(std)),
    )
    states = rng.normal(size=(3, 8))
    return obs, values, std, states


def test_noise_samples():
    # Draws R^{1/2} e: the sample std of 40000 draws per entry is within 2% (its
    # relative standard error is 1/sqrt(2 * 40000) ~ 0.4%).
    key = jax.random.key(0)
    draws = ScalarNoise(0.5).sample(key, (40000, 3), jnp.float64)
    assert draws.shape == (40000, 3) and draws.dtype == jnp.float64
    np.testing.assert_allclose(draws.std(axis=0), 0.5, rtol=2e-2)
    std = jnp.array([0.1, 1.0, 3.0])
    draws = DiagonalNoise(std).sample(key, (40000, 3), jnp.float32)
    assert draws.dtype == jnp.float32
    np.testing.assert_allclose(draws.std(axis=0), std, rtol=2e-2)
    # The same key and scale give the same draws whatever the model.
    np.testing.assert_allclose(
        DiagonalNoise(jnp.full(3, 0.5)).sample(key, (4, 3), jnp.float64),
        ScalarNoise(0.5).sample(key, (4, 3), jnp.float64),
        rtol=TOL,
    )
    with pytest.raises(ValueError, match=r"sample\(shape=\(4, 2\)\): the trailing"):
        DiagonalNoise(std).sample(key, (4, 2), jnp.float64)

    class WeightsOnly(AbstractNoise):
        def whiten(self, residual):
            return residual

    with pytest.raises(NotImplementedError, match="WeightsOnly cannot draw noise"):
        WeightsOnly().sample(key, (2,), jnp.float64)


def test_misfit_and_residuals_against_numpy():
    obs, values, std, states = _gappy_case()
    observed = ~np.isnan(values)
    innovation = np.where(observed, states[:, ::2] - np.nan_to_num(values), 0.0)
    expected_res = innovation / std
    np.testing.assert_allclose(
        obs.residuals(jnp.asarray(states)), expected_res, rtol=TOL
    )
    expected = 0.5 * np.sum(expected_res[observed] ** 2)
    np.testing.assert_allclose(obs.misfit(jnp.asarray(states)), expected, rtol=TOL)
    # Gradient: Hᵀ R⁻¹ (H x - y) on observed entries, scattered back to the grid.
    grad = np.zeros_like(states)
    grad[:, ::2] = innovation / std**2
    np.testing.assert_allclose(
        jax.grad(obs.misfit)(jnp.asarray(states)), grad, rtol=TOL, atol=TOL
    )


def test_nan_becomes_mask():
    obs, values, _, states = _gappy_case()
    np.testing.assert_array_equal(obs.mask, ~np.isnan(values))
    assert obs.values[0, 1] == 0.0 and obs.values[2, 3] == 0.0
    assert np.all(np.isfinite(jax.grad(obs.misfit)(jnp.asarray(states))))
    # An explicit mask is combined with the NaN mask.
    extra = np.ones((3, 4), dtype=bool)
    extra[1, 0] = False
    masked = Observations(
        jnp.asarray(values), jnp.asarray(extra), obs.times, obs.operator, obs.noise
    )
    np.testing.assert_array_equal(masked.mask, ~np.isnan(values) & extra)


def test_mask_operator_drops_unobserved_data():
    grid_mask = np.array([True, False, True])
    values = jnp.array([[1.0, 99.0, 2.0], [3.0, 99.0, np.nan]])
    obs = Observations(
        values, None, jnp.array([0.0, 1.0]), Mask(grid_mask), ScalarNoise(1.0)
    )
    np.testing.assert_array_equal(obs.mask, [[True, False, True], [True, False, False]])
    # States equal to the data where observed: the 99s must not count.
    states = jnp.array([[1.0, 0.0, 2.0], [3.0, 0.0, 7.0]])
    assert obs.misfit(states) == 0.0


def test_learnable_noise_gradient_and_jit():
    obs, values, _, states = _gappy_case()
    scalar = Observations(
        obs.values, obs.mask, obs.times, obs.operator, ScalarNoise(2.0)
    )
    r = np.where(obs.mask, states[:, ::2] - np.asarray(obs.values), 0.0)
    # d/ds 0.5 |r|^2 / s^2 = -|r|^2 / s^3
    grad = eqx.filter_grad(lambda o: o.misfit(jnp.asarray(states)))(scalar)
    np.testing.assert_allclose(grad.noise.std, -np.sum(r**2) / 8.0, rtol=TOL)
    jitted = eqx.filter_jit(lambda o, x: o.misfit(x))(scalar, jnp.asarray(states))
    np.testing.assert_allclose(jitted, np.sum(r**2) / 8.0, rtol=TOL)


def test_vmap_over_windows():
    obs, *_ = _gappy_case()
    states = jnp.asarray(_random(13, 2, 3, 8))
    batched = jax.vmap(obs.misfit)(states)
    np.testing.assert_allclose(batched, [obs.misfit(s) for s in states], rtol=TOL)


def test_times_not_increasing():
    with pytest.raises(ValueError, match="times=...\\) must be strictly increasing"):
        Observations(
            jnp.zeros((3, 2)),
            None,
            jnp.array([0.0, 2.0, 1.0]),
            Identity(),
            ScalarNoise(1.0),
        )
    build = eqx.filter_jit(
        lambda t: Observations(jnp.zeros((2, 2)), None, t, Identity(), ScalarNoise(1.0))
    )
    with pytest.raises(eqx.EquinoxRuntimeError, match="strictly increasing"):
        build(jnp.array([1.0, 1.0]))


def test_check_window():
    obs, *_ = _gappy_case()
    assert obs.check_window(0.0, 1.1) is obs
    with pytest.raises(ValueError, match="outside the assimilation window.*time 1.1"):
        obs.check_window(0.0, 1.0)
    traced = eqx.filter_jit(lambda o, t1: o.check_window(0.0, t1).times)
    np.testing.assert_allclose(traced(obs, jnp.array(2.0)), obs.times)
    with pytest.raises(
        eqx.EquinoxRuntimeError, match="outside the assimilation window"
    ):
        traced(obs, jnp.array(1.0))


def test_observations_errors():
    noise, times = ScalarNoise(1.0), jnp.array([0.0, 1.0])
    # Under pytest the jaxtyping hook raises first (also a TypeError naming the
    # parameter); without it our own message does. Both name the argument.
    with pytest.raises(TypeError, match="operator"):
        Observations(jnp.zeros((2, 3)), None, times, lambda x: x, noise)
    with pytest.raises(TypeError, match="noise"):
        Observations(jnp.zeros((2, 3)), None, times, Identity(), 1.0)
    with pytest.raises(TypeError, match="values=...\\) must be a floating array"):
        Observations(jnp.zeros((2, 3), dtype=int), None, times, Identity(), noise)
    with pytest.raises(
        ValueError, match="times=...\\) has shape \\(2,\\) but `values` has 3"
    ):
        Observations(jnp.zeros((3, 3)), None, times, Identity(), noise)
    with pytest.raises(
        ValueError, match="mask=...\\) must be boolean of shape \\(2, 3\\)"
    ):
        Observations(
            jnp.zeros((2, 3)), jnp.ones((2, 2), dtype=bool), times, Identity(), noise
        )
    with pytest.raises(ValueError, match="shape \\(3,\\) at each time but Stations"):
        Observations(jnp.zeros((2, 3)), None, times, Stations.every(2, 8), noise)
    with pytest.raises(ValueError, match="contain inf"):
        Observations(jnp.array([[0.0], [jnp.inf]]), None, times, Identity(), noise)
    obs = Observations(jnp.zeros((2, 3)), None, times, Identity(), noise)
    with pytest.raises(ValueError, match="leading time axis of length 2"):
        obs.misfit(jnp.zeros((3, 3)))


def test_concrete_times_under_jit_are_checked_eagerly():
    # NumPy times closed over by a jitted function stay concrete: building the
    # Observations there must neither raise a tracer-conversion error nor defer
    # the monotonicity check to run time.
    times = np.array([0.0, 0.1, 0.2])

    @jax.jit
    def misfit(values):
        obs = Observations(values, None, times, Identity(), ScalarNoise(1.0))
        return obs.misfit(jnp.zeros((3, 4)))

    values = jnp.ones((3, 4))
    np.testing.assert_allclose(misfit(values), 0.5 * 12, rtol=1e-12)

    bad = np.array([0.0, 0.2, 0.1])
    with pytest.raises(ValueError, match="must be strictly increasing"):
        jax.jit(
            lambda v: Observations(v, None, bad, Identity(), ScalarNoise(1.0)).values
        )(values)
