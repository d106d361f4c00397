"""Preconditioners of `Implicit`'s backward solve: what each does to the CG
iterations, that none changes the hypergradient, and that a declined one is
reported (`LinearSolveInfo.preconditioned`).

The 4DVar case is the one of issue 16: heat 1D on 64 points, a strongly
correlated `DiffusionBackground` (length scale 8 grid points), direct control,
L-BFGS inner solve. Its Hessian has condition ~4e3, set by ``B⁻¹``.
"""

import functools

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import assimilax as ax
from assimilax.bilevel import (
    LBFGS,
    LBFGSPreconditioner,
    NoPreconditioner,
    OperatorPreconditioner,
)
from assimilax.costs import (
    BackgroundPreconditioner,
    ControlVariable,
    StrongConstraint4DVar,
    WeakConstraint4DVar,
)
from assimilax.dynamics import Heat1D, Heat2D
from assimilax.observations import Mask, Observations, ScalarNoise, Stations
from assimilax.priors import DiffusionBackground
from helpers import rel_error, spd_matrix


N = 64
GRID = np.arange(N) / N
TRUTH = jnp.asarray(
    np.sin(2 * np.pi * GRID)
    + 0.5 * np.cos(6 * np.pi * GRID)
    + 0.3 * np.sin(10 * np.pi * GRID)
)
# CG to 1e-8: the hypergradients of two solves then agree to ~1e-7 relative
# (condition 4e3 times the residual), the margin of the comparisons below.
CG = lx.CG(rtol=1e-8, atol=1e-8, max_steps=1000)
INNER = LBFGS(rtol=1e-9, max_steps=2000)


