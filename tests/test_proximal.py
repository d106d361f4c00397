"""Proximal operators, ProximalGradient (ISTA/FISTA) and PrimalDual (Condat-Vu).

References are exact wherever possible: KKT-certified closed forms (lasso on a fixed
support, a ball-constrained least-squares problem), scipy's active-set solvers
(`nnls`, `lsq_linear` with the BVLS method, which terminate at the exact solution up
to rounding), and the piecewise-constant closed form of TV denoising of a step.
"""

import functools

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.optimize

from assimilax.bilevel import (
    AbstractProx,
    argmin,
    Box,
    ForwardMode,
    Implicit,
    L1,
    L2Ball,
    NonNegative,
    PrimalDual,
    ProximalGradient,
    TotalVariation1D,
    Truncated,
    Unrolled,
    value_and_hypergrad,
    Zero,
)
from helpers import difference_1d, rel_error


# Forward solves need a strategy that accepts proximal solvers (the default
# Implicit() uses CG, which is refused); the backward tolerance is far below the
# accuracy any test asks for.
GMRES = Implicit(linear_solver=lx.GMRES(rtol=1e-12, atol=1e-12))
LAM = 2.0


# ---------------------------------------------------------------- lasso problem


@functools.cache
def lasso_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 10)), rng.normal(size=20)


def lasso_fn(x, args):
    a, b = lasso_data()
    return 0.5 * jnp.sum((jnp.asarray(a) @ x - jnp.asarray(b)) ** 2)


def lasso_solver(**kwargs):
    a, _ = lasso_data()
    step = 1.0 / np.linalg.norm(a, 2) ** 2  # 1/L with L = |A|²
    options = dict(max_steps=5000, rtol=1e-13)
    options.update(kwargs)
    return ProximalGradient(prox=L1(weight=lambda lam: lam), step_size=step, **options)


@functools.cache
def lasso_reference():
    """Exact lasso minimiser at LAM from its support, certified by the KKT conditions.

    Returns ``(x, support, dx/dlam)``; also asserts that the support is stable (strict
    complementarity with a margin), so finite differences in lam stay on it.
    """
    a, b = lasso_data()
    sol = argmin(
        lasso_fn,
        jnp.zeros(10),
        jnp.asarray(LAM),
        solver=lasso_solver(),
        hypergradient=GMRES,
    )
    support = np.abs(np.asarray(sol.value)) > 1e-8
    signs = np.sign(np.asarray(sol.value)[support])
    a_s = a[:, support]
    gram = a_s.T @ a_s
    x = np.zeros(10)
    x[support] = np.linalg.solve(gram, a_s.T @ b - LAM * signs)
    grad = a.T @ (a @ x - b)
    # KKT: sign pattern consistent, off-support |grad| strictly below lam. Both
    # hold with a margin far above any step used below, so the support is stable.
    assert np.all(np.sign(x[support]) == signs)
    assert np.min(np.abs(x[support])) > 1e-3
    assert np.max(np.abs(grad[~support])) < LAM - 1e-2
    dx = np.zeros(10)
    dx[support] = -np.linalg.solve(gram, signs)
    return x, support, dx


def test_lasso_matches_certified_minimiser_and_fista_is_faster():
    x_ref, support, _ = lasso_reference()
    a, b = lasso_data()
    steps = {}
    for acceleration in (False, True):
        solver = lasso_solver(acceleration=acceleration)
        sol = argmin(
            lasso_fn,
            jnp.zeros(10),
            jnp.asarray(LAM),
            solver=solver,
            hypergradient=GMRES,
        )
        steps[acceleration] = int(sol.stats.num_steps)
        # Gradient mapping <= 1e-13 * initial (~10): the error is below 1e-12 / mu
        # with mu = lambda_min(A_S^T A_S) ~ 5, hence 1e-10 relative is safe.
        assert rel_error(sol.value, x_ref) < 1e-10
        assert np.all(np.asarray(sol.value)[~support] == 0.0)  # exact zeros
        objective = 0.5 * np.sum((a @ x_ref - b) ** 2) + LAM * np.sum(np.abs(x_ref))
        assert abs(float(sol.state.value) - objective) < 1e-12 * objective
    # Measured: ISTA 150 steps, FISTA (with restart) 57.
    assert steps[True] < steps[False]


# ------------------------------------------------------------ constrained problems


