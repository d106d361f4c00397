"""The pieces of an inner solve that `argmin` and the strategies' outer steps share.

Kept apart from `_argmin.py` (which names the default strategy) so that the
hypergradient strategies can run a whole solve without importing the entry point.
"""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu

from .._custom_types import Args, IntScalar, Objective, X
from .._results import RESULTS
from ._checks import check_finite_x0, check_x0
from ._iterate import stop_gradient_tree
from ._solution import Solution, Stats
from ._solvers._base import AbstractInnerSolver, InnerState


def prepare(fn: Objective, x0: X, args: Args, solver: AbstractInnerSolver):
    """Validate inputs; return ``(fn, x0)`` with `fn` closure-converted.

    Closure conversion turns values that `fn` closes over into pytree leaves, so the
    custom-derivative strategies differentiate w.r.t. them too instead of silently
    treating them as constants.
    """
    check_x0(x0)
    x0 = jtu.tree_map(jnp.asarray, x0)
    solver.check_problem(fn, x0, args)
    solver.check_objective(fn, x0, args)
    x0 = check_finite_x0(x0)
    return eqx.filter_closure_convert(fn, x0, args), x0


def summarise(
    solver: AbstractInnerSolver, x: X, state: InnerState, num_steps: IntScalar
) -> tuple[RESULTS, Stats]:
    """Result code and statistics of a finished inner solve."""
    converged = solver.converged(state)
    finite = jnp.isfinite(state.residual) & jnp.isfinite(state.value)
    for leaf in jtu.tree_leaves(x):
        finite = finite & jnp.all(jnp.isfinite(leaf))
    result = RESULTS.where(
        finite,
        RESULTS.where(converged, RESULTS.successful, RESULTS.inner_max_steps),
        RESULTS.inner_nonfinite,
    )
    stats = Stats(
        converged=converged & finite,
        num_steps=num_steps,
        max_steps=solver.max_steps,
        grad_norm=state.residual,
        initial_grad_norm=state.residual0,
        value=state.value,
    )
    return result, stats


def solve(
    fn: Objective,
    x0: X,
    args: Args,
    solver: AbstractInnerSolver,
    hypergradient: eqx.Module,
    throw: bool,
) -> Solution:
    """`argmin` without its type checks: prepare, ``hypergradient.solve``, then
    the result code (raised with `throw`)."""
    fn, x0 = prepare(fn, x0, args, solver)
    x, state, num_steps = hypergradient.solve(fn, solver, x0, args, throw=throw)
    return finish(solver, x, stop_gradient_tree(state), num_steps, throw)


def finish(
    solver: AbstractInnerSolver,
    x: X,
    state: InnerState,
    num_steps: IntScalar,
    throw: bool,
) -> Solution:
    """The `Solution` of a finished inner solve (`x` may carry derivatives; its
    checks do not), its result code raised with `throw`."""
    result, stats = summarise(solver, stop_gradient_tree(x), state, num_steps)
    solution = Solution(value=x, result=result, stats=stats, state=state)
    if throw:
        solution = result.error_if(solution, result != RESULTS.successful)
    return solution


# What `argmin` runs for a strategy that needs nothing outside the compiled program
# (`AbstractHypergradient.argmin`'s default): the whole solve, one `filter_jit`.
solve_jit = eqx.filter_jit(solve)
