"""Bad input raises a clear error that names the problem."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import pytest

import assimilax as ax
from assimilax.bilevel._argmin import check_strategy_pair
from helpers import spd_matrix


def quad(x, a):
    return 0.5 * jnp.sum((x - a) ** 2)


GD = ax.GradientDescent(learning_rate=0.5, max_steps=100)


def test_non_scalar_objective():
    with pytest.raises(ValueError, match="must return a scalar, got \\(3,\\)"):
        ax.argmin(lambda x, a: (x - a) ** 2, jnp.zeros(3), jnp.ones(3), solver=GD)


def test_x0_shape_mismatch():
    A = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="failed when traced with x0 of shape"):
        ax.argmin(lambda x, a: jnp.sum((A @ x) ** 2), jnp.zeros(5), None, solver=GD)


def test_integer_x0():
    with pytest.raises(TypeError, match="must be floating point"):
        ax.argmin(quad, jnp.zeros(3, dtype=jnp.int32), jnp.ones(3), solver=GD)


def test_empty_x0():
    with pytest.raises(ValueError, match="`x0` is empty"):
        ax.argmin(lambda x, a: jnp.asarray(0.0), {}, None, solver=GD)


def test_nan_x0():
    with pytest.raises(Exception, match="`x0` contains NaN or inf"):
        ax.argmin(quad, jnp.array([0.0, jnp.nan, 1.0]), jnp.ones(3), solver=GD)


# Under pytest the jaxtyping/beartype hook checks annotations before our own
# check runs; users (no hook) get the message from `check_strategy_pair`, which
# argmin and value_and_hypergrad call first: it is tested directly.
def test_strategy_given_as_string():
    with pytest.raises(TypeError, match="parameter 'hypergradient'"):
        ax.argmin(quad, jnp.zeros(3), jnp.ones(3), solver=GD, hypergradient="implicit")
    with pytest.raises(TypeError, match="`hypergradient` must be a strategy object"):
        check_strategy_pair(GD, "implicit")


def test_solver_given_as_string():
    with pytest.raises(TypeError, match="parameter 'solver'"):
        ax.argmin(quad, jnp.zeros(3), jnp.ones(3), solver="lbfgs")
    with pytest.raises(TypeError, match="`solver` must be an inner solver object"):
        check_strategy_pair("lbfgs", ax.Implicit())


def test_truncated_k_zero():
    with pytest.raises(ValueError, match="needs k >= 1, got k=0"):
        ax.Truncated(k=0)


def test_truncated_k_larger_than_max_steps():
    with pytest.raises(ValueError, match="Truncated\\(k=200\\) differentiates more"):
        ax.argmin(
            quad,
            jnp.zeros(3),
            jnp.ones(3),
            solver=GD,
            hypergradient=ax.Truncated(k=200),
        )


def test_bad_solver_fields():
    with pytest.raises(ValueError, match="learning_rate=...\\) must be positive"):
        ax.GradientDescent(learning_rate=-1.0)
    with pytest.raises(ValueError, match="max_steps=...\\) must be >= 1"):
        ax.GradientDescent(max_steps=0)


def test_bad_strategy_fields():
    with pytest.raises(
        ValueError, match="checkpoint_every=...\\) must be None or >= 1"
    ):
        ax.Unrolled(checkpoint_every=0)
    with pytest.raises(ValueError, match="damping=...\\) must be >= 0"):
        ax.Implicit(damping=-1.0)
    with pytest.raises(ValueError, match="warm_start_memory=...\\) must be >= 1"):
        ax.Implicit(warm_start_memory=0)
    with pytest.raises(ValueError, match="eps=...\\) must be > 0"):
        ax.FiniteDifference(eps=0.0)
    with pytest.raises(ValueError, match="eps=...\\) must be > 0"):
        ax.bilevel.FiniteDifferenceHVP(eps=-1.0)
    with pytest.raises(ValueError, match="num_terms=...\\) must be >= 1"):
        ax.bilevel.Neumann(num_terms=0)
    with pytest.raises(ValueError, match="step_size=...\\) must be > 0"):
        ax.bilevel.Neumann(step_size=0.0)
    # A linear solver that is not a lineax solver (the runtime type checker may
    # catch it first; either way the message names the field).
    with pytest.raises(TypeError, match="linear_solver"):
        ax.Implicit(linear_solver="cg")


def test_lbfgs_preconditioner_needs_lbfgs():
    strategy = ax.Implicit(preconditioner=ax.bilevel.LBFGSPreconditioner())
    with pytest.raises(ValueError, match="needs the LBFGS inner solver"):
        ax.value_and_hypergrad(
            lambda x, a: jnp.sum(x),
            quad,
            jnp.zeros(3),
            jnp.ones(3),
            solver=GD,
            hypergradient=strategy,
        )


def test_implicit_with_cg_refuses_a_non_symmetric_system():
    solver = ax.ProximalGradient(prox=ax.bilevel.L1(weight=0.1), step_size=0.5)
    strategy = ax.Implicit(linear_solver=lx.CG(rtol=1e-6, atol=1e-6))
    # The forward solve runs (Implicit() is the default strategy) ...
    sol = ax.argmin(
        quad, jnp.zeros(3), jnp.ones(3), solver=solver, hypergradient=strategy
    )
    assert sol.value.shape == (3,)

    # ... and differentiating it names the problem and a pair that works.
    def loss(a):
        return jnp.sum(
            ax.argmin(
                quad, jnp.zeros(3), a, solver=solver, hypergradient=strategy
            ).value
        )

    with pytest.raises(ValueError, match="Use Implicit\\(linear_solver=lx.GMRES"):
        jax.grad(loss)(jnp.ones(3))


def test_failed_backward_solve_under_grad_is_one_clean_error(capfd, caplog):
    # Issue 16: under an eager `jax.grad` a failed backward linear solve used to
    # raise a `JaxRuntimeError` wrapping a callback traceback, log "jax.pure_callback
    # failed" with another one, and carry Equinox's "not using filter_jit" notice.
    a = spd_matrix(50, 1e6, seed=4)  # ill-conditioned: one CG step cannot solve it
    theta = jnp.linspace(-1.0, 1.0, 50)
    x_star = jnp.linalg.solve(a, theta)  # the inner solve starts converged

    def fn(x, th):
        return 0.5 * x @ (a @ x) - th @ x

    starved = ax.Implicit(linear_solver=lx.CG(rtol=1e-12, atol=1e-12, max_steps=1))
    solver = ax.GradientDescent(learning_rate=1.0, max_steps=10, atol=1e-8)

    def outer(th):
        sol = ax.argmin(fn, x_star, th, solver=solver, hypergradient=starved)
        return jnp.sum(sol.value**2)

    capfd.readouterr()
    message = (
        "The backward linear solve of the implicit hypergradient did not converge.*"
        "raise the linear solver's `max_steps`"
    )
    with pytest.raises(eqx.EquinoxRuntimeError, match=message) as raised:
        jax.grad(outer)(theta)
    captured = capfd.readouterr()
    printed = captured.out + captured.err + caplog.text
    for noise in ("pure_callback failed", "do not appear to be using"):
        assert noise not in str(raised.value) and noise not in printed, noise
    assert "Traceback" not in printed and "CpuCallback" not in str(raised.value)
    # The same problem without the error: throw=False leaves the gradient to judge.
    sol_grad = jax.grad(
        lambda th: jnp.sum(
            ax.argmin(
                fn, x_star, th, solver=solver, hypergradient=starved, throw=False
            ).value
            ** 2
        )
    )(theta)
    assert sol_grad.shape == (50,)
