"""`value_and_hypergrad`: one stateful outer step, with warm starts."""

import equinox as eqx

from .._custom_types import Args, Objective, Scalar, X
from .._structure import by_structure
from ._argmin import check_strategy_pair
from ._hypergradients._base import AbstractHypergradient, OuterLoss
from ._hypergradients._implicit import Implicit
from ._outer_state import HypergradInfo, OuterState, with_reference
from ._solvers._base import AbstractInnerSolver


def value_and_hypergrad(
    outer_loss: OuterLoss,
    fn: Objective,
    x0: X,
    args: Args,
    *,
    solver: AbstractInnerSolver,
    hypergradient: AbstractHypergradient = Implicit(),
    state: OuterState | None = None,
    throw: bool = True,
) -> tuple[Scalar, Args, OuterState, HypergradInfo]:
    """``L(args) = outer_loss(x*(args), args)`` and its gradient, with warm starts.

    **Arguments:**

    - `outer_loss`: ``(x, args) -> scalar``.
    - `fn`, `x0`, `args`, `solver`, `hypergradient`, `throw`: as for `argmin`.
    - `state`: the `OuterState` returned by the previous call (`None` at the first);
      the inner solve starts from ``state.x`` instead of `x0`, and `Implicit`'s
      backward solve from ``state.adjoints`` when its ``warm_start=True``. Except
      for the strategies that differentiate the whole iteration from `x0`
      (`Unrolled`, `ForwardMode`): their inner solve always starts from `x0`, since
      from a converged ``state.x`` it would take no step and their hypergradient
      would be zero. (`Truncated` is warm-started: its last ``k`` steps always
      run.)

    **Returns:** ``(loss, grads, new_state, info)`` where `grads` has the structure
    of `args` (`None` on non-floating leaves) and `info` is a `HypergradInfo`.

    Values that `fn` closes over are treated as constants here: pass everything you
    want a gradient for through `args`. The step itself is the strategy's
    (`AbstractHypergradient.value_and_grad`).
    """
    check_strategy_pair(solver, hypergradient)
    # Keyed by structure: an equal, freshly built `fn` or `outer_loss` reuses
    # the compiled step.
    return _value_and_hypergrad(
        by_structure(outer_loss),
        by_structure(fn),
        x0,
        args,
        solver=solver,
        hypergradient=hypergradient,
        state=state,
        throw=throw,
    )


@eqx.filter_jit
def _value_and_hypergrad(
    outer_loss, fn, x0, args, *, solver, hypergradient, state, throw
):
    if state is not None and hypergradient.warm_starts_inner:
        x0 = state.x
        solver = with_reference(solver, state.reference_residual)
    return hypergradient.value_and_grad(
        outer_loss, fn, x0, args, solver=solver, state=state, throw=throw
    )
