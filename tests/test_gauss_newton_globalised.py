"""`GaussNewton`'s globalisation (adaptive Levenberg-Marquardt damping) and its
failed-CG count, on problems where the full Gauss-Newton step overshoots.

- Cubic-H Lorenz-63 strong-constraint 4DVar (background 0.3 off the truth): the
  undamped step from the background diverges (fixed damping: cost 1.2e9 after 50
  steps; LBFGS reaches 9.479).
- Rosenbrock residuals ``(10 (x2 - x1²), 1 - x1)`` from (-1.2, 1): the first full
  step goes from cost 12.1 to 1171.
- A Rosenbrock-like problem with a non-zero residual and a closed-form minimiser
  and hypergradient, for every hypergradient strategy.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import assimilax as ax
from assimilax.costs import StrongConstraint4DVar
from assimilax.dynamics import Lorenz63
from assimilax.observations import (
    AbstractObservationOperator,
    Observations,
    ScalarNoise,
)
from assimilax.priors import DiagonalBackground
from helpers import rel_error


# --- Cubic-H Lorenz-63 4DVar ------------------------------------------------------


class Cube(AbstractObservationOperator):
    """``H x = x³`` elementwise: strongly nonlinear (``z ~ 25``: ``z³ ~ 1.6e4``)."""

    def __call__(self, x):
        return x**3


TRUTH0 = np.array([1.508870, -1.531271, 25.46091])
TIMES = 0.05 * np.arange(1, 11)  # 10 observation times, window [0, 0.5]


def lorenz63_problem(dtype=jnp.float64):
    truth = Lorenz63().integrate(jnp.asarray(TRUTH0), jnp.asarray(np.r_[0.0, TIMES]))
    noise = np.random.default_rng(0).normal(size=(len(TIMES), 3))
    values = np.asarray(truth)[1:] ** 3 + noise  # R = I
    observations = Observations(
        jnp.asarray(values, dtype),
        None,
        TIMES.astype(dtype),
        Cube(),
        ScalarNoise(jnp.asarray(1.0, dtype)),
    )
    background = DiagonalBackground(
        jnp.asarray(TRUTH0 + 0.3, dtype), jnp.asarray(1.0, dtype)
    )
    return StrongConstraint4DVar(Lorenz63(), observations, background, t0=0.0)


def cost(control, problem):
    return problem.cost(control)


def residuals(control, problem):
    return problem.residuals(control)


@pytest.fixture(scope="module")
def lorenz63():
    problem = lorenz63_problem()
    x0 = problem.first_guess()
    reference = ax.argmin(cost, x0, problem, solver=ax.LBFGS())
    return problem, x0, reference


def test_cubic_lorenz63_reaches_the_lbfgs_minimum(lorenz63):
    problem, x0, reference = lorenz63
    sol = ax.argmin(cost, x0, problem, solver=ax.GaussNewton(residuals=residuals))
    # Both solvers stop at |grad| <= 1e-8 |grad(x0)| ~ 0.76. The Hessian's smallest
    # eigenvalue there is ~790, so each iterate is within |grad| / 790 < 1e-3 of the
    # minimiser and its cost within |grad|^2 / (2 * 790) < 4e-4 of the minimum.
    assert abs(float(sol.stats.value) - float(reference.stats.value)) <= 4e-4
    assert float(reference.stats.value) == pytest.approx(9.4793, abs=1e-4)
    assert np.max(np.abs(sol.value - reference.value)) <= 2e-3
    extra = sol.state.extra
    # The full first step overshoots (the fixed-damping solver diverged from here).
    assert int(extra.rejected_steps) >= 1
    assert int(sol.stats.num_steps) <= 25  # measured: 12 (LBFGS: 28)
    assert int(extra.failed_linear_solves) == 0


def test_cubic_lorenz63_float32():
    problem = lorenz63_problem(jnp.float32)
    x0 = problem.first_guess()
    solver = ax.GaussNewton(residuals=residuals, rtol=1e-8)
    sol = ax.argmin(cost, x0, problem, solver=solver, throw=False)
    assert sol.value.dtype == jnp.float32
    assert sol.state.extra.damping.dtype == jnp.float32
    # Float32 cannot pass the gradient test here: H x ~ 1.6e4 leaves a round-off
    # of ~2e-6 |grad(x0)| in the gradient, above rtol = 1e-8 (and an rtol above
    # it would stop ~1 away, the Hessian's smallest eigenvalue being ~790). The
    # iteration stays at the minimiser meanwhile: trials whose cost round-off
    # says "increase" are rejected. Compared with the float64 minimiser, the
    # error is that of float32 round-off in the trajectory (measured 8e-5).
    assert sol.result == ax.RESULTS.inner_max_steps
    expected = np.array([1.546731, -1.547220, 25.464195])
    assert np.max(np.abs(np.asarray(sol.value, np.float64) - expected)) <= 2e-4
    # The float32 default (rtol = 2.4e-5 of |grad(x0)| ~ 7.6e7) converges, and
    # stops where |grad| <= ~1800: within |grad| / 790 ~ 2 of the minimiser by
    # the bound, 0.10 measured (5 steps).
    default = ax.argmin(cost, x0, problem, solver=ax.GaussNewton(residuals=residuals))
    assert bool(default.stats.converged)
    assert np.max(np.abs(np.asarray(default.value, np.float64) - expected)) <= 0.2


# (id, strategy, tolerance against the dense implicit reference). Measured:
# Implicit 8e-11; Unrolled and ForwardMode 5.5e-6 (their tangent converges with
# the iterates, at GN's linear rate, ~1e-3 per step here); Truncated(k=5) 1e-6
# (five steps from the converged point); central differences with eps = 1e-2
# 2e-6 (the perturbed solves stop at the gradient's round-off, |x - x*| ~ 2e-10,
# which the default eps ~ 6e-6 amplifies to an error of 8e-4).
LORENZ63_STRATEGIES = [
    ("implicit", ax.Implicit(linear_solver=lx.CG(rtol=1e-12, atol=1e-12)), 1e-8),
    ("unrolled", ax.Unrolled(), 1e-4),
    ("truncated", ax.Truncated(k=5), 1e-4),
    ("forward", ax.ForwardMode(), 1e-4),
    ("finite_difference", ax.FiniteDifference(eps=1e-2), 1e-4),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, strategy, tol", LORENZ63_STRATEGIES, ids=[s[0] for s in LORENZ63_STRATEGIES]
)
def test_cubic_lorenz63_hypergradients_agree(lorenz63, name, strategy, tol):
    problem, x0, _ = lorenz63
    # Parameter: the observation-error std. The inner solve goes to 1e-13: the
    # Hessian's condition number is 7.5e5 and the cubic operator's third
    # derivative is large, so the hypergradient moves by ~2e3 |x - x*| relative.
    solver = ax.GaussNewton(
        residuals=residuals,
        rtol=1e-13,
        linear_solver=lx.CG(rtol=1e-10, atol=1e-10, max_steps=100),
    )

    def solution(std):
        p = eqx.tree_at(lambda q: q.observations.noise.std, problem, std)
        return ax.argmin(cost, x0, p, solver=solver, hypergradient=strategy).value

    def loss(std):
        return 0.5 * jnp.sum((solution(std) - TRUTH0) ** 2)

    std = jnp.asarray(1.0)
    if name == "forward":
        grad = jnp.dot(jax.jacfwd(solution)(std), solution(std) - TRUTH0)
    else:
        grad = jax.grad(loss)(std)
    # Reference: the implicit function theorem with the dense 3x3 Hessian at x*.
    x = solution(std)
    hessian = jax.hessian(cost)(x, problem)
    mixed = jax.jacfwd(
        lambda s: jax.grad(cost)(
            x, eqx.tree_at(lambda q: q.observations.noise.std, problem, s)
        )
    )(std)
    dx = -np.linalg.solve(np.asarray(hessian), np.asarray(mixed))
    assert rel_error(grad, dx @ (np.asarray(x) - TRUTH0)) <= tol


# --- Rosenbrock residuals ---------------------------------------------------------


def rosenbrock_residuals(x, a):
    return jnp.stack([a * (x[1] - x[0] ** 2), 1 - x[0]])


def rosenbrock(x, a):
    return 0.5 * jnp.sum(rosenbrock_residuals(x, a) ** 2)


@pytest.mark.parametrize("dtype, atol", [(jnp.float64, 1e-10), (jnp.float32, 1e-3)])
def test_rosenbrock_reaches_the_minimum(dtype, atol):
    solver = ax.GaussNewton(
        residuals=rosenbrock_residuals, rtol=1e-12 if dtype == jnp.float64 else 1e-5
    )
    x0 = jnp.array([-1.2, 1.0], dtype)
    sol = ax.argmin(rosenbrock, x0, jnp.asarray(10.0, dtype), solver=solver)
    # Zero residual, invertible Jacobian: once the damping has fallen back to its
    # floor the steps are Newton's on r = 0 (quadratic convergence), so the
    # float64 iterate is at rounding level of (1, 1). Float32 stops at
    # |grad| <= 1e-5 |grad(x0)| ~ 1.2e-3, which bounds |x - 1| by
    # |grad| / lambda_min(J^T J) ~ 6e-3; the last step is Newton's, so it lands
    # much closer (measured 8e-5).
    assert sol.value.dtype == dtype
    np.testing.assert_allclose(np.asarray(sol.value), np.ones(2), atol=atol)
    # Measured (float64): 22 steps, 4 of them rejected trials; the undamped
    # iteration (Newton's) takes 6 but passes through a cost of 1171.
    assert int(sol.stats.num_steps) <= 30
    assert int(sol.state.extra.rejected_steps) >= 1


def _trajectory(solver, fn, x, args, num_steps):
    """Values of fn at each iterate, and whether the test held before the step."""
    step = jax.jit(lambda x, state: solver.step(fn, x, args, state))
    state = solver.init(fn, x, args)
    values, converged = [float(state.value)], []
    for _ in range(num_steps):
        converged.append(bool(solver.converged(state)))
        x, state = step(x, state)
        assert float(state.value) == pytest.approx(float(fn(x, args)), rel=1e-12)
        values.append(float(state.value))
    return np.array(values), np.array(converged), state


@pytest.mark.parametrize("start", [(-1.2, 1.0), (-2.0, 2.0), (-1.5, -1.0)])
def test_steps_never_increase_the_cost(start):
    solver = ax.GaussNewton(residuals=rosenbrock_residuals, rtol=1e-12)
    args = jnp.asarray(10.0)
    values, converged, state = _trajectory(
        solver, rosenbrock, jnp.array(start), args, 40
    )
    # Non-increasing on every step taken from a non-converged iterate (the only
    # ones an `argmin` takes, except `Truncated`'s last k): a trial that would
    # raise the cost is rejected and the iterate stays. The solver tolerates an
    # increase of 16 eps |cost| (the cost's round-off) once the predicted
    # reduction is below it; here none happens: the comparison is exact.
    taken = ~converged
    assert np.all(values[1:][taken] <= values[:-1][taken])
    assert converged[-1]  # converged within 40 steps, rejections included
    assert int(state.extra.rejected_steps) >= 1


def test_rejected_step_keeps_the_iterate_and_raises_the_damping():
    solver = ax.GaussNewton(residuals=rosenbrock_residuals)
    x0, args = jnp.array([-1.2, 1.0]), jnp.asarray(10.0)
    state = solver.init(rosenbrock, x0, args)
    x, new = solver.step(rosenbrock, x0, args, state)
    # The undamped step goes to (1, -3.84), cost 1171 > 12.1: rejected.
    np.testing.assert_array_equal(x, x0)
    assert float(new.value) == float(state.value)
    assert int(new.extra.rejected_steps) == 1
    # Damping: from 1e-8 up to at least the curvature along the rejected step.
    assert float(new.extra.damping) > 1e-2
    assert float(new.extra.growth) == 4.0


# --- Hypergradients on a non-zero-residual problem with a closed form -------------
#
# r = (a u, b - x1, c u + d) with u = x2 - x1²: the minimiser is x1 = b,
# u* = -c d / (a² + c²), so x* = (b, b² + u*) and
# dx*/db = (1, 2b), dx*/dd = (0, -c / (a² + c²)). At x* the cost is
# 0.5 d² a² / (a² + c²) > 0.

A, C = 10.0, 3.0
TARGET = jnp.array([0.5, 2.0])
THETA = jnp.array([1.2, 4.0])  # (b, d)


def shifted_residuals(x, theta):
    b, d = theta[0], theta[1]
    u = x[1] - x[0] ** 2
    return jnp.stack([A * u, b - x[0], C * u + d])


def shifted(x, theta):
    return 0.5 * jnp.sum(shifted_residuals(x, theta) ** 2)


def shifted_minimiser(theta):
    b, d = np.asarray(theta)
    return np.array([b, b**2 - C * d / (A**2 + C**2)])


def shifted_hypergradient(theta):
    b, _ = np.asarray(theta)
    x = shifted_minimiser(theta)
    jac = np.array([[1.0, 0.0], [2 * b, -C / (A**2 + C**2)]])  # dx*/dtheta
    return jac.T @ (x - np.asarray(TARGET))


SHIFTED_SOLVER = ax.GaussNewton(
    residuals=shifted_residuals,
    rtol=1e-13,
    max_steps=40,
    linear_solver=lx.CG(rtol=1e-12, atol=1e-12, max_steps=20),
)
X0 = jnp.array([-1.2, 1.0])


def test_shifted_problem_minimiser():
    sol = ax.argmin(shifted, X0, THETA, solver=SHIFTED_SOLVER)
    np.testing.assert_allclose(sol.value, shifted_minimiser(THETA), atol=1e-12)
    assert int(sol.state.extra.rejected_steps) >= 1  # the globalisation acted


def _outer(x):
    return 0.5 * jnp.sum((x - TARGET) ** 2)


# Tolerances: inner solves to |grad| <= 1e-13 |grad(x0)|; Implicit's backward CG to
# 1e-12; Unrolled/ForwardMode differentiate the iteration, whose tangent converges
# with the iterate; Truncated(k=10) runs 10 steps from the converged point (each
# contracts the tangent error by GN's local rate, here ~0 as the residual term in
# the Hessian vanishes at x*); central differences with eps = 1e-4 err by O(eps²).
STRATEGIES = [
    ("implicit", ax.Implicit(linear_solver=lx.CG(rtol=1e-12, atol=1e-12)), 1e-8),
    ("unrolled", ax.Unrolled(), 1e-8),
    ("truncated", ax.Truncated(k=10), 1e-8),
    ("finite_difference", ax.FiniteDifference(eps=1e-4), 1e-6),
]


@pytest.mark.parametrize(
    "strategy, tol", [s[1:] for s in STRATEGIES], ids=[s[0] for s in STRATEGIES]
)
def test_hypergradients_agree_at_the_minimum(strategy, tol):
    def loss(theta):
        sol = ax.argmin(
            shifted, X0, theta, solver=SHIFTED_SOLVER, hypergradient=strategy
        )
        return _outer(sol.value)

    grad = jax.grad(loss)(THETA)
    assert rel_error(grad, shifted_hypergradient(THETA)) <= tol


def test_forward_mode_jacfwd_agrees_at_the_minimum():
    def solution(theta):
        return ax.argmin(
            shifted, X0, theta, solver=SHIFTED_SOLVER, hypergradient=ax.ForwardMode()
        ).value

    jac = np.asarray(jax.jacfwd(solution)(THETA))
    grad = jac.T @ (shifted_minimiser(THETA) - np.asarray(TARGET))
    # As Unrolled: the tangent of the converged iteration.
    assert rel_error(grad, shifted_hypergradient(THETA)) <= 1e-8


# --- Failed linear solves ---------------------------------------------------------


def _ill_conditioned_least_squares():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    matrix = jnp.asarray((q * np.logspace(0, 3, 8)) @ q.T)  # cond(J^T J) = 1e6
    data = jnp.asarray(rng.normal(size=8))

    def residuals(x, _):
        return matrix @ x - data

    def fn(x, _):
        return 0.5 * jnp.sum(residuals(x, None) ** 2)

    return fn, residuals


@pytest.mark.parametrize("cg_steps, starved", [(1, True), (100, False)])
def test_failed_linear_solves_are_counted(cg_steps, starved):
    fn, residuals = _ill_conditioned_least_squares()
    solver = ax.GaussNewton(
        residuals=residuals,
        max_steps=10,
        linear_solver=lx.CG(rtol=1e-8, atol=1e-8, max_steps=cg_steps),
    )
    sol = ax.argmin(fn, jnp.zeros(8), None, solver=solver, throw=False)
    extra = sol.state.extra
    if starved:
        # One CG iteration cannot solve an 8x8 system with 8 distinct eigenvalues:
        # every step's solve stops at max_steps (still a descent direction).
        assert int(extra.failed_linear_solves) == int(sol.stats.num_steps) == 10
        assert int(extra.linear_steps) == 10
        assert sol.result == ax.RESULTS.inner_max_steps
    else:
        # Converges within 8 CG iterations (exact arithmetic: one per eigenvalue).
        assert int(extra.failed_linear_solves) == 0
        assert sol.result == ax.RESULTS.successful
