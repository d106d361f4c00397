"""Preconditioners for the backward linear solve of the implicit hypergradient.

A preconditioner is an approximation of the *inverse* Hessian at the inner
solution, as a positive-definite `lineax` operator; `lx.CG` applies it.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import lineax as lx

from .._custom_types import Args, Objective, X
from ._solvers._base import AbstractInnerSolver, InnerState


class AbstractPreconditioner(eqx.Module):
    """Builds an approximate inverse Hessian at the inner solution (or `None`)."""

    @abc.abstractmethod
    def build(
        self,
        solver: AbstractInnerSolver,
        fn: Objective,
        x: X,
        args: Args,
        state: InnerState,
    ) -> lx.AbstractLinearOperator | None:
        """The preconditioner for the solve at ``x``, or `None` for none."""


class NoPreconditioner(AbstractPreconditioner):
    """No preconditioning (the default)."""

    def build(self, solver, fn, x, args, state):
        del solver, fn, x, args, state
        return None


class OperatorPreconditioner(AbstractPreconditioner):
    """A user-supplied approximate inverse Hessian.

    **Fields:** `make`, a function ``(x, args) -> lx.AbstractLinearOperator`` whose
    operator approximates ``(∂²U/∂x²)^{-1}`` at ``x``; it must be symmetric positive
    definite and tagged so (``lx.positive_semidefinite_tag``) for `lx.CG`.
    """

    make: Callable[[X, Args], lx.AbstractLinearOperator]

    def build(self, solver, fn, x, args, state):
        del solver, fn, state
        return self.make(x, args)


class LBFGSPreconditioner(AbstractPreconditioner):
    """The inverse-Hessian approximation kept in the inner `LBFGS` solver's memory.

    The L-BFGS curvature pairs collected during the inner solve approximate the
    inverse Hessian near the minimiser: reusing them costs no extra evaluation and
    cuts the conjugate-gradient iterations on ill-conditioned problems. Only with
    the `LBFGS` inner solver.
    """

    def build(self, solver, fn, x, args, state):
        del fn, x, args
        inverse_hessian = solver.inverse_hessian_operator(state)
        if inverse_hessian is None:
            raise ValueError(
                "LBFGSPreconditioner() needs the LBFGS inner solver (it reuses its "
                f"curvature memory); got {type(solver).__name__}. Use "
                "`OperatorPreconditioner` or `NoPreconditioner` instead."
            )
        return inverse_hessian