def test_nonnegative_least_squares_matches_scipy_nnls():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(15, 8)), rng.normal(size=15)
    x_ref, _ = scipy.optimize.nnls(a, b)
    assert 0 < np.sum(x_ref == 0.0) < 8  # some constraints active, some not

    def fn(x, args):
        return 0.5 * jnp.sum((jnp.asarray(a) @ x - jnp.asarray(b)) ** 2)

    solver = ProximalGradient(
        prox=NonNegative(), step_size=1.0 / np.linalg.norm(a, 2) ** 2, rtol=1e-13
    )
    sol = argmin(fn, jnp.ones(8), None, solver=solver, hypergradient=GMRES)
    # nnls is an exact active-set method; the iterate's error is ~residual / mu.
    assert rel_error(sol.value, x_ref) < 1e-10
    assert np.min(np.asarray(sol.value)) >= 0.0


def test_box_on_a_pytree_matches_scipy_bounded_least_squares():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(12, 5)), 3.0 * rng.normal(size=12)
    lower, upper = -0.5, np.array([0.2, 0.3, 0.4])  # per-element bounds on "u"
    bounds = (np.full(5, lower), np.concatenate([upper, [0.5, 0.5]]))
    ref = scipy.optimize.lsq_linear(a, b, bounds=bounds, method="bvls", tol=1e-14).x
    active = (ref <= bounds[0] + 1e-12) | (ref >= bounds[1] - 1e-12)
    assert 0 < np.sum(active) < 5

    def fn(x, args):
        flat = jnp.concatenate([x["u"], x["v"]])
        return 0.5 * jnp.sum((jnp.asarray(a) @ flat - jnp.asarray(b)) ** 2)

    # Pytree bounds: `lower` is one float for all leaves, `upper` a tree like x.
    prox = Box(lower=lower, upper={"u": jnp.asarray(upper), "v": 0.5})
    solver = ProximalGradient(
        prox=prox, step_size=1.0 / np.linalg.norm(a, 2) ** 2, rtol=1e-13
    )
    x0 = {"u": jnp.zeros(3), "v": jnp.zeros(2)}
    sol = argmin(fn, x0, None, solver=solver, hypergradient=GMRES)
    x = np.concatenate([sol.value["u"], sol.value["v"]])
    assert rel_error(x, ref) < 1e-10  # BVLS is exact up to rounding


def test_l2_ball_constrained_least_squares_satisfies_kkt():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 4)), rng.normal(size=10)
    radius = 0.25 * np.linalg.norm(np.linalg.lstsq(a, b, rcond=None)[0])

    def fn(x, args):
        return 0.5 * jnp.sum((jnp.asarray(a) @ x - jnp.asarray(b)) ** 2)

    solver = ProximalGradient(
        prox=L2Ball(radius=radius),
        step_size=1.0 / np.linalg.norm(a, 2) ** 2,
        rtol=1e-13,
    )
    x = np.asarray(
        argmin(fn, jnp.zeros(4), None, solver=solver, hypergradient=GMRES).value
    )
    grad = a.T @ (a @ x - b)
    multiplier = -grad @ x / radius**2
    # KKT of min f s.t. |x| <= r: |x| = r and grad = -mu x with mu >= 0.
    assert abs(np.linalg.norm(x) - radius) < 1e-12 * radius
    assert multiplier > 0
    assert np.linalg.norm(grad + multiplier * x) < 1e-10 * np.linalg.norm(grad)


def test_prox_operators_closed_forms():
    x = jnp.asarray([-2.0, -0.3, 0.0, 0.4, 1.5])
    weights = jnp.asarray([1.0, 0.1, 1.0, 0.5, 2.0])
    out = L1(weight=weights)(x, 0.5, None)
    expected = np.sign(x) * np.maximum(np.abs(x) - 0.5 * weights, 0.0)
    np.testing.assert_array_equal(out, expected)
    assert float(L1(weight=weights).value(x, None)) == pytest.approx(
        float(np.sum(weights * np.abs(x))), rel=1e-15
    )
    np.testing.assert_array_equal(NonNegative()(x, 1.0, None), np.maximum(x, 0.0))
    np.testing.assert_array_equal(Zero()(x, 1.0, None), x)
    tree = {"a": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}  # norm 5
    ball = L2Ball(radius=lambda args: args)
    projected = ball(tree, 1.0, 2.5)
    np.testing.assert_allclose(projected["a"], [1.5], rtol=1e-15)
    np.testing.assert_allclose(projected["b"], [2.0], rtol=1e-15)
    assert ball(tree, 1.0, 6.0) == tree  # inside: unchanged
    # The derivative at the origin is finite (the double-`where` guard).
    jac = jax.jacfwd(lambda z: L2Ball(radius=1.0)(z, 1.0, None))(jnp.zeros(3))
    np.testing.assert_array_equal(jac, np.eye(3))
    assert float(Box(lower=0.0, upper=1.0).value(x, None)) == 0.0


