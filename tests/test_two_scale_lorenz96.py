"""Two-scale Lorenz-96, corrected dynamics and their corrections: reference
tendencies, the energy budget, gradients against finite differences, errors."""

import dataclasses

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.dynamics import (
    CorrectedDynamics,
    DiscreteDynamics,
    FixedStepRK4,
    Heat1D,
    Integrator,
    LinearCorrection,
    LocalConvCorrection,
    Lorenz96,
    TwoScaleLorenz96,
)


# Non-default values, so that a swapped or dropped parameter shows.
PARAMS = dict(F=7.5, h=0.7, b=8.0, c=12.0)


def _random_state(model, seed):
    rng = np.random.default_rng(seed)
    slow = 5.0 * rng.normal(size=model.K)
    fast = 0.5 * rng.normal(size=model.K * model.J)
    return jnp.asarray(np.concatenate([slow, fast]))


def _numpy_tendency(x, K, J, F, h, b, c):
    """The two-scale equations written out term by term, with explicit loops."""
    x = np.asarray(x)
    X, Y = x[:K], x[K:]
    n = K * J
    dX, dY = np.zeros(K), np.zeros(n)
    for k in range(K):
        block = sum(Y[k * J + i] for i in range(J))
        dX[k] = (
            X[(k - 1) % K] * (X[(k + 1) % K] - X[(k - 2) % K])
            - X[k]
            + F
            - h * c / b * block
        )
    for j in range(n):
        dY[j] = (
            -c * b * Y[(j + 1) % n] * (Y[(j + 2) % n] - Y[(j - 1) % n])
            - c * Y[j]
            + h * c / b * X[j // J]
        )
    return np.concatenate([dX, dY])


def _central_difference(fn, h):
    return (fn(h) - fn(-h)) / (2 * h)


def _functional(weights):
    return lambda traj: jnp.sum(weights * jnp.sin(traj))


# ------------------------------------------------------------ the two-scale model


@pytest.mark.parametrize("K, J", [(4, 3), (5, 4), (6, 3), (4, 1)])
def test_vector_field_matches_numpy_loops(K, J):
    model = TwoScaleLorenz96(K=K, J=J, **PARAMS)
    for seed in range(3):
        x = _random_state(model, seed)
        ref = _numpy_tendency(x, K, J, **PARAMS)
        out = model.vector_field(0.0, x)
        assert out.shape == (K + K * J,) and out.dtype == jnp.float64
        # The same arithmetic in another order: rounding only (~1e-15 relative).
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K, J", [(5, 4), (36, 10)])
def test_energy_budget_is_exact(K, J):
    # E = (|X|^2 + |Y|^2) / 2: advection and coupling conserve it, so
    # dE/dt = x . f(x) = -|X|^2 - c |Y|^2 + F sum(X).
    model = TwoScaleLorenz96(K=K, J=J, **PARAMS)
    for seed in range(3):
        x = _random_state(model, seed)
        X, Y = model.slow(x), model.fast(x)
        expected = (
            -jnp.sum(X**2) - PARAMS["c"] * jnp.sum(Y**2) + PARAMS["F"] * jnp.sum(X)
        )
        rate = jnp.vdot(x, model.vector_field(0.0, x))
        # The cancelling terms are O(100) each; the rest is rounding.
        scale = jnp.sum(jnp.abs(x * model.vector_field(0.0, x)))
        assert abs(rate - expected) <= 1e-13 * scale
        # A sign flipped in one coupling term would break the cancellation.
        assert abs(expected) > 1e-3 * scale


# The gradients w.r.t. x0, F and h against central differences: a case of
# `test_dynamics.py::test_gradients_match_central_differences`.


def test_default_model_is_stable_at_default_step():
    model = TwoScaleLorenz96()
    assert model.state_shape == (396,)
    assert model.integrator == FixedStepRK4(dt=0.005)
    x0 = _random_state(model, 0)
    times = 0.005 * jnp.arange(0.0, 2001.0, 50.0)  # 2000 RK4 steps, 10 time units
    traj = model.integrate(x0, times)
    assert traj.shape == (41, 396)
    assert bool(jnp.all(jnp.isfinite(traj)))
    # The attractor's slow variables stay within about +-15 and the fast ones
    # within a few units; an unstable step would blow up to inf within the run.
    assert float(jnp.max(jnp.abs(model.slow(traj)))) < 30.0
    assert float(jnp.max(jnp.abs(model.fast(traj)))) < 10.0
    assert float(jnp.std(model.slow(traj[20:]))) > 1.0  # still moving (chaotic)


def test_slow_fast_split_and_indices():
    model = TwoScaleLorenz96(K=4, J=3)
    x = jnp.arange(16.0)
    np.testing.assert_array_equal(model.slow(x), x[model.slow_indices])
    np.testing.assert_array_equal(model.slow_indices, np.arange(4))
    # Fast block k follows the slow variables, in order.
    np.testing.assert_array_equal(model.fast(x)[2], [10.0, 11.0, 12.0])
    batch = jnp.stack([x, 2 * x, 3 * x]).reshape(3, 1, 16)  # leading dims
    assert model.slow(batch).shape == (3, 1, 4)
    assert model.fast(batch).shape == (3, 1, 4, 3)
    np.testing.assert_array_equal(model.fast(np.asarray(x)), model.fast(x))  # NumPy
    with pytest.raises(ValueError, match=r"16 values along the last axis"):
        model.fast(jnp.zeros((2, 15)))


# --------------------------------------------------------------- corrected model


def test_corrected_vector_field_is_base_plus_correction(getkey):
    base = Lorenz96(n=12, F=7.0)
    correction = LocalConvCorrection(key=getkey(), output_scale=1.0)
    model = CorrectedDynamics(base, correction)
    x = 8.0 + jax.random.normal(getkey(), (12,))
    expected = base.vector_field(0.0, x) + correction(x)
    np.testing.assert_array_equal(model.vector_field(0.0, x), expected)
    assert model.state_shape == (12,) and model.grid is None
    assert model.integrator == base.integrator


def test_linear_correction_restores_the_forcing():
    # Lorenz96(F=6) plus a constant tendency 2 is Lorenz96(F=8), exactly.
    x0 = jnp.asarray(8.0 + np.cos(np.arange(10.0)))
    times = 0.05 * jnp.array([0.0, 1.0, 5.0, 20.0])
    corrected = CorrectedDynamics(Lorenz96(n=10, F=6.0), LinearCorrection(bias=2.0))
    truth = Lorenz96(n=10, F=8.0).integrate(x0, times)
    # Same steps, one extra addition per stage: rounding amplified by chaos.
    np.testing.assert_allclose(corrected.integrate(x0, times), truth, atol=1e-12)
    uncorrected = Lorenz96(n=10, F=6.0).integrate(x0, times)
    assert float(jnp.max(jnp.abs(uncorrected - truth))) > 0.1


def test_corrected_integrator_default_override_and_replace():
    base = Lorenz96(n=8)
    rk4 = FixedStepRK4(dt=0.01)
    assert CorrectedDynamics(base, LinearCorrection()).integrator == base.integrator
    model = CorrectedDynamics(base, LinearCorrection(), integrator=rk4)
    assert model.integrator == rk4
    replaced = dataclasses.replace(model, integrator=Integrator())
    assert replaced.integrator == Integrator() and replaced.base is base
    # A heat model's closed-form flow does not carry over; diffrax does.
    heat = CorrectedDynamics(Heat1D(n=8), LinearCorrection(), integrator=Integrator())
    out = heat.integrate(jnp.ones(8), jnp.array([0.0, 0.1]))
    # dx/dt = 0 + 0 * x + 0 for a constant field: it stays constant.
    np.testing.assert_allclose(out, 1.0, rtol=1e-12)


def test_corrected_dynamics_under_jit_and_vmap(getkey):
    model = CorrectedDynamics(
        TwoScaleLorenz96(K=4, J=2), LinearCorrection(weight=-0.1, bias=0.5)
    )
    x0 = jax.random.normal(getkey(), (3, 12))
    times = jnp.array([0.0, 0.01, 0.02])
    batched = eqx.filter_jit(
        jax.vmap(lambda m, x: m.integrate(x, times), in_axes=(None, 0))
    )(model, x0)
    assert batched.shape == (3, 3, 12)
    np.testing.assert_allclose(batched[1], model.integrate(x0[1], times), rtol=1e-13)


class _Drop(eqx.Module):
    def __call__(self, x):
        return x[:-1]


class _Integer(eqx.Module):
    def __call__(self, x):
        return jnp.zeros(x.shape, jnp.int32)


def test_corrected_dynamics_errors(getkey):
    base = Lorenz96(n=12)
    with pytest.raises(
        ValueError, match=r"CorrectedDynamics\(correction=...\).*\(12,\).*\(11,\)"
    ):
        CorrectedDynamics(base, _Drop())
    with pytest.raises(ValueError, match=r"CorrectedDynamics\(correction=...\).*int32"):
        CorrectedDynamics(base, _Integer())
    mlp = eqx.nn.MLP(5, 5, 8, 1, key=getkey())  # built for 5 values, not 12
    with pytest.raises(ValueError, match=r"correction=...\) fails on a state"):
        CorrectedDynamics(base, mlp)
    # TypeErrors (our own, or jaxtyping's first where its import hook runs).
    with pytest.raises(TypeError, match=r"correction"):
        CorrectedDynamics(base, 2.0)
    step = DiscreteDynamics(lambda x, p: x, dt=0.1)
    with pytest.raises(TypeError, match=r"base"):
        CorrectedDynamics(step, LinearCorrection())
    with pytest.raises(TypeError, match=r"ExactFlow"):
        CorrectedDynamics(Heat1D(n=8), LinearCorrection())


def test_gradient_wrt_correction_matches_central_differences(getkey):
    base = Lorenz96(n=8, F=6.0)
    correction = LocalConvCorrection(key=getkey(), hidden=4, output_scale=0.5)
    model = CorrectedDynamics(base, correction)
    x0 = 8.0 + jax.random.normal(getkey(), (8,))
    times = 0.05 * jnp.array([0.0, 2.0, 6.0])
    loss = _functional(jax.random.normal(getkey(), (3, 8)))
    value = eqx.filter_jit(lambda m: loss(m.integrate(x0, times)))
    grad = eqx.filter_jit(eqx.filter_grad(value))(model)

    # One random direction in the space of all the network's weights and biases.
    flat, unravel = jax.flatten_util.ravel_pytree(eqx.filter(correction, eqx.is_array))
    direction = jax.random.normal(getkey(), flat.shape)
    grad_flat, _ = jax.flatten_util.ravel_pytree(
        eqx.filter(grad.correction, eqx.is_array)
    )

    def perturbed(h):
        params, static = eqx.partition(correction, eqx.is_array)
        bumped = eqx.combine(unravel(flat + h * direction), static)
        return value(eqx.tree_at(lambda m: m.correction, model, bumped))

    fd = _central_difference(perturbed, 1e-5)
    # As for the model's own parameters: O(h^2) truncation and eps/h rounding.
    assert abs(jnp.vdot(grad_flat, direction) - fd) <= 1e-6 * max(1.0, abs(fd))
    # The base stays trainable: its forcing gets a gradient too.
    assert float(jnp.abs(grad.base.F)) > 0.0


def test_linear_correction_gradient_and_optimum():
    base = Lorenz96(n=8, F=6.0)
    x0 = jnp.asarray(8.0 + np.sin(np.arange(8.0)))
    times = 0.05 * jnp.array([0.0, 2.0, 4.0])
    truth = Lorenz96(n=8, F=8.0).integrate(x0, times)

    def misfit(correction):
        traj = CorrectedDynamics(base, correction).integrate(x0, times)
        return jnp.sum((traj - truth) ** 2)

    value = eqx.filter_jit(misfit)
    grad = eqx.filter_jit(eqx.filter_grad(misfit))
    optimum = LinearCorrection(bias=2.0)
    assert float(value(optimum)) < 1e-24
    g = grad(optimum)
    assert abs(float(g.weight)) < 1e-10 and abs(float(g.bias)) < 1e-10
    start = LinearCorrection(weight=0.05, bias=1.0)
    g = grad(start)
    for name in ("weight", "bias"):

        def perturbed(h, name=name):
            field = getattr(start, name)
            return value(eqx.tree_at(lambda c: getattr(c, name), start, field + h))

        fd = _central_difference(perturbed, 1e-6)
        assert abs(getattr(g, name) - fd) <= 1e-6 * max(1.0, abs(fd)), name


# ------------------------------------------------------------------- corrections


def test_local_conv_correction_shape_equivariance_locality(getkey):
    correction = LocalConvCorrection(key=getkey())
    x = 8.0 + 3.0 * jax.random.normal(getkey(), (20,))
    out = correction(x)
    assert out.shape == (20,) and out.dtype == jnp.float64
    # Starts small: last layer scaled by 1e-2, tanh features bounded by 1, so
    # |out| <= 1e-2 * 16 / sqrt(16) = 0.04, against Lorenz-96 tendencies ~10.
    assert float(jnp.max(jnp.abs(out))) < 0.04
    assert float(jnp.max(jnp.abs(out))) > 0.0
    # Periodic: rolling the input rolls the output (the wrap-around included).
    for shift in (1, 3, -7):
        np.testing.assert_allclose(
            correction(jnp.roll(x, shift)), jnp.roll(out, shift), rtol=1e-13
        )
    # Local: a change at point 0 reaches points -2..2 (width 5), modulo 20.
    changed = correction(x.at[0].add(1.0)) != out
    np.testing.assert_array_equal(np.flatnonzero(changed), [0, 1, 2, 18, 19])
    low = correction(x.astype(jnp.float32))
    assert low.dtype == jnp.float32
    np.testing.assert_allclose(low, out, rtol=1e-4, atol=1e-7)
    # Leading axes: each state corrected alone.
    batch = jnp.stack([x, jnp.roll(x, 5), -x]).reshape(3, 1, 20)
    np.testing.assert_allclose(correction(batch)[1, 0], correction(batch[1, 0]))
    relu = LocalConvCorrection(key=getkey(), width=3, depth=1, activation=jax.nn.relu)
    assert relu(x).shape == (20,)


def test_correction_errors(getkey):
    for kwargs, field in [
        (dict(width=4), "width"),
        (dict(width=0), "width"),
        (dict(hidden=0), "hidden"),
        (dict(depth=0), "depth"),
    ]:
        with pytest.raises(ValueError, match=rf"LocalConvCorrection\({field}=...\)"):
            LocalConvCorrection(key=getkey(), **kwargs)
    with pytest.raises(ValueError, match=r"LinearCorrection\(bias=...\) must be a"):
        LinearCorrection(bias=jnp.ones(3))
    with pytest.raises(ValueError, match=r"LinearCorrection\(weight=...\) must be a"):
        LinearCorrection(weight=jnp.ones((2, 2)))


def test_two_scale_construction_errors():
    with pytest.raises(ValueError, match=r"TwoScaleLorenz96\(K=...\) must be >= 4"):
        TwoScaleLorenz96(K=3)
    with pytest.raises(ValueError, match=r"TwoScaleLorenz96\(J=...\) must be >= 1"):
        TwoScaleLorenz96(J=0)
    for name in ("F", "h", "b", "c"):
        with pytest.raises(
            ValueError, match=rf"TwoScaleLorenz96\({name}=...\) must be a scalar"
        ):
            TwoScaleLorenz96(**{name: jnp.ones(2)})
    with pytest.raises(ValueError, match=r"TwoScaleLorenz96\(b=...\) must be > 0"):
        TwoScaleLorenz96(b=0.0)
    with pytest.raises(
        ValueError, match=r"`x0` has shape \(40,\) but TwoScaleLorenz96"
    ):
        TwoScaleLorenz96(K=4, J=3).integrate(jnp.zeros(40), jnp.array([0.0, 0.1]))
