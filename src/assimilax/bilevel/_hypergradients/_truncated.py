"""Truncated back-propagation: differentiate only the last k inner steps."""

from typing import ClassVar

import equinox as eqx

from ..._custom_types import Args, IntScalar, Objective, X
from .._iterate import iterate_checkpointed, iterate_while, stop_gradient_tree
from .._solvers._base import AbstractInnerSolver, InnerState
from ._base import AbstractHypergradient
from ._unrolled import refuse_non_differentiable


class Truncated(AbstractHypergradient):
    """K-step truncated reverse mode (Shaban et al., 2019).

    The first ``max_steps - k`` iterations run without derivatives (and stop early
    once converged); then ``k`` more iterations are differentiated. Memory is
    O(k) whatever the total step count.

    **Fields:**

    - `k`: number of differentiated steps (static, >= 1, <= the solver's
      `max_steps`).

    **Bias:** for gradient descent with step ``1/L`` on a ``mu``-strongly convex
    quadratic, the relative error against full unrolling is at most
    ``(1 - mu/L)^k``; `k` steps of this are a ``k``-term Neumann series of the
    inverse Hessian.

    ??? cite "References"

        Shaban, Cheng, Hatch, Boots. *Truncated Back-propagation for Bilevel
        Optimization*. AISTATS 2019.
    """

    differentiates_solver: ClassVar[bool] = True

    k: int = eqx.field(static=True)

    def __check_init__(self):
        if self.k < 1:
            raise ValueError(f"Truncated(k=...) needs k >= 1, got k={self.k}.")

    def check_compatible(self, solver: AbstractInnerSolver) -> None:
        refuse_non_differentiable(self, solver)
        if self.k > solver.max_steps:
            raise ValueError(
                f"Truncated(k={self.k}) differentiates more steps than "
                f"{type(solver).__name__}(max_steps={solver.max_steps}) runs; "
                f"use k <= {solver.max_steps}, or `Unrolled()` for all steps."
            )

    def solve(
        self,
        fn: Objective,
        solver: AbstractInnerSolver,
        x0: X,
        args: Args,
        *,
        throw: bool,
    ) -> tuple[X, InnerState, IntScalar]:
        del throw
        frozen = stop_gradient_tree(args)
        state = solver.init(fn, x0, frozen)
        head_steps = solver.max_steps - self.k
        x, state, n_head = iterate_while(fn, solver, x0, frozen, state, head_steps)
        x, state = stop_gradient_tree((x, state))
        # The differentiated tail must see `args`: re-evaluate the objective there.
        state = solver.refresh(fn, x, args, state)
        # The window always takes its k steps, converged or not: the parameters'
        # influence must pass through k iterations for the bias bound to hold.
        x, state, n_tail = iterate_checkpointed(
            fn, solver, x, args, state, self.k, freeze_when_converged=False
        )
        return x, state, n_head + n_tail