# --------------------------------------------------------------- total variation


def tv_dual_reference(y, lam):
    """prox of lam*TV at y from the dual box-constrained least squares (BVLS)."""
    d = np.asarray(difference_1d(len(y)))
    p = scipy.optimize.lsq_linear(
        d.T, y, bounds=(-lam, lam), method="bvls", tol=1e-14
    ).x
    return y - d.T @ p


@functools.cache
def noisy_steps():
    rng = np.random.default_rng(0)
    return np.repeat(2.0 * rng.normal(size=5), 10) + 0.3 * rng.normal(size=50)


def test_tv_prox_of_a_step_is_the_piecewise_constant_closed_form():
    # For a single step of height h and lam/m + lam/(n-m) < h, each block moves
    # towards the other by lam / (its length).
    y = jnp.concatenate([jnp.zeros(6), jnp.full(4, 3.0)])
    out = TotalVariation1D(weight=0.3)(y, 2.0, None)  # step * weight = 0.6
    expected = np.concatenate([np.full(6, 0.1), np.full(4, 3.0 - 0.15)])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_tv_prox_matches_dual_reference_and_batches():
    y = noisy_steps()
    ref = tv_dual_reference(y, 0.5)
    out = TotalVariation1D(weight=0.5)(jnp.asarray(y), 1.0, None)
    # 200 restarted-FISTA dual steps: measured 2e-12 on this signal (1e-6 at 100).
    assert rel_error(out, ref) < 1e-10
    # Leading axes are a batch: rows are denoised independently.
    stacked = TotalVariation1D(weight=0.5)(
        jnp.stack([jnp.asarray(y), -jnp.asarray(y)]), 1.0, None
    )
    np.testing.assert_allclose(stacked[0], out, rtol=0, atol=1e-14)
    np.testing.assert_allclose(stacked[1], -out, rtol=0, atol=1e-12)
    value = TotalVariation1D(weight=0.5).value(jnp.asarray(y), None)
    assert float(value) == pytest.approx(0.5 * np.sum(np.abs(np.diff(y))), rel=1e-14)


def difference(x, args):
    return x[1:] - x[:-1]


def tv_primal_dual(fn_lipschitz=1.0, **kwargs):
    # |D|² <= 4; tau = 0.5, sigma = 0.25: 1/tau - sigma|D|² = 1 > L/2 = 0.5.
    options = dict(
        operator=difference,
        tau=0.5,
        sigma=0.25,
        operator_norm=2.0,
        lipschitz=fn_lipschitz,
        max_steps=4000,
        rtol=1e-12,
    )
    options.update(kwargs)
    return PrimalDual(**options)


def test_primal_dual_tv_denoising_matches_reference():
    y = noisy_steps()

    def fn(x, args):
        return 0.5 * jnp.sum((x - jnp.asarray(y)) ** 2)

    solver = tv_primal_dual(prox_h=L1(weight=0.5))
    sol = argmin(fn, jnp.asarray(y), None, solver=solver, hypergradient=GMRES)
    # Residual 1e-12 relative; the primal error of Condat-Vu is of the same order
    # on this strongly convex problem (observed ~1e-12).
    assert rel_error(sol.value, tv_dual_reference(y, 0.5)) < 1e-9


def test_primal_dual_fused_lasso_uses_g_and_h():
    # Friedman et al. (2007): the fused-lasso signal approximator is the soft
    # threshold of the TV-denoised signal, prox_{l1 + TV} = soft ∘ prox_TV.
    y = noisy_steps()

    def fn(x, args):
        return 0.5 * jnp.sum((x - jnp.asarray(y)) ** 2)

    solver = tv_primal_dual(prox_h=L1(weight=0.5), prox_g=L1(weight=0.7))
    sol = argmin(fn, jnp.zeros(50), None, solver=solver, hypergradient=GMRES)
    tv = tv_dual_reference(y, 0.5)
    ref = np.sign(tv) * np.maximum(np.abs(tv) - 0.7, 0.0)
    assert np.sum(ref == 0.0) > 0
    assert rel_error(sol.value, ref) < 1e-9