@functools.cache
def heat_problem(length_scale: float = 8.0, control=None) -> StrongConstraint4DVar:
    """Heat 1D twin: every 4th point observed at 5 times, noise 0.05."""
    model = Heat1D(n=N, kappa=0.5 / (4 * np.pi**2))
    times = jnp.asarray(0.05 * np.arange(5))
    operator = Stations.every(4, N)
    truth = model.integrate(TRUTH, times)
    noise = 0.05 * jax.random.normal(jax.random.key(0), (5, N // 4))
    obs = Observations(
        jax.vmap(operator)(truth) + noise, None, times, operator, ScalarNoise(0.05)
    )
    xb = TRUTH + jnp.asarray(0.3 * np.sin(4 * np.pi * GRID + 1.0))
    background = DiffusionBackground(xb, 0.3, length_scale)
    extra = {} if control is None else {"control": control}
    return StrongConstraint4DVar(model, obs, background, t0=0.0, **extra)


def cost(x, problem):
    return problem.cost(x)


def analysis_error(x, problem):
    return 0.5 * jnp.sum((problem.to_state(x) - TRUTH) ** 2)


def heat_hypergradient(preconditioner, problem=None):
    """``(d loss / d (std, length_scale), LinearSolveInfo)`` of the heat case."""
    problem = heat_problem() if problem is None else problem
    strategy = ax.Implicit(linear_solver=CG, preconditioner=preconditioner)
    _, grads, _, info = ax.value_and_hypergrad(
        analysis_error,
        cost,
        problem.first_guess(),
        problem,
        solver=INNER,
        hypergradient=strategy,
    )
    assert bool(info.inner.converged)
    assert not bool(info.linear.failed)
    grad = jnp.stack([grads.background.std, grads.background.length_scale])
    return grad, info.linear


@functools.cache
def heat_reference():
    return heat_hypergradient(NoPreconditioner())


# --- OperatorPreconditioner --------------------------------------------------------


def test_operator_preconditioner_with_the_exact_inverse():
    n = 30
    hessian = spd_matrix(n, 1e4)
    inverse = jnp.linalg.inv(hessian)
    theta = jnp.asarray(np.random.default_rng(1).normal(size=n))

    def quadratic(x, t):
        return 0.5 * x @ (hessian @ x) - t @ x

    def outer_loss(x, t):
        del t
        return 0.5 * jnp.sum((x - 1.0) ** 2)

    def make(x, args):
        del x, args
        tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)
        return lx.MatrixLinearOperator(inverse, tags)

    # x* = A^{-1} theta and dL/dtheta = A^{-1} (x* - 1).
    exact = np.linalg.solve(hessian, np.linalg.solve(hessian, theta) - 1.0)
    results = {}
    for preconditioner in (NoPreconditioner(), OperatorPreconditioner(make)):
        strategy = ax.Implicit(linear_solver=CG, preconditioner=preconditioner)
        _, grad, _, info = ax.value_and_hypergrad(
            outer_loss,
            quadratic,
            jnp.zeros(n),
            theta,
            solver=LBFGS(rtol=1e-10, max_steps=2000),
            hypergradient=strategy,
        )
        results[type(preconditioner).__name__] = (grad, info.linear)
    plain, plain_info = results["NoPreconditioner"]
    exact_grad, exact_info = results["OperatorPreconditioner"]
    assert not bool(plain_info.preconditioned)
    assert bool(exact_info.preconditioned)
    # Condition 1e4 on 30 points: plain CG needs ~30 iterations; with A^{-1} as
    # the preconditioner the first step is the solution (a second may run while
    # lineax's step-size test catches up).
    assert int(plain_info.num_steps) >= 20
    assert int(exact_info.num_steps) <= 2
    # Inner gradient 1e-10 relative, CG to 1e-8, condition 1e4.
    assert rel_error(exact_grad, exact) <= 1e-6
    assert rel_error(exact_grad, plain) <= 1e-6


# --- LBFGSPreconditioner on the heat 4DVar -----------------------------------------


def test_lbfgs_memory_alone_slows_cg_on_heat_4dvar():
    # The diagnosis of issue 16: applied unchecked, the L-BFGS memory costs CG
    # iterations here (measured 75 -> 116).
    grad, info = heat_hypergradient(LBFGSPreconditioner(checked=False))
    reference, reference_info = heat_reference()
    assert bool(info.preconditioned)
    assert int(info.num_steps) >= 1.3 * int(reference_info.num_steps)
    assert rel_error(grad, reference) <= 1e-6


def test_lbfgs_preconditioner_falls_back_on_heat_4dvar():
    grad, info = heat_hypergradient(LBFGSPreconditioner())
    reference, reference_info = heat_reference()
    # Plain CG wins the race: its solution is returned, and the diagnostics say
    # that no preconditioner was applied.
    assert not bool(info.preconditioned)
    assert int(info.num_steps) <= int(reference_info.num_steps)
    # The plain run repeats lx.CG's iteration, so the numbers are lx.CG's.
    assert rel_error(grad, reference) <= 1e-12


def test_lbfgs_preconditioner_under_vmap():
    # A batch in which the race may end differently per member.
    n = 16
    hessian = spd_matrix(n, 1e3)

    def quadratic(x, t):
        return 0.5 * x @ (hessian @ x) - t @ x

    def loss(t, preconditioner):
        strategy = ax.Implicit(linear_solver=CG, preconditioner=preconditioner)
        x = ax.argmin(
            quadratic, jnp.zeros(n), t, solver=LBFGS(rtol=1e-11), hypergradient=strategy
        ).value
        return 0.5 * jnp.sum((x - 1.0) ** 2)

    thetas = jnp.asarray(np.random.default_rng(2).normal(size=(2, n)))
    grads = {
        name: jax.jit(jax.vmap(jax.grad(functools.partial(loss, preconditioner=p))))(
            thetas
        )
        for name, p in (("none", NoPreconditioner()), ("lbfgs", LBFGSPreconditioner()))
    }
    # CG to 1e-8 with condition 1e3 on both sides.
    assert rel_error(grads["lbfgs"], grads["none"]) <= 1e-6


# --- BackgroundPreconditioner ----------------------------------------------------


def test_background_preconditioner_cuts_iterations_on_correlated_b():
    grad, info = heat_hypergradient(BackgroundPreconditioner())
    reference, reference_info = heat_reference()
    assert bool(info.preconditioned)
    # B^{-1} dominates the Hessian (condition ~4e3); preconditioned by B it is
    # I plus a term of low effective rank. Measured 75 -> 17.
    assert int(info.num_steps) <= int(reference_info.num_steps) // 2
    # Both solves to 1e-8 relative with condition ~4e3.
    assert rel_error(grad, reference) <= 1e-6


def test_background_preconditioner_raced_where_it_costs_iterations():
    # Heat 2D, 12x12, 40% of the points observed at 5 times (the initial one
    # included) with noise 0.05 against a background std of 0.3: the observation
    # term preconditioned by B is large and of high rank, and B costs iterations
    # (measured 75 -> 81 with CG to 1e-6). Raced, plain CG wins.
    side = 12
    grid = np.arange(side) / side
    x, y = np.meshgrid(grid, grid, indexing="ij")
    truth = jnp.asarray(np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y))
    model = Heat2D(shape=(side, side), kappa=0.01)
    mask = Mask(jnp.asarray(np.random.default_rng(0).random((side, side)) < 0.4))
    times = jnp.asarray(0.025 * np.arange(5))
    states = jax.vmap(mask)(model.integrate(truth, times))
    noise = 0.05 * jax.random.normal(jax.random.key(1), states.shape)
    obs = Observations(states + noise, None, times, mask, ScalarNoise(0.05))
    background = DiffusionBackground(truth + 0.3, 0.3, 1.5)
    problem = StrongConstraint4DVar(model, obs, background, t0=0.0)
    steps = {}
    for name, preconditioner in (
        ("none", NoPreconditioner()),
        ("B", BackgroundPreconditioner()),
        ("raced", BackgroundPreconditioner(checked=True)),
    ):
        strategy = ax.Implicit(
            linear_solver=lx.CG(rtol=1e-6, atol=1e-6), preconditioner=preconditioner
        )
        _, _, _, info = ax.value_and_hypergrad(
            lambda x, p: 0.5 * jnp.sum((x - truth) ** 2),
            cost,
            problem.first_guess(),
            problem,
            solver=INNER,
            hypergradient=strategy,
        )
        steps[name] = (int(info.linear.num_steps), bool(info.linear.preconditioned))
    assert steps["B"][0] > steps["none"][0] and steps["B"][1]
    assert steps["raced"] == (steps["none"][0], False)


def test_background_preconditioner_with_control_variable_is_none():
    problem = heat_problem(control=ControlVariable())
    _, info = heat_hypergradient(BackgroundPreconditioner(), problem)
    assert not bool(info.preconditioned)


def test_background_preconditioner_needs_the_problem_as_args():
    strategy = ax.Implicit(preconditioner=BackgroundPreconditioner())
    with pytest.raises(TypeError, match="needs `args` to be the variational problem"):
        ax.value_and_hypergrad(
            lambda x, a: jnp.sum(x),
            lambda x, a: jnp.sum((x - a) ** 2),
            jnp.zeros(3),
            jnp.ones(3),
            solver=LBFGS(),
            hypergradient=strategy,
        )
    problem = heat_problem()
    weak = WeakConstraint4DVar(
        problem.dynamics, problem.observations, problem.background, 0.1, t0=0.0
    )
    with pytest.raises(TypeError, match="got WeakConstraint4DVar"):
        ax.value_and_hypergrad(
            lambda x, p: jnp.sum(x),
            cost,
            weak.first_guess(),
            weak,
            solver=LBFGS(max_steps=2),
            hypergradient=strategy,
            throw=False,
        )
