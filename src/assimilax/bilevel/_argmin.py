"""`argmin`: the minimiser of ``fn(x, args)``, differentiable w.r.t. ``args``."""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu

from .._custom_types import Args, IntScalar, Objective, X
from .._results import RESULTS
from ._checks import check_finite_x0, check_objective, check_x0
from ._hypergradients._base import AbstractHypergradient
from ._hypergradients._implicit import Implicit
from ._iterate import stop_gradient_tree
from ._solution import Solution, Stats
from ._solvers._base import AbstractInnerSolver, InnerState


def check_strategy_pair(solver: object, hypergradient: object) -> None:
    """Type-check the solver and strategy objects and reject incompatible pairs."""
    if not isinstance(solver, AbstractInnerSolver):
        raise TypeError(
            "`solver` must be an inner solver object such as GradientDescent() or "
            f"LBFGS(); got {solver!r}."
        )
    if not isinstance(hypergradient, AbstractHypergradient):
        raise TypeError(
            "`hypergradient` must be a strategy object such as Implicit(), "
            f"Unrolled() or Truncated(k=10); got {hypergradient!r}."
        )
    hypergradient.check_compatible(solver)


def prepare(fn: Objective, x0: X, args: Args, solver: AbstractInnerSolver):
    """Validate inputs; return ``(fn, x0)`` with `fn` closure-converted.

    Closure conversion turns values that `fn` closes over into pytree leaves, so the
    custom-derivative strategies differentiate w.r.t. them too instead of silently
    treating them as constants.
    """
    check_x0(x0)
    x0 = jtu.tree_map(jnp.asarray, x0)
    check_objective(fn, x0, args)
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


@eqx.filter_jit
def argmin(
    fn: Objective,
    x0: X,
    args: Args = None,
    *,
    solver: AbstractInnerSolver,
    hypergradient: AbstractHypergradient = Implicit(),
    throw: bool = True,
) -> Solution:
    """Minimise ``fn(x, args)`` over ``x``; the minimiser is differentiable in ``args``.

    **Arguments:**

    - `fn`: the inner objective ``fn(x, args) -> scalar``.
    - `x0`: the initial iterate, any pytree of floating arrays (shape ``"state"``).
    - `args`: the parameters, any pytree (Equinox modules included). Derivatives of
      ``sol.value`` w.r.t. its floating arrays (and values `fn` closes over) follow
      the `hypergradient` strategy.
    - `solver`: an inner solver, e.g. `GradientDescent()`, `LBFGS()`.
    - `hypergradient`: a strategy, e.g. `Implicit()` (default), `Unrolled()`,
      `Truncated(k)`, `ForwardMode()`, `FiniteDifference()`.
    - `throw`: raise if the inner solve did not converge or produced NaN/inf (and,
      for `Implicit`, if the backward linear solve fails). With `throw=False`
      inspect `sol.result` and `sol.stats`.

    **Returns:** a `Solution` with `.value` (same pytree as `x0`), `.result`,
    `.stats` and `.state`.

    **Raises:** `TypeError`/`ValueError` for a wrong solver or strategy object, an
    incompatible pair, a non-scalar `fn`, an `x0` that `fn` does not accept or that
    is not floating point; a runtime error for NaN/inf in `x0` and (with
    `throw=True`) for a failed solve.
    """
    check_strategy_pair(solver, hypergradient)
    fn, x0 = prepare(fn, x0, args, solver)
    x, state, num_steps = hypergradient.solve(fn, solver, x0, args, throw=throw)
    state = stop_gradient_tree(state)
    result, stats = summarise(solver, stop_gradient_tree(x), state, num_steps)
    solution = Solution(value=x, result=result, stats=stats, state=state)
    if throw:
        solution = result.error_if(solution, result != RESULTS.successful)
    return solution
