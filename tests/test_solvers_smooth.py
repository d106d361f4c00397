"""Smooth inner solvers: `OptaxSolver`, `LBFGS`, `GaussNewton`.

Every check compares against a closed form (numpy, float64) or a known minimiser.
The ridge problem ``argmin_w 0.5|Aw - b|^2 + 0.5 sum(lam_i w_i^2)`` has
``w* = (A^T A + diag(lam))^{-1} A^T b`` and, for the outer loss
``L = 0.5|C w* - d|^2``, ``dL/dlam = -(H^{-1} C^T (C w* - d)) * w*``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import pytest

import assimilax as ax
from assimilax.bilevel import GaussNewton, LBFGS, OptaxSolver
from helpers import rel_error, spd_matrix


_rng = np.random.default_rng(0)
_A = _rng.normal(size=(12, 4))
_B = _rng.normal(size=12)
_C = _rng.normal(size=(3, 4))
_D = _rng.normal(size=3)
LAM = jnp.asarray(_rng.uniform(0.5, 2.0, size=4))
# Lipschitz constant of the gradient at the largest lam of the batches below.
_L = float(np.linalg.eigvalsh(_A.T @ _A).max()) + 4.0
A, B, C, D = map(jnp.asarray, (_A, _B, _C, _D))
X0 = jnp.zeros(4)


def ridge(w, lam):
    return 0.5 * jnp.sum((A @ w - B) ** 2) + 0.5 * jnp.sum(lam * w**2)


def ridge_residuals(w, lam):
    return (A @ w - B, jnp.sqrt(lam) * w)


def outer(w):
    return 0.5 * jnp.sum((C @ w - D) ** 2)


def ridge_solution(lam):
    hessian = _A.T @ _A + np.diag(np.asarray(lam))
    return np.linalg.solve(hessian, _A.T @ _B), hessian


def ridge_hypergradient(lam):
    w, hessian = ridge_solution(lam)
    v = np.linalg.solve(hessian, _C.T @ (_C @ w - _D))
    return -v * w


def make_solver(name, **kwargs):
    if name == "optax":
        # Plain SGD with step 1/L contracts by (1 - mu/L) per step; the iteration
        # is smooth, so every strategy applies.
        return OptaxSolver(
            optimiser=optax.sgd(1 / _L), max_steps=800, rtol=1e-13, **kwargs
        )
    if name == "lbfgs":
        return LBFGS(rtol=1e-12, **kwargs)
    # The ridge residuals are linear: Gauss-Newton converges in one or two steps.
    return GaussNewton(residuals=ridge_residuals, max_steps=5, rtol=1e-12, **kwargs)


def hypergradient_by(solver, strategy):
    def loss(lam):
        sol = ax.argmin(ridge, X0, lam, solver=solver, hypergradient=strategy)
        return outer(sol.value)

    return jax.grad(loss)(LAM)


# --- Convergence to known minimisers ---------------------------------------------


def test_optax_adam_quadratic():
    target = jnp.arange(3.0)
    solver = OptaxSolver(optimiser=optax.adam(0.1), atol=1e-6)
    sol = ax.argmin(
        lambda x, t: 0.5 * jnp.sum((x - t) ** 2), jnp.zeros(3), target, solver=solver
    )
    # Unit Hessian: |x - x*| = |grad| <= atol = 1e-6 at the stopping point.
    assert np.max(np.abs(sol.value - target)) <= 1e-6
    assert isinstance(sol.state.extra, tuple)  # Adam's moments live in `extra`


def test_lbfgs_rosenbrock():
    def rosenbrock(x, a):
        return jnp.sum(a * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    sol = ax.argmin(rosenbrock, jnp.zeros(5), jnp.array(100.0), solver=LBFGS())
    # Gradient reduced by 1e-8 from ~2; the Hessian at the minimum has smallest
    # eigenvalue ~0.1, so |x - 1| is below ~1e-6.
    np.testing.assert_allclose(sol.value, np.ones(5), atol=1e-6)
    assert int(sol.stats.num_steps) < 100


@pytest.mark.parametrize("store_grad", [False, True])
def test_lbfgs_backtracking_linesearch(store_grad):
    # Without `store_grad` the line search keeps no gradient: LBFGS evaluates it.
    linesearch = optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=20, store_grad=store_grad
    )
    # rtol 1e-7: the search tests decrease on values only, and stalls once that is
    # below round-off (here |grad| ~ 2e-8, see the `LBFGS` docstring).
    solver = LBFGS(linesearch=linesearch, rtol=1e-7)
    sol = ax.argmin(ridge, X0, LAM, solver=solver)
    # |grad| <= 1e-7 |grad(x0)| ~ 4e-7; the Hessian's smallest eigenvalue is at
    # least min(LAM) >= 0.5, so |w - w*| <= 2 |grad| < 1e-6.
    np.testing.assert_allclose(sol.value, ridge_solution(LAM)[0], atol=1e-6)
    assert int(sol.stats.num_steps) < 50


def test_lbfgs_default_search_reaches_round_off():
    # A quadratic (n = 30, cond 1e3) to |grad| <= 1e-14 |grad(x0)|: far below the
    # round-off of its values, where only the approximate Armijo test (from the
    # directional derivative) still accepts steps. Measured: 444 steps (Optax's
    # zoom search, strong Wolfe: 437).
    hessian = spd_matrix(30, 1e3)
    b = jnp.asarray(np.random.default_rng(1).normal(size=30))

    def quadratic(x, t):
        return 0.5 * x @ (hessian @ x) - t @ x

    expected = np.linalg.solve(np.asarray(hessian), np.asarray(b))
    solver = LBFGS(rtol=1e-14, max_steps=1000)
    sol = ax.argmin(quadratic, jnp.zeros(30), b, solver=solver)
    # |x - x*| <= cond |grad| / |H| relative: ~1e-11.
    assert rel_error(sol.value, expected) <= 1e-9
    # Without the approximate test the same search stalls at round-off (measured
    # at a relative gradient of 1.3e-7).
    values_only = ax.bilevel.BacktrackingLineSearch(value_rtol=0.0)
    solver = LBFGS(rtol=1e-14, max_steps=1000, linesearch=values_only)
    sol = ax.argmin(quadratic, jnp.zeros(30), b, solver=solver, throw=False)
    assert not bool(sol.stats.converged)
    assert float(sol.stats.grad_norm / sol.stats.initial_grad_norm) > 1e-10


def test_lbfgs_search_steps_back_from_nan():
    # A log barrier: NaN outside the unit ball, the minimiser inside near its edge
    # (on the axis of c, at the root r in (0, 1) of (r - 30)(1 - r^2) + 2r = 0,
    # r = 0.966). Quasi-Newton steps overshoot the ball (measured: 15 NaN trials
    # in 17 steps); the search must shrink them and never accept a NaN.
    c = jnp.array([30.0, 0.0, 0.0])

    def barrier(x, c):
        return 0.5 * jnp.sum((x - c) ** 2) - jnp.log(1 - jnp.sum(x**2))

    sol = ax.argmin(barrier, jnp.zeros(3), c, solver=LBFGS(rtol=1e-10))
    radius = np.roots([1.0, -30.0, -3.0, 30.0])
    r = float(radius[(radius > 0) & (radius < 1)].real[0])
    # Gradient 1e-10 relative, Hessian eigenvalues >= 1: |x - x*| ~ 1e-9.
    np.testing.assert_allclose(sol.value, [r, 0.0, 0.0], atol=1e-8)


def test_lbfgs_steps_accept_the_full_step_on_a_quadratic():
    # The search tries the full quasi-Newton step first, and it is nearly always
    # accepted: about one evaluation per step.
    hessian = spd_matrix(8, 50.0)
    calls = []

    def quadratic(x, t):
        jax.debug.callback(lambda: calls.append(1))
        return 0.5 * x @ (hessian @ x) - t @ x

    sol = ax.argmin(quadratic, jnp.zeros(8), jnp.ones(8), solver=LBFGS(rtol=1e-10))
    jax.effects_barrier()
    steps = int(sol.stats.num_steps)
    np.testing.assert_allclose(
        sol.value, np.linalg.solve(np.asarray(hessian), np.ones(8)), rtol=1e-8
    )
    assert steps <= 50  # measured: 31
    # One evaluation at x0, then at most 1.5 per step (measured: 1.1).
    assert len(calls) <= 1 + 1.5 * steps, (len(calls), steps)


def test_gauss_newton_linear_least_squares():
    rng = np.random.default_rng(1)
    matrix, data = rng.normal(size=(20, 5)), rng.normal(size=20)
    jm, jd = jnp.asarray(matrix), jnp.asarray(data)
    solver = GaussNewton(residuals=lambda x, _: jm @ x - jd, rtol=1e-12)
    sol = ax.argmin(
        lambda x, _: 0.5 * jnp.sum((jm @ x - jd) ** 2),
        jnp.zeros(5),
        None,
        solver=solver,
    )
    expected = np.linalg.lstsq(matrix, data, rcond=None)[0]
    # Well-conditioned 20x5 system solved to |J^T r| <= 1e-12 |J^T r0|.
    assert rel_error(sol.value, expected) <= 1e-10
    assert int(sol.stats.num_steps) <= 3  # linear residuals: one Newton step + polish
    assert int(sol.state.extra.linear_steps) > 0  # CG iterations are counted
    assert int(sol.state.extra.failed_linear_solves) == 0


def test_gauss_newton_rosenbrock_residuals():
    def residuals(x, a):
        return jnp.stack([a * (x[1] - x[0] ** 2), 1 - x[0]])

    def cost(x, a):
        return 0.5 * jnp.sum(residuals(x, a) ** 2)

    solver = GaussNewton(residuals=residuals, rtol=1e-12)
    sol = ax.argmin(cost, jnp.array([-1.2, 1.0]), jnp.array(10.0), solver=solver)
    # Zero-residual problem with an invertible Jacobian: once the damping is back
    # at its floor, Gauss-Newton is Newton's method on r = 0 and converges
    # quadratically, to rounding level. Before that the damping rejects the
    # undamped steps that would raise the cost (the first goes from 12.1 to
    # 1171): 22 steps measured, 4 of them rejected trials.
    np.testing.assert_allclose(sol.value, np.ones(2), atol=1e-10)
    assert int(sol.stats.num_steps) <= 30


# --- Hypergradients against the closed form --------------------------------------

PAIRS = [
    ("optax", ax.Implicit(linear_solver=lx.CG(rtol=1e-10, atol=1e-10))),
    ("optax", ax.Unrolled()),
    # (1 - mu/L)^400 < 1e-10 for this problem: the truncation bias is negligible.
    ("optax", ax.Truncated(k=400)),
    ("lbfgs", ax.Implicit(linear_solver=lx.CG(rtol=1e-10, atol=1e-10))),
    ("gauss_newton", ax.Implicit(linear_solver=lx.CG(rtol=1e-10, atol=1e-10))),
    ("gauss_newton", ax.Unrolled()),
    # One Newton step from a converged point already carries the exact implicit
    # derivative (J^T J is the full Hessian for linear residuals).
    ("gauss_newton", ax.Truncated(k=1)),
]


@pytest.mark.parametrize("name, strategy", PAIRS)
def test_hypergradient_matches_closed_form(name, strategy):
    grad = hypergradient_by(make_solver(name), strategy)
    # Inner solves to 1e-12 and backward solves to 1e-10 leave ~1e-9 error.
    assert rel_error(grad, ridge_hypergradient(LAM)) <= 1e-6


# Gauss-Newton stops after one step here: its tangent is that of one implicitly
# differentiated, normalised CG solve (~1e-9 with CG at 1e-6).
@pytest.mark.parametrize("name", ["optax", "lbfgs", "gauss_newton"])
def test_forward_mode_jacfwd(name):
    solver = make_solver(name)

    def solution(lam):
        sol = ax.argmin(ridge, X0, lam, solver=solver, hypergradient=ax.ForwardMode())
        return sol.value

    jacobian = np.asarray(jax.jacfwd(solution)(LAM))
    w, _ = ridge_solution(LAM)
    grad = jacobian.T @ (_C.T @ (_C @ w - _D))
    # Tangents converge with the iterates (L-BFGS's more slowly: ~1e-7 here).
    assert rel_error(grad, ridge_hypergradient(LAM)) <= 1e-6


@pytest.mark.parametrize("strategy", [ax.Unrolled(), ax.Truncated(k=5)])
def test_lbfgs_refuses_reverse_through_steps(strategy):
    with pytest.raises(
        ValueError, match="LBFGS's steps are not reverse-differentiable"
    ):
        ax.argmin(ridge, X0, LAM, solver=LBFGS(), hypergradient=strategy)


def test_vmap_batch_of_problems_under_jit():
    lams = jnp.asarray(np.random.default_rng(2).uniform(0.5, 2.0, size=(4, 4)))
    expected = np.stack([ridge_solution(lam)[0] for lam in np.asarray(lams)])
    for name in ("optax", "lbfgs", "gauss_newton"):
        solver = make_solver(name)

        @jax.jit
        def batch(lams):
            return jax.vmap(lambda lam: ax.argmin(ridge, X0, lam, solver=solver).value)(
                lams
            )

        # Each inner solve is converged to a relative gradient of 1e-12 (cond ~30).
        assert rel_error(batch(lams), expected) <= 1e-9, name


def test_jit_of_hypergradient():
    solver = make_solver("gauss_newton")
    grad = jax.jit(
        jax.grad(lambda lam: outer(ax.argmin(ridge, X0, lam, solver=solver).value))
    )(LAM)
    # Default Implicit backward solve (CG to 1e-6) on a well-conditioned Hessian.
    assert rel_error(grad, ridge_hypergradient(LAM)) <= 1e-5


# --- L-BFGS inverse-Hessian operator and preconditioner --------------------------


def test_inverse_hessian_is_identity_without_memory():
    solver = LBFGS()

    @jax.jit
    def apply(v):
        state = solver.init(ridge, X0, LAM)
        return solver.inverse_hessian_operator(state).mv(v)

    v = jnp.arange(4.0)
    np.testing.assert_array_equal(apply(v), v)


def test_inverse_hessian_matches_optax_direction():
    hessian = spd_matrix(10, 100.0)

    def quadratic(x, t):
        return 0.5 * x @ (hessian @ x) - t @ x

    # 8 steps with 3 pairs: the ring buffer has wrapped around.
    solver = LBFGS(memory_size=3, max_steps=8, rtol=0.0)

    @jax.jit
    def products(t):
        state = ax.argmin(quadratic, jnp.zeros(10), t, solver=solver, throw=False).state
        operator = solver.inverse_hessian_operator(state)
        # Optax's next L-BFGS direction is H g with the same memory plus the newest
        # pair, which is exactly what the operator holds.
        with jax.numpy_dtype_promotion("standard"):
            direction, _ = optax.scale_by_lbfgs(memory_size=3).update(
                state.grad, state.extra.opt_state[0], state.extra.x
            )
        count = state.extra.opt_state[0].count
        return operator.mv(state.grad), direction, operator.as_matrix(), count

    mine, direction, matrix, count = products(jnp.ones(10))
    assert int(count) == 8
    # Same arithmetic as Optax's two-loop recursion, up to rounding.
    assert rel_error(mine, direction) <= 1e-12
    matrix = np.asarray(matrix)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
    assert np.linalg.eigvalsh(matrix).min() > 0


def test_lbfgs_preconditioner_cuts_cg_iterations():
    n = 200
    hessian = spd_matrix(n, 1e4)
    truth = jnp.asarray(np.random.default_rng(3).normal(size=n))
    theta = hessian @ truth

    def quadratic(x, t):
        return 0.5 * x @ (hessian @ x) - t @ x

    def outer_loss(x, t):
        del t
        return 0.5 * jnp.sum((x - 1.0) ** 2)

    # x* = A^{-1} theta and dL/dtheta = A^{-1} (x* - 1).
    exact = np.linalg.solve(np.asarray(hessian), np.asarray(truth) - 1.0)
    # The memory of the zoom (strong Wolfe) search: with the default backtracking
    # search the pairs come from other steps and, on this problem, do not help CG
    # (measured 614 plain, 615 raced: the race then costs nothing either).
    zoom = optax.scale_by_zoom_linesearch(20, initial_guess_strategy="one")
    solver = LBFGS(max_steps=2000, rtol=1e-10, linesearch=zoom)
    steps, used = {}, {}
    for preconditioner in (
        ax.bilevel.NoPreconditioner(),
        ax.bilevel.LBFGSPreconditioner(),
    ):
        strategy = ax.Implicit(
            linear_solver=lx.CG(rtol=1e-8, atol=1e-8, max_steps=2000),
            preconditioner=preconditioner,
        )
        _, grad, _, info = ax.value_and_hypergrad(
            outer_loss,
            quadratic,
            jnp.zeros(n),
            theta,
            solver=solver,
            hypergradient=strategy,
        )
        # Inner gradient 1e-10 relative with cond 1e4: |x - x*| ~ 1e-8 relative.
        assert rel_error(grad, exact) <= 1e-6
        steps[type(preconditioner).__name__] = int(info.linear.num_steps)
        used[type(preconditioner).__name__] = bool(info.linear.preconditioned)
    # Measured: 624 without, 604 with the memory of 10 pairs (the
    # preconditioned run of the race converges first).
    assert used == {"NoPreconditioner": False, "LBFGSPreconditioner": True}
    assert steps["LBFGSPreconditioner"] < steps["NoPreconditioner"]


# --- Errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LBFGS(memory_size=0), r"LBFGS\(memory_size=...\) must be >= 1"),
        (lambda: LBFGS(max_steps=0), r"LBFGS\(max_steps=...\) must be >= 1"),
        (lambda: LBFGS(rtol=-1.0), r"LBFGS\(rtol=...\) must be >= 0"),
        (
            lambda: ax.bilevel.BacktrackingLineSearch(c1=0.5),
            r"BacktrackingLineSearch\(c1=...\) must be in \(0, 0.5\)",
        ),
        (
            lambda: ax.bilevel.BacktrackingLineSearch(max_steps=-1),
            r"BacktrackingLineSearch\(max_steps=...\) must be >= 0",
        ),
        (
            lambda: ax.bilevel.BacktrackingLineSearch(value_rtol=-1.0),
            r"BacktrackingLineSearch\(value_rtol=...\) must be >= 0",
        ),
        (
            lambda: OptaxSolver(optimiser=optax.sgd(0.1), max_steps=0),
            r"OptaxSolver\(max_steps=...\) must be >= 1",
        ),
        (
            lambda: OptaxSolver(optimiser=optax.sgd(0.1), atol=-1.0),
            r"OptaxSolver\(atol=...\) must be >= 0",
        ),
        (lambda: GaussNewton(damping=-1.0), r"GaussNewton\(damping=...\) must be >= 0"),
        (
            lambda: GaussNewton(max_steps=0),
            r"GaussNewton\(max_steps=...\) must be >= 1",
        ),
        (lambda: GaussNewton(rtol=-1.0), r"GaussNewton\(rtol=...\) must be >= 0"),
    ],
)
def test_bad_values(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# Wrong types: under the test suite's runtime type checker (jaxtyping + beartype)
# the annotation check fires first and names the parameter; without it, the
# solver's own `__check_init__` raises. Both are `TypeError`s naming the field.
@pytest.mark.parametrize(
    "make, field, own_message",
    [
        (lambda: LBFGS(linesearch="zoom"), "linesearch", r"LBFGS\(linesearch=...\)"),
        (
            lambda: OptaxSolver(optimiser="adam"),
            "optimiser",
            r"OptaxSolver\(optimiser=...\)",
        ),
        (
            lambda: GaussNewton(residuals=3),
            "residuals",
            r"GaussNewton\(residuals=...\)",
        ),
        (
            lambda: GaussNewton(linear_solver="cg"),
            "linear_solver",
            r"GaussNewton\(linear_solver=...\)",
        ),
    ],
)
def test_bad_types(make, field, own_message):
    with pytest.raises(TypeError, match=rf"{own_message}|parameter '{field}'"):
        make()


def test_gauss_newton_without_residuals():
    with pytest.raises(ValueError, match="GaussNewton needs the residuals"):
        ax.argmin(ridge, X0, LAM, solver=GaussNewton())


@pytest.mark.parametrize(
    "residuals, match",
    [
        (lambda x, lam: jnp.ones((3, 5)) @ x, "failed when traced with x0"),
        (lambda x, lam: (), "returned no arrays"),
        (lambda x, lam: jnp.round(x).astype(jnp.int32), "must return floating arrays"),
    ],
)
def test_gauss_newton_residuals_inconsistent(residuals, match):
    with pytest.raises(ValueError, match=match):
        ax.argmin(ridge, X0, LAM, solver=GaussNewton(residuals=residuals))


def test_gauss_newton_residuals_disagree_with_fn():
    def twice(w, lam):  # |r|^2 instead of 0.5 |r|^2
        return 2 * ridge(w, lam)

    solver = GaussNewton(residuals=ridge_residuals)
    with pytest.raises(eqx.EquinoxRuntimeError, match=r"0.5 \* \|residuals"):
        ax.argmin(twice, X0, LAM, solver=solver)
