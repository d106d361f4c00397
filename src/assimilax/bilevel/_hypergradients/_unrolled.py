"""Reverse-mode differentiation through every step of the inner solver."""

from typing import ClassVar

import equinox as eqx

from ..._custom_types import Args, IntScalar, Objective, X
from .._iterate import iterate_scan
from .._solvers._base import AbstractInnerSolver, InnerState
from ._base import AbstractHypergradient


def refuse_non_differentiable(strategy: eqx.Module, solver: AbstractInnerSolver):
    """Refuse solvers whose steps cannot be reverse-differentiated correctly."""
    if not solver.reverse_differentiable:
        raise ValueError(
            f"{type(strategy).__name__}() differentiates through the solver's steps, "
            f"but {type(solver).__name__}'s steps are not reverse-differentiable "
            "(they contain a dynamic line search or an adaptive loop). Use "
            "`Implicit()` or `ForwardMode()` with this solver, or pick a solver with "
            "fixed steps such as `GradientDescent` or `OptaxSolver`."
        )


class Unrolled(AbstractHypergradient):
    """Reverse mode through all `solver.max_steps` iterations (`lax.scan`).

    Once the solver's convergence test holds the iterate is frozen, so the result is
    the derivative of the *computed* iterate, exact for the truncated iteration and
    biased only by the inner solver's own error.

    **Fields:**

    - `checkpoint_every`: `None` (store every step: memory O(T)) or an integer ``c``
      (store one state every ``c`` steps, recompute the rest on the backward pass:
      memory O(T / c + c), about 2x the compute). ``c ~ sqrt(T)`` balances the two.

    **Cost:** one forward run of T steps plus a backward pass of similar cost;
    memory grows with T (see `benchmarks/hypergradients.py`). Not for solvers with
    dynamic line searches (`LBFGS`): those are refused. `value_and_hypergrad`
    always starts it from `x0` (no warm start from its `state`): the derivative is
    that of the iteration from `x0`.
    """

    warm_starts_inner: ClassVar[bool] = False

    checkpoint_every: int | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(
                "Unrolled(checkpoint_every=...) must be None or >= 1, got "
                f"{self.checkpoint_every}."
            )

    def check_compatible(self, solver: AbstractInnerSolver) -> None:
        refuse_non_differentiable(self, solver)

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
        state = solver.init(fn, x0, args)
        return iterate_scan(
            fn, solver, x0, args, state, solver.max_steps, self.checkpoint_every
        )
