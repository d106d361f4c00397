"""`GradientFlow` and `GradientFlowAdjoint` on a quadratic with a closed-form flow.

For ``U(x) = 0.5 x'Ax - theta'x`` the flow is
``x(t) = A^{-1}theta + expm(-At)(x0 - A^{-1}theta)``, so
``dx(t)/dtheta = A^{-1}(I - expm(-At))`` and ``dx(t)/dt = -(A x(t) - theta)``.

Tolerances: A has eigenvalues in [1, 3]. Tsit5 at dt = 0.05 has a global error of
about 1e-10 here, and the adaptive solves use PID tolerances of 1e-10 (1e-8 by
default), so 1e-6 leaves two orders of magnitude of headroom while still catching
any wrong term (which would be O(1)). At t1 = 25 the flow is within
exp(-25) ~ 1e-11 of the minimiser, so steady-state hypergradients match the IFT one.
"""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import assimilax as ax
from assimilax.bilevel import GradientFlow, GradientFlowAdjoint
from helpers import rel_error, spd_matrix


A = 3.0 * spd_matrix(3, cond=3.0, seed=1)
X0 = jnp.array([1.0, -2.0, 0.5])
THETA = jnp.array([0.3, -0.7, 1.1])
T1 = 1.5
TIGHT = dfx.PIDController(rtol=1e-10, atol=1e-10)


def quadratic(x, theta):
    return 0.5 * x @ (A @ x) - theta @ x


def quadratic_with_time(x, args):
    return quadratic(x, args[0])


def flow_time(args):
    return args[1]


def closed_form(theta, t):
    a = np.asarray(A)
    x_star = np.linalg.solve(a, np.asarray(theta))
    return x_star + scipy.linalg.expm(-a * t) @ (np.asarray(X0) - x_star)


def closed_form_jacobian(t):
    a = np.asarray(A)
    return np.linalg.solve(a, np.eye(3) - scipy.linalg.expm(-a * t))


def solve(theta, solver, hypergradient):
    return ax.argmin(
        quadratic, X0, theta, solver=solver, hypergradient=hypergradient
    ).value


# A scalar outer loss 0.5 |x(theta) - Y|^2: its gradient J^T (x - Y) checks the
# whole Jacobian J in a generic direction. `jax.grad` compiles much faster than
# `jax.jacrev` (which vmaps the backward solve), which keeps this file fast.
Y = jnp.array([0.2, 0.9, -0.4])


def outer_loss(theta, solver, hypergradient):
    x = solve(theta, solver, hypergradient)
    return 0.5 * jnp.sum((x - Y) ** 2)


def closed_form_grad(theta, t):
    return closed_form_jacobian(t).T @ (closed_form(theta, t) - np.asarray(Y))


FLOW = GradientFlow(t1=T1, dt=0.05)
STRATEGIES = {
    "checkpoint": GradientFlowAdjoint(
        adjoint=dfx.RecursiveCheckpointAdjoint(), stepsize_controller=TIGHT
    ),
    "unrolled": ax.Unrolled(),
    # k = max_steps differentiates every step: exercises `GradientFlow.refresh`.
    "truncated-all": ax.Truncated(k=FLOW.max_steps),
}
# Compiling a backsolve costs ~5-10 s per configuration, so each configuration of
# `GradientFlowAdjoint` below is compiled once: the default (PID, 32 checkpoints)
# in `test_jit_and_vmap`, fixed steps in the steady-state test, and
# `RecursiveCheckpointAdjoint` in the finite-time test.


def test_default_step_count():
    # 1.5 / 0.05 = 30.000000000000004 in floating point: still 30 steps.
    assert FLOW.max_steps == 30
    assert GradientFlow(t1=0.3, dt=0.1).max_steps == 3
    assert GradientFlow(t1=5, dt=1).max_steps == 5


def test_flow_matches_closed_form():
    # (The adjoint's forward solve is checked in `test_jit_and_vmap`.)
    sol = ax.argmin(quadratic, X0, THETA, solver=FLOW, hypergradient=ax.Unrolled())
    assert np.max(np.abs(sol.value - closed_form(THETA, T1))) < 1e-6
    assert bool(sol.stats.converged)  # the final time counts as convergence
    assert int(sol.stats.num_steps) == 30
    assert float(sol.state.extra.t) == T1


def test_euler_flow_is_gradient_descent():
    # Explicit Euler with step dt is gradient descent with learning rate dt.
    flow = GradientFlow(t1=2.0, dt=0.1, diffrax_solver=dfx.Euler())
    descent = ax.GradientDescent(learning_rate=0.1, max_steps=20, rtol=0.0)
    x_flow = solve(THETA, flow, ax.Unrolled())
    x_descent = ax.argmin(
        quadratic, X0, THETA, solver=descent, hypergradient=ax.Unrolled(), throw=False
    ).value
    np.testing.assert_allclose(x_flow, x_descent, rtol=1e-12)


