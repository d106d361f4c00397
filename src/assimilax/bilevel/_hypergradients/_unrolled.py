"""Reverse-mode differentiation through every step of the inner solver."""

from typing import ClassVar

import equinox as eqx

from ..._custom_types import Args, IntScalar, Objective, X
from .._iterate import iterate_checkpointed
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
    """Reverse mode through every iteration of the inner solver.

    The solver runs in Equinox's checkpointed while loop (the loop of Optimistix's
    `RecursiveCheckpointAdjoint`): it stops once the solver's convergence test
    holds (or after `solver.max_steps`), and the result is the derivative of the
    *computed* iterate, exact for the iteration actually run and biased only by the
    inner solver's own error. Its backward pass recomputes each step from stored
    carries (the iterate and the solver state), so what is stored grows with the
    number of steps and the size of the state, never with the size of the data in
    `args`.

    **Fields:**

    - `checkpoint_every`: `None` (automatic: every step's carry while
      ``max_steps`` of them fit in `max_tape_mib`, else O(sqrt(max_steps))
      checkpoints with binomial recomputation, about 2x the compute) or an integer
      ``c`` (``ceil(max_steps / c)`` checkpoints).
    - `max_tape_mib`: the memory for stored carries above which the automatic
      choice checkpoints (default 256 MiB).

    **Cost:** one forward run of the steps taken plus a backward pass of about
    twice that (each step is recomputed from its carry, then differentiated);
    memory ``steps x carry`` (or the checkpoints), see
    `benchmarks/hypergradient_memory.py`. Reverse mode only: `jax.jvp` /
    `jax.jacfwd` through it raise (use `ForwardMode()`). Not for solvers with
    dynamic line searches (`LBFGS`): those are refused. `value_and_hypergrad`
    always starts it from `x0` (no warm start from its `state`): the derivative
    is that of the iteration from `x0`.
    """

    warm_starts_inner: ClassVar[bool] = False
    differentiates_solver: ClassVar[bool] = True

    checkpoint_every: int | None = eqx.field(static=True, default=None)
    max_tape_mib: float = eqx.field(static=True, default=256.0)

    def __check_init__(self):
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(
                "Unrolled(checkpoint_every=...) must be None or >= 1, got "
                f"{self.checkpoint_every}."
            )
        if not self.max_tape_mib > 0:
            raise ValueError(
                f"Unrolled(max_tape_mib=...) must be > 0, got {self.max_tape_mib}."
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
        return iterate_checkpointed(
            fn,
            solver,
            x0,
            args,
            state,
            solver.max_steps,
            self.checkpoint_every,
            max_tape_bytes=self.max_tape_mib * 2**20,
        )
