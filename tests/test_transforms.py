"""jit, vmap over a batch of 8 problems, and Equinox-module parameters, per strategy."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from jaxtyping import Array, Float

import assimilax as ax
from helpers import rel_error


N = 10


class Denoiser(eqx.Module):
    """Tikhonov parameters as a module: a learnable weight and a fixed signal."""

    log_lam: Float[Array, ""]
    noisy: Float[Array, " n"]
    name: str = eqx.field(static=True, default="tikhonov")


def fn(x, params: Denoiser):
    lam = jnp.exp(params.log_lam)
    return 0.5 * jnp.sum((x - params.noisy) ** 2) + 0.5 * lam * jnp.sum(
        jnp.diff(x) ** 2
    )


def exact_grad(params: Denoiser, target):
    """d/d log_lam of 0.5|x* - target|^2, closed form with H = I + lam D'D."""
    D = np.eye(N - 1, N, k=1) - np.eye(N - 1, N)
    lam = float(np.exp(params.log_lam))
    H = np.eye(N) + lam * D.T @ D
    xs = np.linalg.solve(H, np.asarray(params.noisy))
    adj = np.linalg.solve(H, xs - np.asarray(target))
    return -lam * (D @ xs) @ (D @ adj)


SOLVER = ax.GradientDescent(learning_rate=1.0 / 9.0, max_steps=1500, rtol=1e-13)
STRATEGIES = [
    ax.Implicit(linear_solver=lx.CG(rtol=1e-12, atol=1e-12)),
    ax.Unrolled(),
    ax.Unrolled(checkpoint_every=40),
    ax.Truncated(k=1500),
    ax.ForwardMode(),
    ax.FiniteDifference(),
]


# H = I + lam D'D has eigenvalues in [1, 1 + 4 lam]: t1 = 40 reaches steady state.
FLOW = (
    ax.GradientFlow(t1=40.0, dt=0.1),
    ax.GradientFlowAdjoint(
        stepsize_controller=dfx.PIDController(rtol=1e-11, atol=1e-11)
    ),
)
PAIRS = [(SOLVER, s) for s in STRATEGIES] + [FLOW]


@pytest.mark.parametrize("solver, strategy", PAIRS, ids=lambda s: type(s).__name__)
def test_jit_vmap_module_args(solver, strategy):
    rng = np.random.default_rng(0)
    batch = Denoiser(
        log_lam=jnp.asarray(rng.uniform(-1.0, 0.5, size=8)),
        noisy=jnp.asarray(rng.normal(size=(8, N))),
    )
    targets = jnp.asarray(rng.normal(size=(8, N)))

    def loss(params, target):
        sol = ax.argmin(fn, jnp.zeros(N), params, solver=solver, hypergradient=strategy)
        return 0.5 * jnp.sum((sol.value - target) ** 2)

    if isinstance(strategy, ax.ForwardMode):
        differentiate = eqx.filter_jacfwd(loss)
    else:
        differentiate = eqx.filter_grad(loss)
    grads = jax.jit(jax.vmap(differentiate))(batch, targets)
    assert isinstance(grads, Denoiser)
    tol = 1e-5 if isinstance(strategy, ax.FiniteDifference) else 1e-6
    for i in range(8):
        one = jax.tree_util.tree_map(lambda a: a[i], batch)
        assert rel_error(grads.log_lam[i], exact_grad(one, targets[i])) <= tol
        # The gradient w.r.t. the signal is right too (d x*/d y = H^{-1}).
        D = np.eye(N - 1, N, k=1) - np.eye(N - 1, N)
        H = np.eye(N) + float(np.exp(one.log_lam)) * D.T @ D
        xs = np.linalg.solve(H, np.asarray(one.noisy))
        expected = np.linalg.solve(H, xs - np.asarray(targets[i]))
        assert rel_error(grads.noisy[i], expected) <= tol


def test_closed_over_parameters_are_differentiated():
    # Values captured by `fn`'s closure are differentiated too (closure conversion),
    # not silently treated as constants by the custom-derivative strategies.
    def loss(y):
        def closure(x, _):
            return 0.5 * jnp.sum((x - y) ** 2) + 0.5 * jnp.sum(jnp.diff(x) ** 2)

        sol = ax.argmin(closure, jnp.zeros(N), None, solver=SOLVER)
        return jnp.sum(sol.value)

    y = jnp.linspace(0.0, 1.0, N)
    # d/dy sum(H^{-1} y) = H^{-1} 1 = 1 (H has 1 in its null-space complement).
    np.testing.assert_allclose(jax.grad(loss)(y), np.ones(N), rtol=1e-8)


def test_forward_mode_refuses_reverse_mode():
    params = Denoiser(log_lam=jnp.asarray(0.0), noisy=jnp.ones(N))

    def loss(p):
        sol = ax.argmin(
            fn, jnp.zeros(N), p, solver=SOLVER, hypergradient=ax.ForwardMode()
        )
        return jnp.sum(sol.value)

    with pytest.raises(ValueError, match="Reverse-mode differentiation does not work"):
        eqx.filter_grad(loss)(params)


def test_dtype_is_preserved():
    # float32 in, float32 out, for every strategy (precision follows the inputs).
    x0 = jnp.zeros(N, dtype=jnp.float32)
    params = Denoiser(
        log_lam=jnp.asarray(0.0, jnp.float32), noisy=jnp.ones(N, jnp.float32)
    )
    solver = ax.GradientDescent(learning_rate=0.1, max_steps=300, rtol=1e-4)
    for strategy in STRATEGIES:
        strategy = ax.Implicit() if isinstance(strategy, ax.Implicit) else strategy
        if isinstance(strategy, ax.Truncated):
            strategy = ax.Truncated(k=10)
        sol = ax.argmin(fn, x0, params, solver=solver, hypergradient=strategy)
        assert sol.value.dtype == jnp.float32, strategy
        if isinstance(strategy, ax.ForwardMode):
            continue
        grads = eqx.filter_grad(
            lambda p: jnp.sum(
                ax.argmin(fn, x0, p, solver=solver, hypergradient=strategy).value
            )
        )(params)
        assert grads.log_lam.dtype == jnp.float32, strategy