def test_implicit_euler_step_matches_its_closed_form():
    # diffrax's implicit solvers leave their root finder's tolerances to a step-size
    # controller; `GradientFlow.step` has none and must supply them. Implicit Euler
    # at fixed dt: x_{k+1} = M (x_k + dt theta), M = (I + dt A)^{-1}, so
    # x_N = M^N x0 + (I - M^N) A^{-1} theta and dx_N/dtheta = (I - M^N) A^{-1}.
    # On a quadratic the (chord) root find is exact: only round-off remains.
    flow = GradientFlow(t1=2.0, dt=0.1, diffrax_solver=dfx.ImplicitEuler())
    a, dt = np.asarray(A), 0.1
    m_n = np.linalg.matrix_power(np.linalg.inv(np.eye(3) + dt * a), 20)
    jacobian = (np.eye(3) - m_n) @ np.linalg.inv(a)
    expected = m_n @ np.asarray(X0) + jacobian @ np.asarray(THETA)
    np.testing.assert_allclose(solve(THETA, flow, ax.Implicit()), expected, atol=1e-12)
    grad = jax.grad(outer_loss)(THETA, flow, ax.Unrolled())
    assert rel_error(grad, jacobian.T @ (expected - np.asarray(Y))) <= 1e-12


def test_kvaerno_step_matches_closed_form():
    # Kvaerno5 at dt = 0.05: 5th order, and its root finder runs to sqrt(eps) ~
    # 1.5e-8 relative, well inside the file's 1e-6.
    flow = GradientFlow(t1=T1, dt=0.05, diffrax_solver=dfx.Kvaerno5())
    x = solve(THETA, flow, ax.Implicit())
    assert np.max(np.abs(x - closed_form(THETA, T1))) < 1e-6


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_hypergradient_at_finite_time(name):
    grad = jax.grad(outer_loss)(THETA, FLOW, STRATEGIES[name])
    assert rel_error(grad, closed_form_grad(THETA, T1)) <= 1e-6


def test_forward_mode_at_finite_time():
    jac = jax.jacfwd(solve)(THETA, FLOW, ax.ForwardMode())
    assert rel_error(jac, closed_form_jacobian(T1)) <= 1e-6


@pytest.mark.parametrize(
    "hypergradient",
    [
        # Fixed steps (dt = 0.05, 500 of them) forwards and backwards; one
        # checkpoint is enough for a quadratic (see `GradientFlowAdjoint`).
        GradientFlowAdjoint(stepsize_controller=dfx.ConstantStepSize(), checkpoints=1),
        ax.Implicit(),
        ax.Unrolled(),
    ],
    ids=["adjoint-fixed-dt", "implicit", "unrolled"],
)
def test_steady_state_matches_implicit_function_theorem(hypergradient):
    flow = GradientFlow(t1=25.0, dt=0.05, rtol=1e-12)
    grad = jax.grad(outer_loss)(THETA, flow, hypergradient)
    # IFT: dx*/dtheta = A^{-1}, at x* = A^{-1} theta.
    a_inv = np.linalg.inv(np.asarray(A))
    exact = a_inv.T @ (a_inv @ np.asarray(THETA) - np.asarray(Y))
    assert rel_error(grad, exact) <= 1e-6


# t1 is read from args; max_steps covers t1 <= 3 at dt = 0.05.
TIMED_FLOW = GradientFlow(t1=flow_time, dt=0.05, max_steps=60)


def timed_loss(theta, t1, hypergradient):
    x = ax.argmin(
        quadratic_with_time,
        X0,
        (theta, t1),
        solver=TIMED_FLOW,
        hypergradient=hypergradient,
    ).value
    return 0.5 * jnp.sum((x - Y) ** 2)


def closed_form_time_derivative(theta, t1):
    x_t = closed_form(theta, t1)
    dx_dt = -(np.asarray(A) @ x_t - np.asarray(theta))
    return float((x_t - np.asarray(Y)) @ dx_dt)


def test_derivative_with_respect_to_flow_time():
    # Unrolled here; `GradientFlowAdjoint` in `test_jit_and_vmap`.
    grad = jax.grad(timed_loss, argnums=1)(THETA, jnp.asarray(T1), ax.Unrolled())
    assert abs(float(grad) - closed_form_time_derivative(THETA, T1)) < 1e-6


def test_jit_and_vmap():
    # The default GradientFlowAdjoint on 4 (theta, t1) pairs, under jit and vmap:
    # the value x(t1), the gradient w.r.t. theta and the derivative w.r.t. t1.
    thetas = jnp.stack([THETA, 2 * THETA, -THETA, THETA + 1.0])
    times = jnp.array([T1, 0.5, 1.0, 2.5])
    loss = jax.value_and_grad(timed_loss, argnums=(0, 1))
    batched = jax.jit(jax.vmap(lambda th, t: loss(th, t, GradientFlowAdjoint())))
    values, (grads, time_grads) = batched(thetas, times)
    for theta, t1, value, grad, time_grad in zip(
        thetas, times, values, grads, time_grads
    ):
        x_t = closed_form(theta, float(t1))
        assert abs(float(value) - 0.5 * np.sum((x_t - np.asarray(Y)) ** 2)) < 1e-6
        assert rel_error(grad, closed_form_grad(theta, float(t1))) <= 1e-6
        expected = closed_form_time_derivative(theta, float(t1))
        assert abs(float(time_grad) - expected) < 1e-6


