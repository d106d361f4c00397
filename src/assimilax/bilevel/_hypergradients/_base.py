"""The hypergradient interface: how `argmin` makes its minimiser differentiable,
and how an outer loop takes one stateful step with it."""

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx

from ..._custom_types import Args, IntScalar, Objective, Scalar, X
from .._outer_state import HypergradInfo, OuterState
from .._solution import Solution, Stats
from .._solve import solve_jit
from .._solvers._base import AbstractInnerSolver, InnerState
from ._reverse import reverse_value_and_grad


OuterLoss = Callable[[X, Args], Scalar]


class AbstractHypergradient(eqx.Module):
    """A way to differentiate ``x*(args) = argmin_x fn(x, args)`` w.r.t. ``args``.

    A strategy runs the inner solve (`solve`) such that JAX's autodiff of anything
    computed from its minimiser gives the hypergradient by that strategy, and owns
    the stateful outer step (`init_outer_state`, `value_and_grad`) that
    `value_and_hypergrad` and `fit` call: no code outside the strategies asks
    which strategy it holds, so a new strategy is one new class.

    **Class attributes a strategy may override:**

    - `warm_starts_inner`: `False` when the hypergradient is that of the whole
      iteration from ``x0`` (`Unrolled`, `ForwardMode`). `value_and_hypergrad` then
      starts the inner solve from ``x0``, never from ``OuterState.x``: from a
      converged warm start the iteration would take no step, and its derivative
      would be zero.
    - `warm_start_default`: whether `fit` warm-starts each window's inner solve
      from its last solution unless told otherwise. `True` for the strategies
      whose hypergradient holds at the minimiser wherever the solve starts
      (`Implicit`, `FiniteDifference`); `False` (the default) for those that
      differentiate the iterations, whose result depends on the start when the
      solve is stopped early.
    - `differentiates_solver`: `True` when `jax.grad` through `argmin` reaches
      the arrays of the solver itself (a learned solver's weights): the
      strategies that reverse-differentiate the iterations (`Unrolled`,
      `Truncated`). `False` (the default) for those whose derivative is that of
      the exact minimiser, which does not depend on the solver (`Implicit`), or
      that are not reverse mode (`ForwardMode`).
    """

    warm_starts_inner: ClassVar[bool] = True
    warm_start_default: ClassVar[bool] = False
    differentiates_solver: ClassVar[bool] = False

    @abc.abstractmethod
    def solve(
        self,
        fn: Objective,
        solver: AbstractInnerSolver,
        x0: X,
        args: Args,
        *,
        throw: bool,
    ) -> tuple[X, InnerState, IntScalar]:
        """Run the inner solve from ``x0``.

        **Returns:** ``(x, state, num_steps)``: the differentiable minimiser (same
        pytree as ``x0``), the final solver state (its arrays carry no derivative)
        and the number of steps taken, an integer scalar.
        """

    def argmin(
        self,
        fn: Objective,
        x0: X,
        args: Args,
        *,
        solver: AbstractInnerSolver,
        throw: bool,
    ) -> Solution:
        """The whole of `argmin` for this strategy (after its type checks).

        The default is one `eqx.filter_jit` program around `solve`. A strategy
        overrides it to keep part of its work outside that program (`Implicit`
        puts its custom VJP outside, so that a failed backward solve under an
        eager `jax.grad` is raised by a `filter_jit` of its own).
        """
        return solve_jit(fn, x0, args, solver, self, throw)

    def check_compatible(self, solver: AbstractInnerSolver) -> None:
        """Raise a `ValueError` naming both objects if this pair cannot work."""
        del solver

    def check_differentiable(self, solver: AbstractInnerSolver) -> None:
        """Raise a `ValueError` naming both objects if this pair can solve but not
        differentiate (checked when a derivative is taken; default: never)."""
        del solver

    def init_outer_state(self, x: X, stats: Stats) -> OuterState:
        """The outer state after a first (cold) inner solve that ended at ``x``
        with `stats`: what `fit` seeds each window's warm starts with. Its
        structure is the one `value_and_grad` returns, so that every outer step
        runs one compiled program."""
        return OuterState(x=x, reference_residual=stats.initial_grad_norm)

    def value_and_grad(
        self,
        outer_loss: OuterLoss,
        fn: Objective,
        x0: X,
        args: Args,
        *,
        solver: AbstractInnerSolver,
        state: OuterState | None,
        throw: bool,
    ) -> tuple[Scalar, Args, OuterState, HypergradInfo]:
        """One outer step: the loss ``outer_loss(x*(args), args)`` (a scalar),
        its gradient w.r.t. `args` (the structure of `args`), the next
        `OuterState` and a `HypergradInfo`; ``x0`` has the shape of the state.

        Called by `value_and_hypergrad` after the warm start of the inner solve
        (``x0`` is already ``state.x`` where the strategy warm-starts). The
        default differentiates the strategy's own `solve` in reverse mode.
        """
        return reverse_value_and_grad(
            self, outer_loss, fn, x0, args, solver, state, throw
        )