@functools.cache
def deblurring():
    n = 30
    rng = np.random.default_rng(4)
    blur = sum(np.eye(n, k=k) * w for k, w in ((-1, 0.25), (0, 0.5), (1, 0.25)))
    truth = np.repeat([0.0, 1.5, -0.5], 10)
    return blur, blur @ truth + 0.05 * rng.normal(size=n)


def deblur_fn(x, args):
    blur, y = deblurring()
    return 0.5 * jnp.sum((jnp.asarray(blur) @ x - jnp.asarray(y)) ** 2)


def test_primal_dual_matches_proximal_gradient_on_tv_deblurring():
    blur, y = deblurring()
    lipschitz = np.linalg.norm(blur, 2) ** 2
    pg = ProximalGradient(
        prox=TotalVariation1D(weight=0.05), step_size=1 / lipschitz, rtol=1e-12
    )
    x_pg = argmin(deblur_fn, jnp.zeros(30), None, solver=pg, hypergradient=GMRES).value
    pd = tv_primal_dual(prox_h=L1(weight=0.05), fn_lipschitz=lipschitz, max_steps=20000)
    x_pd = argmin(deblur_fn, jnp.zeros(30), None, solver=pd, hypergradient=GMRES).value
    # Two different algorithms, both stopped at relative residual 1e-12; the TV
    # prox inside ProximalGradient is itself accurate to ~1e-12.
    assert rel_error(x_pg, x_pd) < 1e-8


def test_tv_weight_hypergradient_through_proximal_gradient_matches_fd():
    blur, _ = deblurring()

    def solution(weight):
        solver = ProximalGradient(
            prox=TotalVariation1D(weight=lambda w: w),
            step_size=1 / np.linalg.norm(blur, 2) ** 2,
            rtol=1e-12,
        )
        sol = argmin(
            deblur_fn, jnp.zeros(30), weight, solver=solver, hypergradient=GMRES
        )
        return sol.value

    weight, h = jnp.asarray(0.05), 1e-5
    jumps = np.abs(np.diff(np.asarray(solution(weight))))
    # The jump set is stable under +-h (smallest jump ~1e-2), where the solution is
    # smooth in the weight; FD error is then ~1e-12 / h. Implicit differentiates
    # the fixed-point residual through the TV prox's unrolled dual loop.
    assert np.min(jumps[jumps > 1e-8]) > 1e-3
    fd = (solution(weight + h) - solution(weight - h)) / (2 * h)
    implicit = jax.jacrev(solution)(weight)
    assert rel_error(implicit, fd) < 1e-6  # measured 8e-10


# ------------------------------------------------------------------ hypergradients


def lasso_solution(lam, strategy, **kwargs):
    sol = argmin(
        lasso_fn,
        jnp.zeros(10),
        lam,
        solver=lasso_solver(**kwargs),
        hypergradient=strategy,
    )
    return sol.value


def test_lasso_hypergradient_implicit_unrolled_forward_match_closed_form_and_fd():
    x_ref, support, dx_closed = lasso_reference()
    lam = jnp.asarray(LAM)
    # Central differences of the solution: the lasso path is linear in lam on a
    # stable support, so the only error is the solves' (~1e-12 / h).
    h = 1e-4
    fd = (lasso_solution(lam + h, GMRES) - lasso_solution(lam - h, GMRES)) / (2 * h)
    assert rel_error(fd, dx_closed) < 1e-7
    implicit = jax.jacrev(lambda t: lasso_solution(t, GMRES))(lam)
    unrolled = jax.jacrev(lambda t: lasso_solution(t, Unrolled(), max_steps=200))(lam)
    forward = jax.jacfwd(lambda t: lasso_solution(t, ForwardMode()))(lam)
    for jac in (implicit, unrolled, forward):
        assert rel_error(jac, fd) < 1e-5
        assert rel_error(jac, dx_closed) < 1e-8
        assert np.all(np.asarray(jac)[~support] == 0.0)


def test_lasso_truncated_hypergradient_converges_with_k():
    _, _, dx_closed = lasso_reference()
    errors = [
        rel_error(
            jax.jacrev(lambda t: lasso_solution(t, Truncated(k=k)))(jnp.asarray(LAM)),
            dx_closed,
        )
        for k in (5, 100)
    ]
    # Truncation bias decays geometrically in k (linear rate of the iteration on
    # the support); k = 100 is well past it.
    assert errors[1] < 1e-6 < errors[0]


