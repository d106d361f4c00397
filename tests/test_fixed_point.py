"""`fixed_point`, `root_find` and the `DEQ` layer against closed forms.

Every derivative is compared with the implicit-function-theorem formula written
out with dense NumPy matrices at a fixed point found by NumPy's own iteration
(independent of the library), in float64, at 1e-8.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import assimilax as ax


RNG = np.random.default_rng(0)
N, P = 6, 3
# A non-symmetric contraction (spectral norm 0.6) and a coupling to the parameters.
_A = RNG.normal(size=(N, N))
A = 0.6 * _A / np.linalg.norm(_A, 2)
B = RNG.normal(size=(N, P))
C = RNG.normal(size=N)  # the outer loss is c . z*
THETA = np.array([0.3, -0.2, 0.5])
TIGHT = 1e-13

SOLVERS = [
    ax.FixedPointIteration(rtol=TIGHT),
    ax.Anderson(rtol=TIGHT),
    ax.Newton(rtol=TIGHT),
]
REVERSE = [
    ax.Implicit(),
    ax.Implicit(linear_solver=lx.LU()),
    ax.Unrolled(),
]


def affine(z, theta):
    return jnp.asarray(A) @ z + jnp.asarray(B) @ theta


def affine_closed_form():
    """``z* = (I - A)⁻¹ B θ`` and ``d(c·z*)/dθ = Bᵀ (I - A)⁻ᵀ c``."""
    system = np.eye(N) - A
    return np.linalg.solve(system, B @ THETA), B.T @ np.linalg.solve(system.T, C)


def name(obj):
    return type(obj).__name__


@pytest.mark.parametrize("solver", SOLVERS, ids=name)
@pytest.mark.parametrize("strategy", REVERSE, ids=repr)
def test_contraction_reverse_gradients_equal_closed_form(solver, strategy):
    z_star, grad_star = affine_closed_form()

    def loss(theta):
        sol = ax.fixed_point(
            affine, jnp.zeros(N), theta, solver=solver, hypergradient=strategy
        )
        return jnp.asarray(C) @ sol.value

    sol = ax.fixed_point(affine, jnp.zeros(N), jnp.asarray(THETA), solver=solver)
    np.testing.assert_allclose(sol.value, z_star, atol=1e-10)
    assert bool(sol.stats.converged)
    np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(THETA)), grad_star, atol=1e-8)


def test_anderson_and_newton_take_fewer_steps_than_plain_iteration():
    def steps(solver):
        sol = ax.fixed_point(affine, jnp.zeros(N), jnp.asarray(THETA), solver=solver)
        return int(sol.stats.num_steps)

    plain = steps(ax.FixedPointIteration(rtol=TIGHT))
    assert steps(ax.Anderson(rtol=TIGHT)) < plain
    # With a memory longer than the state, Anderson on an affine map is GMRES in
    # disguise (Walker & Ni 2011): the root after at most N + 1 steps.
    assert steps(ax.Anderson(rtol=TIGHT, memory=N + 2)) <= N + 1
    assert steps(ax.Anderson(rtol=TIGHT, memory=1)) == plain  # memory 1: plain
    assert steps(ax.Newton(rtol=TIGHT)) <= 2  # an affine map: one Newton step


@pytest.mark.parametrize("solver", SOLVERS, ids=name)
def test_contraction_forward_mode_equals_closed_form(solver):
    _, grad_star = affine_closed_form()

    def z_star(theta):
        return ax.fixed_point(
            affine,
            jnp.zeros(N),
            theta,
            solver=solver,
            hypergradient=ax.ForwardMode(),
        ).value

    jacobian = jax.jacfwd(z_star)(jnp.asarray(THETA))
    np.testing.assert_allclose(C @ np.asarray(jacobian), grad_star, atol=1e-8)


def test_truncated_is_exact_with_enough_steps_and_biased_with_few():
    # k steps of the differentiated iteration sum the first k terms of the
    # Neumann series of (I - A)⁻¹: exact to 0.6^k, and visibly biased for k = 3.
    _, grad_star = affine_closed_form()

    def grad(k):
        def loss(theta):
            z = ax.fixed_point(
                affine,
                jnp.zeros(N),
                theta,
                solver=ax.FixedPointIteration(rtol=TIGHT, max_steps=200),
                hypergradient=ax.Truncated(k=k),
            ).value
            return jnp.asarray(C) @ z

        return jax.grad(loss)(jnp.asarray(THETA))

    np.testing.assert_allclose(grad(60), grad_star, atol=1e-8)
    bias = np.linalg.norm(grad(3) - grad_star) / np.linalg.norm(grad_star)
    assert 1e-3 < bias < 0.6**3 * np.linalg.cond(np.eye(N) - A)


# ------------------------------------------------------------------ DEQ layer


class TanhCell(eqx.Module):
    """``z -> tanh(W z + U x + b)``; a contraction in z when |W| < 1."""

    W: jax.Array
    U: jax.Array
    b: jax.Array

    def __call__(self, z, x):
        return jnp.tanh(self.W @ z + self.U @ x + self.b)


def tanh_cell():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(N, N))
    return TanhCell(
        jnp.asarray(0.8 * w / np.linalg.norm(w, 2)),
        jnp.asarray(rng.normal(size=(N, P))),
        jnp.asarray(rng.normal(size=N)),
    )


def deq_closed_form(cell, x):
    """The fixed point by NumPy's Picard iteration, and the gradients of
    ``c·z*`` w.r.t. W, U, b and x: with ``D = diag(1 - z*²)`` and
    ``v = (I - D W)⁻ᵀ c``, ``∂b = D v``, ``∂W = (D v) z*ᵀ``, ``∂U = (D v) xᵀ``,
    ``∂x = Uᵀ D v``."""
    W, U, b = (np.asarray(a) for a in (cell.W, cell.U, cell.b))
    z = np.zeros(N)
    for _ in range(500):
        z = np.tanh(W @ z + U @ x + b)
    D = np.diag(1 - z**2)
    dv = D @ np.linalg.solve((np.eye(N) - D @ W).T, C)
    grads = {"W": np.outer(dv, z), "U": np.outer(dv, x), "b": dv, "x": U.T @ dv}
    return z, grads


@pytest.mark.parametrize(
    "strategy", [ax.Implicit(), ax.Unrolled(), ax.ForwardMode()], ids=name
)
def test_deq_layer_gradients_equal_closed_form(strategy):
    cell = tanh_cell()
    x = np.array([0.5, -1.0, 0.25])
    z_star, expected = deq_closed_form(cell, x)
    layer = ax.DEQ(cell, (N,), solver=ax.Anderson(rtol=TIGHT), hypergradient=strategy)
    np.testing.assert_allclose(layer(jnp.asarray(x)), z_star, atol=1e-12)

    def loss(layer, x):
        return jnp.asarray(C) @ layer(x)

    if isinstance(strategy, ax.ForwardMode):
        # Forward mode: one tangent per input entry and per weight of b.
        jac_x = jax.jacfwd(lambda x: layer(x))(jnp.asarray(x))
        np.testing.assert_allclose(C @ np.asarray(jac_x), expected["x"], atol=1e-8)
        jac_b = jax.jacfwd(lambda b: eqx.tree_at(lambda m: m.cell.b, layer, b)(x))(
            cell.b
        )
        np.testing.assert_allclose(C @ np.asarray(jac_b), expected["b"], atol=1e-8)
        return
    grad_layer, grad_x = eqx.filter_grad(lambda both: loss(*both))(
        (layer, jnp.asarray(x))
    )
    for field in ("W", "U", "b"):
        np.testing.assert_allclose(
            getattr(grad_layer.cell, field), expected[field], atol=1e-8
        )
    np.testing.assert_allclose(grad_x, expected["x"], atol=1e-8)


def test_deq_layer_under_vmap_reports_each_solve():
    cell = tanh_cell()
    layer = ax.DEQ(cell, (N,), solver=ax.Anderson(rtol=1e-12))
    xs = jnp.asarray(np.random.default_rng(2).normal(size=(4, P)))
    solutions = jax.vmap(layer.solve)(xs)
    for i in range(4):
        z_star, _ = deq_closed_form(cell, np.asarray(xs[i]))
        np.testing.assert_allclose(solutions.value[i], z_star, atol=1e-10)
    assert solutions.stats.num_steps.shape == (4,)
    assert bool(jnp.all(solutions.stats.converged))


# ------------------------------------------------- roots, non-symmetric Jacobian

# F(z, θ) = M z + 0.1 z³ - θ with M = 3 I + (a skew-symmetric part): the
# Jacobian M + 0.3 diag(z²) is not symmetric.
_S = RNG.normal(size=(N, N))
M = 3 * np.eye(N) + (_S - _S.T)
RHS = RNG.normal(size=N)


def cubic(z, theta):
    return jnp.asarray(M) @ z + 0.1 * z**3 - theta


def cubic_root():
    z = np.zeros(N)
    for _ in range(50):  # NumPy's Newton iteration, to machine precision
        z = z - np.linalg.solve(M + 0.3 * np.diag(z**2), M @ z + 0.1 * z**3 - RHS)
    return z


@pytest.mark.parametrize(
    "strategy",
    [
        ax.Implicit(),
        ax.Implicit(linear_solver=lx.BiCGStab(rtol=1e-12, atol=1e-12)),
        ax.Unrolled(),
    ],
    ids=repr,
)
def test_root_find_with_a_non_symmetric_jacobian(strategy):
    z = cubic_root()
    jacobian = M + 0.3 * np.diag(z**2)
    assert not np.allclose(jacobian, jacobian.T)
    expected = np.linalg.solve(jacobian.T, C)  # d(c·z*)/dθ = J⁻ᵀ c

    def loss(theta):
        sol = ax.root_find(cubic, jnp.zeros(N), theta, hypergradient=strategy)
        return jnp.asarray(C) @ sol.value

    sol = ax.root_find(cubic, jnp.zeros(N), jnp.asarray(RHS))
    np.testing.assert_allclose(sol.value, z, atol=1e-12)
    assert int(sol.stats.num_steps) <= 10  # quadratic convergence
    np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(RHS)), expected, atol=1e-8)


def test_implicit_with_cg_refuses_a_root_problem():
    def loss(theta):
        sol = ax.root_find(
            cubic,
            jnp.zeros(N),
            theta,
            hypergradient=ax.Implicit(linear_solver=lx.CG(rtol=1e-8, atol=1e-8)),
        )
        return jnp.sum(sol.value)

    with pytest.raises(ValueError, match="needs a symmetric system"):
        jax.grad(loss)(jnp.asarray(RHS))


# ------------------------------------------------------- failures are reported


def expanding(z, args):
    return 2.0 * z + 1.0


def test_non_convergent_iteration_is_reported_and_raised():
    solver = ax.FixedPointIteration(max_steps=30)
    sol = ax.fixed_point(expanding, jnp.zeros(2), None, solver=solver, throw=False)
    assert sol.result == ax.RESULTS.inner_max_steps
    assert not bool(sol.stats.converged)
    assert int(sol.stats.num_steps) == 30
    assert float(sol.stats.grad_norm) > float(sol.stats.initial_grad_norm)
    with pytest.raises(eqx.EquinoxRuntimeError, match="max_steps"):
        ax.fixed_point(expanding, jnp.zeros(2), None, solver=solver)


def test_non_finite_iterate_is_reported_and_raised():
    def logarithm(z, args):
        return jnp.log(z - 1.0)  # NaN from z0 = 0

    sol = ax.fixed_point(logarithm, jnp.zeros(2), None, throw=False)
    assert sol.result == ax.RESULTS.inner_nonfinite
    with pytest.raises(eqx.EquinoxRuntimeError, match="NaN or inf"):
        ax.fixed_point(logarithm, jnp.zeros(2), None)


def test_singular_newton_step_is_reported():
    def flat(z, args):
        return jnp.zeros_like(z) * z + 1.0  # zero Jacobian, no root

    sol = ax.root_find(flat, jnp.zeros(2), None, throw=False)
    assert sol.result == ax.RESULTS.inner_nonfinite


# ------------------------------------------------------------------ bad input


def test_map_with_the_wrong_shape_names_t():
    with pytest.raises(ValueError, match=r"`T\(z, args\)` must return an array of"):
        ax.fixed_point(lambda z, a: jnp.concatenate([z, z]), jnp.zeros(3), None)


def test_map_with_the_wrong_dtype_or_structure_names_it():
    with pytest.raises(ValueError, match=r"`T\(z, args\)` must return the dtype"):
        ax.fixed_point(lambda z, a: z.astype(jnp.float32), jnp.zeros(3), None)
    with pytest.raises(ValueError, match=r"`T\(z, args\)` must return a pytree"):
        ax.fixed_point(lambda z, a: (z, z), jnp.zeros(3), None)
    with pytest.raises(ValueError, match=r"`fn\(z, args\)` must return an array"):
        ax.root_find(lambda z, a: jnp.sum(z), jnp.zeros(3), None)


def test_minimiser_or_wrong_strategy_is_refused():
    with pytest.raises(TypeError, match="must be a root solver"):
        ax.fixed_point(affine, jnp.zeros(N), THETA, solver=ax.LBFGS())
    with pytest.raises(ValueError, match="GradientFlowAdjoint"):
        ax.fixed_point(
            affine,
            jnp.zeros(N),
            THETA,
            hypergradient=ax.GradientFlowAdjoint(),
        )
    with pytest.raises(ValueError, match="memory"):
        ax.Anderson(memory=0)


# ------------------------------------------------------------------- float32


def test_deq_defaults_in_float32():
    # JAX's default dtype with every default as shipped: Anderson, Implicit
    # (GMRES at the float32 tolerance); the gradient agrees with the closed form
    # to float32 accuracy.
    cell64 = tanh_cell()
    x = np.array([0.5, -1.0, 0.25])
    _, expected = deq_closed_form(cell64, x)
    with jax.enable_x64(False):
        cell = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), cell64)
        layer = ax.DEQ(cell, (N,))
        sol = layer.solve(jnp.asarray(x, jnp.float32))
        assert sol.value.dtype == jnp.float32 and bool(sol.stats.converged)
        grad = eqx.filter_grad(lambda layer: jnp.asarray(C, jnp.float32) @ layer(x))(
            layer
        )
    np.testing.assert_allclose(grad.cell.W, expected["W"], rtol=2e-3, atol=2e-4)