B = jnp.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])


def nonlinear(x, theta):
    return jnp.sum(jnp.log(jnp.cosh(B @ x - theta))) + 0.05 * jnp.sum(x**4)


def test_backsolve_on_nonlinear_flow():
    # On a non-quadratic the backsolve needs x(t), reconstructed backwards from the
    # checkpoints; Unrolled through Tsit5 at dt = 0.02 (error ~1e-10) is the
    # reference. Measured: 1e-9 with the default 32 checkpoints, 4e-2 with one.
    flow = GradientFlow(t1=2.0, dt=0.02)

    def loss(theta, hypergradient):
        x = ax.argmin(nonlinear, X0, theta, solver=flow, hypergradient=hypergradient)
        return 0.5 * jnp.sum((x.value - Y) ** 2)

    expected = jax.grad(loss)(THETA, ax.Unrolled())
    assert rel_error(jax.grad(loss)(THETA, GradientFlowAdjoint()), expected) <= 1e-6


def test_max_steps_reported_without_throw():
    strategy = GradientFlowAdjoint(max_steps=5, checkpoints=1)
    sol = ax.argmin(
        quadratic, X0, THETA, solver=FLOW, hypergradient=strategy, throw=False
    )
    assert sol.result == ax.RESULTS.inner_max_steps
    assert int(sol.stats.num_steps) == 5
    assert 0 < float(sol.state.extra.t) < T1
    assert np.all(np.isfinite(sol.value))


def test_adjoint_refuses_other_solvers():
    with pytest.raises(ValueError, match="works only with GradientFlow; got "):
        ax.argmin(
            quadratic,
            X0,
            THETA,
            solver=ax.GradientDescent(),
            hypergradient=GradientFlowAdjoint(),
        )


def test_adjoint_refuses_adaptive_steps_without_error_estimate():
    flow = GradientFlow(t1=1.0, diffrax_solver=dfx.Euler())
    with pytest.raises(ValueError, match="needs an error estimate"):
        solve(THETA, flow, GradientFlowAdjoint())


def test_adjoint_refuses_too_few_fixed_steps():
    strategy = GradientFlowAdjoint(
        stepsize_controller=dfx.ConstantStepSize(), max_steps=10
    )
    with pytest.raises(ValueError, match=r"use GradientFlowAdjoint\(max_steps=30\)"):
        solve(THETA, FLOW, strategy)


def test_callable_time_must_be_positive():
    flow = GradientFlow(t1=flow_time, dt=0.05, max_steps=10)
    with pytest.raises(Exception, match="non-positive or non-finite time"):
        ax.argmin(quadratic_with_time, X0, (THETA, jnp.asarray(-1.0)), solver=flow)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"dt": 0.0}, ValueError, r"GradientFlow\(dt=...\) must be positive"),
        ({"t1": -1.0}, ValueError, r"GradientFlow\(t1=...\) must be positive"),
        ({"t1": float("inf")}, ValueError, "must be positive and finite"),
        ({"max_steps": 0}, ValueError, r"GradientFlow\(max_steps=...\) must be >= 1"),
        ({"rtol": -1.0}, ValueError, r"GradientFlow\(rtol=...\) must be >= 0"),
        ({"atol": -1.0}, ValueError, r"GradientFlow\(atol=...\) must be >= 0"),
        ({"t1": flow_time}, ValueError, "must be given when t1 is a callable"),
        # Under the test suite's runtime type checks the annotation fires first; both
        # messages name the field (the direct check is tested below).
        ({"diffrax_solver": "tsit5"}, TypeError, "diffrax_solver"),
    ],
)
def test_gradient_flow_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        GradientFlow(**kwargs)


def test_traced_time_needs_max_steps():
    with pytest.raises(ValueError, match="when t1 or dt is a traced array"):
        jax.jit(lambda t1: GradientFlow(t1=t1).max_steps)(jnp.asarray(1.0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"adjoint": "backsolve"}, TypeError, "adjoint"),
        ({"stepsize_controller": None}, TypeError, "stepsize_controller"),
        ({"max_steps": 0}, ValueError, r"\(max_steps=...\) must be >= 1"),
        ({"checkpoints": 0}, ValueError, r"\(checkpoints=...\) must be >= 1"),
    ],
)
def test_gradient_flow_adjoint_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        GradientFlowAdjoint(**kwargs)


@pytest.mark.parametrize(
    "module, field, match",
    [
        (GradientFlow(), "diffrax_solver", "must be a diffrax solver"),
        (GradientFlowAdjoint(), "adjoint", "must be a diffrax adjoint"),
        (GradientFlowAdjoint(), "stepsize_controller", "must be a diffrax controller"),
    ],
)
def test_type_messages(module, field, match):
    # Bypass the annotation check (active in this test suite, not for users) to
    # reach the `__check_init__` message itself.
    object.__setattr__(module, field, "wrong")
    with pytest.raises(TypeError, match=match):
        module.__check_init__()
