"""Forward-mode differentiation through the inner iterations."""

from typing import ClassVar

from ..._custom_types import Args, IntScalar, Objective, X
from .._iterate import iterate_while
from .._solvers._base import AbstractInnerSolver, InnerState
from ._base import AbstractHypergradient


class ForwardMode(AbstractHypergradient):
    """Forward-mode (tangent) propagation through every inner step.

    The iteration runs in a `lax.while_loop` that stops at convergence; JAX carries
    the tangents along, so `jax.jvp` and `jax.jacfwd` w.r.t. `args` give the
    derivative of the computed iterate. Memory does not grow with the step count.

    **Cost:** each tangent direction costs about one extra inner solve, so
    `jax.jacfwd` costs ~P solves for P scalar parameters: cheap when `args` has few
    entries and ``x`` many. **Limit:** reverse mode (`jax.grad`) is not available
    (JAX cannot reverse a `while_loop` of unknown length); use `jax.jacfwd`, or
    `Implicit`/`Unrolled` when you need `jax.grad`. `value_and_hypergrad` always
    starts it from `x0` (no warm start from its `state`): the derivative is that
    of the iteration from `x0`.
    """

    warm_starts_inner: ClassVar[bool] = False

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
        return iterate_while(fn, solver, x0, args, state, solver.max_steps)