def test_lasso_outer_gradient_with_value_and_hypergrad():
    x_ref, _, dx_closed = lasso_reference()
    target = jnp.linspace(-1.0, 1.0, 10)

    def outer(x, lam):
        return 0.5 * jnp.sum((x - target) ** 2)

    loss, grad, _, info = value_and_hypergrad(
        outer,
        lasso_fn,
        jnp.zeros(10),
        jnp.asarray(LAM),
        solver=lasso_solver(),
        hypergradient=GMRES,
    )
    expected = float(np.dot(x_ref - np.asarray(target), dx_closed))
    assert float(grad) == pytest.approx(expected, rel=1e-8)
    assert not bool(info.linear.failed)


def test_lasso_hypergradient_under_vmap():
    # Both lams lie on the reference support (the slack checked in
    # lasso_reference is far larger than 1e-3 * |dx|), where dx/dlam is constant.
    _, _, dx_closed = lasso_reference()
    weights = jnp.linspace(1.0, 2.0, 10)

    def outer(lam):
        return jnp.sum(weights * lasso_solution(lam, GMRES))

    grads = jax.vmap(jax.grad(outer))(jnp.asarray([LAM, LAM + 1e-3]))
    expected = float(np.dot(np.asarray(weights), dx_closed))
    np.testing.assert_allclose(grads, [expected, expected], rtol=1e-8)


def test_primal_dual_hypergradient_unrolled_and_forward_match_fd():
    y = noisy_steps()[:20]

    def fn(x, args):
        return 0.5 * jnp.sum((x - jnp.asarray(y)) ** 2)

    def solution(lam, strategy, max_steps=4000):
        solver = tv_primal_dual(prox_h=L1(weight=lambda a: a), max_steps=max_steps)
        return argmin(
            fn, jnp.asarray(y), lam, solver=solver, hypergradient=strategy
        ).value

    lam, h = jnp.asarray(0.5), 1e-4
    # TV denoising is piecewise linear in lam (fixed jump set): central FD is exact
    # up to the solves' accuracy.
    fd = (solution(lam + h, ForwardMode()) - solution(lam - h, ForwardMode())) / (2 * h)
    unrolled = jax.jacrev(lambda t: solution(t, Unrolled(), max_steps=1500))(lam)
    forward = jax.jacfwd(lambda t: solution(t, ForwardMode()))(lam)
    assert rel_error(unrolled, fd) < 1e-5
    assert rel_error(forward, fd) < 1e-5


# ------------------------------------------------------------------------- errors


def test_implicit_with_cg_is_refused_for_proximal_gradient():
    # Refused when differentiating (the forward solve with the default strategy runs).
    def loss(lam):
        return jnp.sum(
            argmin(
                lasso_fn,
                jnp.zeros(10),
                lam,
                solver=lasso_solver(),
                hypergradient=Implicit(linear_solver=lx.CG(rtol=1e-8, atol=1e-8)),
            ).value
        )

    with pytest.raises(ValueError, match="needs a symmetric system"):
        jax.grad(loss)(jnp.asarray(LAM))


