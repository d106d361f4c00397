"""The hypergradient interface: how `argmin` makes its minimiser differentiable."""

import abc
from typing import ClassVar

import equinox as eqx

from ..._custom_types import Args, IntScalar, Objective, X
from .._solvers._base import AbstractInnerSolver, InnerState


class AbstractHypergradient(eqx.Module):
    """A way to differentiate ``x*(args) = argmin_x fn(x, args)`` w.r.t. ``args``.

    A strategy runs the inner solver and returns the minimiser such that JAX's
    autodiff (`jax.grad`, or `jax.jvp`/`jax.jacfwd` for `ForwardMode`) of anything
    computed from it gives the hypergradient by that strategy.

    **Class attribute a strategy may override:**

    - `warm_starts_inner`: `False` when the hypergradient is that of the whole
      iteration from ``x0`` (`Unrolled`, `ForwardMode`). `value_and_hypergrad` then
      starts the inner solve from ``x0``, never from ``OuterState.x``: from a
      converged warm start the iteration would take no step, and its derivative
      would be zero.
    """

    warm_starts_inner: ClassVar[bool] = True

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

    def check_compatible(self, solver: AbstractInnerSolver) -> None:
        """Raise a `ValueError` naming both objects if this pair cannot work."""
        del solver
