"""The outer step shared by the strategies that `jax.grad` differentiates
directly (`Unrolled`, `Truncated`, `FiniteDifference`, `GradientFlowAdjoint`)."""

import equinox as eqx

from ..._custom_types import Args, Objective, Scalar, X
from .._iterate import stop_gradient_tree
from .._outer_state import HypergradInfo, OuterState, reference_residual
from .._solve import solve
from .._solvers._base import AbstractInnerSolver


def reverse_value_and_grad(
    strategy: eqx.Module,
    outer_loss,
    fn: Objective,
    x0: X,
    args: Args,
    solver: AbstractInnerSolver,
    state: OuterState | None,
    throw: bool,
) -> tuple[Scalar, Args, OuterState, HypergradInfo]:
    """Reverse mode through the strategy's own solve: ``(loss, grads, state,
    info)`` as `AbstractHypergradient.value_and_grad` returns them."""

    def loss_of(a):
        sol = solve(fn, x0, a, solver, strategy, throw)
        return outer_loss(sol.value, a), sol

    (loss, sol), grads = eqx.filter_value_and_grad(loss_of, has_aux=True)(args)
    x = stop_gradient_tree(sol.value)
    new_state = OuterState(x=x, reference_residual=reference_residual(state, sol.stats))
    return loss, grads, new_state, HypergradInfo(sol.result, sol.stats, None)