def test_implicit_differentiation_of_primal_dual_raises():
    y = noisy_steps()[:10]

    def fn(x, args):
        return 0.5 * jnp.sum((x - jnp.asarray(y)) ** 2)

    solver = tv_primal_dual(prox_h=L1(weight=lambda a: a))

    def solution(lam):
        return argmin(fn, jnp.asarray(y), lam, solver=solver, hypergradient=GMRES).value

    solution(jnp.asarray(0.5))  # the forward solve itself is fine
    with pytest.raises(ValueError, match="cannot differentiate PrimalDual"):
        jax.jacrev(solution)(jnp.asarray(0.5))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: L1(weight=-1.0), ValueError, r"L1\(weight=...\) must be >= 0"),
        (lambda: L1(weight=jnp.asarray([1.0, -1.0])), ValueError, r"L1\(weight"),
        (lambda: Box(lower=1.0, upper=0.0), ValueError, r"Box\(lower=..., upper"),
        (lambda: L2Ball(radius=0.0), ValueError, r"L2Ball\(radius=...\) must be > 0"),
        (
            lambda: TotalVariation1D(weight=-0.1),
            ValueError,
            r"TotalVariation1D\(weight",
        ),
        (
            lambda: TotalVariation1D(weight=0.1, dual_steps=0),
            ValueError,
            r"TotalVariation1D\(dual_steps",
        ),
        (lambda: ProximalGradient(prox="l1", step_size=0.1), TypeError, "prox"),
        (
            lambda: ProximalGradient(prox=L1(weight=1.0), step_size=0.0),
            ValueError,
            r"ProximalGradient\(step_size",
        ),
        (
            lambda: ProximalGradient(prox=L1(weight=1.0), step_size=0.1, max_steps=0),
            ValueError,
            r"ProximalGradient\(max_steps",
        ),
        (
            lambda: ProximalGradient(prox=L1(weight=1.0), step_size=0.1, rtol=-1.0),
            ValueError,
            r"ProximalGradient\(rtol",
        ),
        (
            lambda: ProximalGradient(prox=L1(weight=1.0), step_size=0.1, atol=-1.0),
            ValueError,
            r"ProximalGradient\(atol",
        ),
        (
            lambda: PrimalDual(operator=3, prox_h=L1(weight=1.0), tau=0.1, sigma=0.1),
            TypeError,
            "operator",
        ),
        (
            lambda: PrimalDual(
                operator=difference, prox_h=NonNegative, tau=0.1, sigma=0.1
            ),
            TypeError,
            "prox_h",
        ),
        (
            lambda: tv_primal_dual(prox_h=L1(weight=1.0), tau=-0.5),
            ValueError,
            r"PrimalDual\(tau",
        ),
        (
            lambda: tv_primal_dual(prox_h=L1(weight=1.0), sigma=0.0),
            ValueError,
            r"PrimalDual\(sigma",
        ),
        (
            lambda: tv_primal_dual(prox_h=L1(weight=1.0), operator_norm=0.0),
            ValueError,
            r"PrimalDual\(operator_norm",
        ),
        (
            lambda: tv_primal_dual(prox_h=L1(weight=1.0), lipschitz=-1.0),
            ValueError,
            r"PrimalDual\(lipschitz",
        ),
        (
            lambda: tv_primal_dual(prox_h=L1(weight=1.0), sigma=0.5),
            ValueError,
            r"PrimalDual\(tau=..., sigma=...\) violate the Condat-Vu condition",
        ),
    ],
)
def test_bad_fields_raise_naming_the_field(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_prox_that_does_not_fit_x0_is_reported():
    solver = ProximalGradient(prox=L1(weight=jnp.ones(3)), step_size=0.1)
    with pytest.raises(ValueError, match=r"ProximalGradient\(prox=L1\(...\)\) failed"):
        argmin(lasso_fn, jnp.zeros(10), None, solver=solver, hypergradient=GMRES)
    pd = tv_primal_dual(prox_h=L1(weight=jnp.ones(4)))
    with pytest.raises(ValueError, match=r"PrimalDual\(prox_h=L1\(...\)\) failed"):
        argmin(lasso_fn, jnp.zeros(10), None, solver=pd, hypergradient=GMRES)

    def bad_operator(x, args):
        return x @ jnp.ones((3, 3))

    pd = tv_primal_dual(prox_h=L1(weight=1.0), operator=bad_operator)
    with pytest.raises(ValueError, match=r"PrimalDual\(operator=...\) failed"):
        argmin(lasso_fn, jnp.zeros(10), None, solver=pd, hypergradient=GMRES)


class _WrongShape(AbstractProx):
    def __call__(self, x, step, args):
        return x[:-1]

    def value(self, x, args):
        return jnp.sum(x)


class _VectorValue(AbstractProx):
    def __call__(self, x, step, args):
        return x

    def value(self, x, args):
        return x


def test_prox_with_wrong_output_shapes_is_reported():
    solver = ProximalGradient(prox=_WrongShape(), step_size=0.1)
    with pytest.raises(ValueError, match="must return the structure and shapes"):
        argmin(lasso_fn, jnp.zeros(10), None, solver=solver, hypergradient=GMRES)
    solver = ProximalGradient(prox=_VectorValue(), step_size=0.1)
    with pytest.raises(ValueError, match=r"\.value must return a scalar"):
        argmin(lasso_fn, jnp.zeros(10), None, solver=solver, hypergradient=GMRES)


def test_abstract_prox_cannot_be_instantiated():
    with pytest.raises(TypeError):
        AbstractProx()
