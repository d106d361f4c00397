"""No silent failure: convergence flags, ill-conditioning, warm starts (float64)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import assimilax as ax
from helpers import rel_error, spd_matrix


def _quadratic(cond, n=50):
    A = spd_matrix(n, cond, seed=4)
    rng = np.random.default_rng(5)
    theta = jnp.asarray(rng.normal(size=n))
    target = jnp.asarray(rng.normal(size=n))

    def fn(x, th):
        return 0.5 * x @ (A @ x) - th @ x

    def outer(x, th):
        return 0.5 * jnp.sum((x - target) ** 2)

    x_star = jnp.linalg.solve(A, theta)
    exact = jnp.linalg.solve(A, x_star - target)
    return fn, outer, theta, x_star, exact


@pytest.mark.parametrize("cond", [1e2, 1e4, 1e6])
def test_ill_conditioned_implicit_is_accurate_or_flagged(cond):
    fn, outer, theta, x_star, exact = _quadratic(cond)
    # Start the inner solve at the exact minimiser so that only the backward linear
    # solve is under test (GD itself would need ~cond steps).
    solver = ax.GradientDescent(learning_rate=1.0, max_steps=10, atol=1e-8)
    strategy = ax.Implicit(linear_solver=lx.CG(rtol=1e-10, atol=1e-10))
    _, grad, _, info = ax.value_and_hypergrad(
        outer, fn, x_star, theta, solver=solver, hypergradient=strategy, throw=False
    )
    error = rel_error(grad, exact)
    assert error <= 1e-4 or bool(info.linear.failed), (cond, error)
    assert bool(info.linear.failed) == (
        ax.RESULTS[info.result] == ax.RESULTS[ax.RESULTS.linear_solve_failed]
    )


def test_truncated_linear_solve_is_flagged_and_raises():
    fn, outer, theta, x_star, exact = _quadratic(1e6)
    solver = ax.GradientDescent(learning_rate=1.0, max_steps=10, atol=1e-8)
    strategy = ax.Implicit(linear_solver=lx.CG(rtol=1e-10, atol=1e-10, max_steps=5))
    _, grad, _, info = ax.value_and_hypergrad(
        outer, fn, x_star, theta, solver=solver, hypergradient=strategy, throw=False
    )
    assert bool(info.linear.failed)
    assert int(info.linear.num_steps) == 5
    assert float(info.linear.residual) > 1e-3  # the reported residual is real
    assert rel_error(grad, exact) > 1e-2  # ... and so is the error it warns of
    with pytest.raises(Exception, match="backward linear solve"):
        ax.value_and_hypergrad(
            outer, fn, x_star, theta, solver=solver, hypergradient=strategy
        )
    # Under jax.grad the same failure raises in the backward pass.
    with pytest.raises(Exception, match="backward linear solve"):
        jax.grad(
            lambda th: outer(
                ax.argmin(fn, x_star, th, solver=solver, hypergradient=strategy).value,
                th,
            )
        )(theta)


def test_unconverged_inner_solve_is_flagged_and_raises():
    fn, _, theta, _, _ = _quadratic(1e2)
    solver = ax.GradientDescent(learning_rate=1.0, max_steps=5, rtol=1e-10)
    sol = ax.argmin(fn, jnp.zeros(50), theta, solver=solver, throw=False)
    assert not bool(sol.stats.converged)
    assert int(sol.stats.num_steps) == 5
    assert float(sol.stats.grad_norm) > 1e-10 * float(sol.stats.initial_grad_norm)
    assert ax.RESULTS[sol.result] == ax.RESULTS[ax.RESULTS.inner_max_steps]
    with pytest.raises(Exception, match="reached `max_steps`"):
        ax.argmin(fn, jnp.zeros(50), theta, solver=solver)
    # A converged solve says so.
    long = ax.GradientDescent(learning_rate=1.0, max_steps=5000, rtol=1e-10)
    sol = ax.argmin(fn, jnp.zeros(50), theta, solver=long)
    assert bool(sol.stats.converged) and int(sol.stats.num_steps) < 5000


def test_nonfinite_inner_solve_is_flagged():
    fn, _, theta, _, _ = _quadratic(1e2)
    diverging = ax.GradientDescent(learning_rate=5.0, max_steps=3000, rtol=1e-10)
    sol = ax.argmin(fn, jnp.zeros(50), theta, solver=diverging, throw=False)
    assert ax.RESULTS[sol.result] == ax.RESULTS[ax.RESULTS.inner_nonfinite]
    assert not bool(sol.stats.converged)


def _warm_start_run(warm_start):
    """20 outer gradient-descent steps on 1D Tikhonov denoising of log(lambda)."""
    rng = np.random.default_rng(0)
    n = 200
    t = np.linspace(0, 1, n)
    truth = jnp.asarray(np.sin(6 * t) + (t > 0.5))
    noisy = truth + 0.3 * jnp.asarray(rng.normal(size=n))

    def fn(x, log_lam):
        return 0.5 * jnp.sum((x - noisy) ** 2) + 0.5 * jnp.exp(log_lam) * jnp.sum(
            jnp.diff(x) ** 2
        )

    def outer(x, log_lam):
        return 0.5 * jnp.sum((x - truth) ** 2)

    strategy = ax.Implicit(
        linear_solver=lx.CG(rtol=1e-8, atol=1e-8), warm_start=warm_start
    )
    log_lam, state, iterations, losses = jnp.asarray(0.0), None, 0, []
    for _ in range(20):
        # Step 1/L with L = 1 + 4 lambda, the largest Hessian eigenvalue.
        step = 1.0 / (1.0 + 4.0 * jnp.exp(log_lam))  # an array: no recompilation
        solver = ax.GradientDescent(learning_rate=step, max_steps=100_000, rtol=1e-12)
        loss, grad, state, info = ax.value_and_hypergrad(
            outer,
            fn,
            jnp.zeros(n),
            log_lam,
            solver=solver,
            hypergradient=strategy,
            state=state,
        )
        iterations += int(info.linear.num_steps)
        losses.append(float(loss))
        log_lam = log_lam - 0.5 * grad
    return iterations, losses, float(log_lam)


def test_warm_start_halves_backward_iterations():
    cold, cold_losses, cold_lam = _warm_start_run(False)
    warm, warm_losses, warm_lam = _warm_start_run(True)
    print(f"backward CG iterations over 20 outer steps: cold {cold}, warm {warm}")
    assert warm <= 0.5 * cold
    # Same outer trajectory: the warm start changes cost, not the answer.
    np.testing.assert_allclose(warm_losses, cold_losses, rtol=1e-6)
    assert abs(warm_lam - cold_lam) < 1e-6
    assert cold_losses[-1] < cold_losses[0]


def test_value_and_hypergrad_matches_grad_for_each_strategy():
    fn, outer, theta, _, exact = _quadratic(10.0, n=8)
    solver = ax.GradientDescent(learning_rate=1.0, max_steps=2000, rtol=1e-13)
    strategies = [
        ax.Implicit(linear_solver=lx.CG(rtol=1e-12, atol=1e-12)),
        ax.Unrolled(),
        ax.ForwardMode(),
        ax.Truncated(k=2000),
    ]
    for strategy in strategies:
        loss, grad, state, info = ax.value_and_hypergrad(
            outer, fn, jnp.zeros(8), theta, solver=solver, hypergradient=strategy
        )
        assert rel_error(grad, exact) <= 1e-6, strategy
        assert bool(info.inner.converged)
        assert isinstance(state, ax.OuterState)
        np.testing.assert_allclose(
            state.x, jnp.linalg.solve(jax.hessian(fn)(state.x, theta), theta), rtol=1e-9
        )
        assert eqx.is_array(loss) and loss.shape == ()


def test_warm_start_never_zeroes_iteration_hypergradients():
    # From a converged `state.x` the iteration takes no step: differentiating it
    # would give a zero hypergradient. `Unrolled` and `ForwardMode` are therefore
    # started from x0 (same steps, same gradient as cold); `Truncated` is
    # warm-started and still takes its k differentiated steps.
    fn, outer, theta, _, exact = _quadratic(10.0, n=8)
    solver = ax.GradientDescent(learning_rate=1.0, max_steps=2000, rtol=1e-13)
    for strategy in (ax.Unrolled(), ax.ForwardMode()):
        _, cold, state, cold_info = ax.value_and_hypergrad(
            outer, fn, jnp.zeros(8), theta, solver=solver, hypergradient=strategy
        )
        _, warm, _, warm_info = ax.value_and_hypergrad(
            outer,
            fn,
            jnp.zeros(8),
            theta,
            solver=solver,
            hypergradient=strategy,
            state=state,
        )
        assert int(warm_info.inner.num_steps) == int(cold_info.inner.num_steps) > 0
        np.testing.assert_allclose(warm, cold, rtol=1e-12)
        assert rel_error(warm, exact) <= 1e-6, strategy
    # Eigenvalues in [0.1, 1], step 1: the k = 200 bias is below 0.9^200 ~ 1e-9.
    truncated = ax.Truncated(k=200)
    _, _, state, _ = ax.value_and_hypergrad(
        outer, fn, jnp.zeros(8), theta, solver=solver, hypergradient=truncated
    )
    _, warm, _, info = ax.value_and_hypergrad(
        outer,
        fn,
        jnp.zeros(8),
        theta,
        solver=solver,
        hypergradient=truncated,
        state=state,
    )
    assert int(info.inner.num_steps) == 200  # warm-started: no head steps
    assert rel_error(warm, exact) <= 1e-6
