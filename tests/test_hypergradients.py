"""Every hypergradient strategy against closed-form hypergradients (float64)."""

import diffrax as dfx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import assimilax as ax
from helpers import rel_error
from problems import closed_form_problems


PROBLEMS = closed_form_problems()
TIGHT_CG = dict(rtol=1e-12, atol=1e-12)

# (id, strategy, tolerance). Unrolled/Truncated/ForwardMode differentiate a
# converged gradient-descent iteration (its derivative converges like the iterate,
# to ~1e-10 here); the implicit solves run to 1e-12; finite-difference HVPs lose
# about half the digits (step 1e-6), finite differences of the solution ~1e-9.
STRATEGIES = [
    ("unrolled", ax.Unrolled(), 1e-6),
    ("unrolled_checkpointed", ax.Unrolled(checkpoint_every=64), 1e-6),
    ("truncated_k_eq_T", None, 1e-6),  # Truncated(k=max_steps), built per problem
    ("forward", ax.ForwardMode(), 1e-6),
    ("implicit_cg", ax.Implicit(linear_solver=lx.CG(**TIGHT_CG)), 1e-6),
    ("implicit_gmres", ax.Implicit(linear_solver=lx.GMRES(**TIGHT_CG)), 1e-6),
    ("implicit_bicgstab", ax.Implicit(linear_solver=lx.BiCGStab(**TIGHT_CG)), 1e-6),
    (
        "implicit_neumann",
        ax.Implicit(linear_solver=ax.bilevel.Neumann(num_terms=4000)),
        1e-6,
    ),
    ("implicit_dense_lu", ax.Implicit(linear_solver=lx.LU()), 1e-6),
    (
        "implicit_fd_hvp",
        ax.Implicit(
            linear_solver=lx.CG(rtol=1e-9, atol=1e-9),
            hvp=ax.bilevel.FiniteDifferenceHVP(),
        ),
        1e-6,
    ),
    ("finite_difference", ax.FiniteDifference(eps=1e-5), 1e-5),
    # GradientFlow to steady state (t1 = 40 / mu), continuous adjoint with tight
    # adaptive steps; built per problem.
    ("gradient_flow_adjoint", None, 1e-6),
    ("gradient_flow_implicit", None, 1e-6),
]


def _solver(problem, max_steps=3000):
    return ax.GradientDescent(
        learning_rate=1.0 / problem.lipschitz, max_steps=max_steps, rtol=1e-13
    )


def _gradient_flow(problem, name):
    # Steady state: the slowest mode decays like exp(-mu t); t1 = 40 / mu leaves
    # exp(-40) ~ 4e-18 of it.
    shape = problem.x0.shape
    hessian = jax.hessian(lambda v: problem.fn(v.reshape(shape), problem.args))(
        jnp.ravel(problem.x0)
    )
    mu = float(np.linalg.eigvalsh(np.asarray(hessian)).min())
    t1 = 40.0 / mu
    dt = 1.0 / problem.lipschitz
    if name == "gradient_flow_adjoint":
        solver = ax.GradientFlow(t1=t1, dt=dt)
        controller = dfx.PIDController(rtol=1e-11, atol=1e-11)
        return solver, ax.GradientFlowAdjoint(stepsize_controller=controller)
    # The generic path: fixed steps of Tsit5 until the gradient test holds.
    solver = ax.GradientFlow(t1=t1, dt=dt, max_steps=int(np.ceil(t1 / dt)), rtol=1e-13)
    strategy = ax.Implicit(linear_solver=lx.CG(**TIGHT_CG))
    return solver, strategy


# `GradientFlowAdjoint` compiles an adaptive diffrax solve and its adjoint per
# problem (~7 s each): one problem in the default suite, every problem in CI's
# slow part.
_GRADIENT_FLOW_ADJOINT_DEFAULT = ("tikhonov1d_scalar",)


def _cases():
    for name, strategy, tol in STRATEGIES:
        for problem in PROBLEMS:
            slow = (
                name == "gradient_flow_adjoint"
                and problem.name not in _GRADIENT_FLOW_ADJOINT_DEFAULT
            )
            yield pytest.param(
                problem,
                name,
                strategy,
                tol,
                id=f"{name}-{problem.name}",
                marks=[pytest.mark.slow] if slow else [],
            )


@pytest.mark.parametrize("problem, name, strategy, tol", list(_cases()))
def test_matches_closed_form(problem, name, strategy, tol):
    solver = _solver(problem)
    if name == "truncated_k_eq_T":
        strategy = ax.Truncated(k=solver.max_steps)
    elif name.startswith("gradient_flow"):
        solver, strategy = _gradient_flow(problem, name)

    def loss(args):
        sol = ax.argmin(
            problem.fn, problem.x0, args, solver=solver, hypergradient=strategy
        )
        return problem.outer(sol.value, args)

    differentiate = jax.jacfwd if isinstance(strategy, ax.ForwardMode) else jax.grad
    grad = jax.jit(differentiate(loss))(problem.args)
    assert rel_error(grad, problem.exact) <= tol


def test_truncation_bias_bound():
    # U = 0.5 x'Ax - theta'x, eigenvalues in [0.1, 1], step 1/L = 1: the relative
    # error of Truncated(k) against full unrolling is at most (1 - mu/L)^k.
    rng = np.random.default_rng(3)
    n = 20
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eig = np.linspace(0.1, 1.0, n)
    A = jnp.asarray((q * eig) @ q.T)
    theta = jnp.asarray(rng.normal(size=n))
    target = jnp.asarray(rng.normal(size=n))
    solver = ax.GradientDescent(learning_rate=1.0, max_steps=400, rtol=0.0)

    def fn(x, th):
        return 0.5 * x @ (A @ x) - th @ x

    def hypergrad(strategy):
        def loss(th):
            # rtol=0: a fixed T=400 steps, reported as unconverged, hence throw=False.
            x = ax.argmin(
                fn, jnp.zeros(n), th, solver=solver, hypergradient=strategy, throw=False
            )
            return 0.5 * jnp.sum((x.value - target) ** 2)

        return jax.jit(jax.grad(loss))(theta)

    full = hypergrad(ax.Unrolled())
    for k in (1, 2, 5, 10, 20, 50, 100):
        error = rel_error(hypergrad(ax.Truncated(k=k)), full)
        assert error < (1 - 0.1 / 1.0) ** k, (k, error)
    # And the bound is not vacuous: k=1 really is biased.
    assert rel_error(hypergrad(ax.Truncated(k=1)), full) > 0.1
