"""Preconditioners for the backward linear solve of the implicit hypergradient.

A preconditioner is an approximation of the *inverse* Hessian at the inner
solution, as a positive-definite `lineax` operator; `lx.CG` applies it. Each
solve reports whether one was applied (`LinearSolveInfo.preconditioned`): a
preconditioner may decline at run time (`LBFGSPreconditioner` does where plain
CG converges first).
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import lineax as lx

from .._custom_types import Args, BoolScalar, IntScalar, Objective, X
from ._race import race_cg
from ._solvers._base import AbstractInnerSolver, InnerState


class AbstractPreconditioner(eqx.Module):
    """Builds an approximate inverse Hessian at the inner solution (or `None`).

    Concrete preconditioners implement `build`; `solve` (by default: one
    ``lx.linear_solve`` with the built operator as its ``preconditioner``
    option) runs the backward linear solve, and may decline the operator at run
    time.
    """

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

    def solve(
        self,
        operator: lx.AbstractLinearOperator,
        vector: X,
        y0: X,
        linear_solver: lx.AbstractLinearSolver,
        built: lx.AbstractLinearOperator | None,
    ) -> tuple[X, lx.RESULTS, IntScalar, BoolScalar]:
        """Solve ``operator w = vector`` from `y0` with `linear_solver`, using
        `built` (from `build`).

        **Returns:** ``(w, result, num_steps, preconditioned)``: the solution (a
        tree like `vector`), lineax's result code, and two scalars: the solver's
        iterations (-1 for direct solvers) and whether a preconditioner was
        applied.
        """
        options = {"y0": y0}
        if built is not None:
            options["preconditioner"] = built
        sol = lx.linear_solve(
            operator, vector, linear_solver, options=options, throw=False
        )
        num_steps = jnp.asarray(sol.stats.get("num_steps", -1))
        return sol.value, sol.result, num_steps, jnp.asarray(built is not None)

    def solve_raced(
        self,
        operator: lx.AbstractLinearOperator,
        vector: X,
        y0: X,
        linear_solver: lx.AbstractLinearSolver,
        built: lx.AbstractLinearOperator | None,
    ) -> tuple[X, lx.RESULTS, IntScalar, BoolScalar]:
        """`solve`, but with `lx.CG` as a race that never costs iterations: plain
        and `built`-preconditioned CG advance in lockstep from `y0` (their
        Hessian-vector products batched by `vmap`), with `lx.CG`'s stopping test,
        tolerances, norm, step cap and residual refresh, and the first to
        converge is returned (the plain one on a tie). Its iterations are never
        more than plain CG's; each costs two operator products. With another
        solver, or `built` `None`, it is `solve`.

        **Returns:** as `solve`; `preconditioned` (a boolean scalar) is `True`
        where the preconditioned run won.
        """
        if built is None or not isinstance(linear_solver, lx.CG):
            return AbstractPreconditioner.solve(
                self, operator, vector, y0, linear_solver, built
            )
        return race_cg(operator, vector, y0, built, linear_solver)


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

    **Cost:** one application of the operator per iteration of the linear solver.
    With the exact inverse, CG converges in one iteration (tested). Nothing checks
    that the operator helps: a poor one can cost iterations (see
    `LBFGSPreconditioner` for one that checks).
    """

    make: Callable[[X, Args], lx.AbstractLinearOperator]

    def build(self, solver, fn, x, args, state):
        del solver, fn, state
        return self.make(x, args)


class LBFGSPreconditioner(AbstractPreconditioner):
    """The inverse-Hessian approximation kept in the inner `LBFGS` solver's memory,
    raced against no preconditioner so that it never costs CG iterations.

    The L-BFGS curvature pairs collected during the inner solve approximate the
    inverse Hessian (`LBFGS.inverse_hessian_operator`, free to build). That is
    often *not* a good preconditioner for CG, and not because of a bug (the
    operator matches Optax's two-loop recursion and an explicit BFGS product):
    outside the span of the pairs it is ``gamma I``, a scalar to which CG is
    invariant; the pairs come from inexact (Wolfe) line-search steps, so they are
    not Hessian-conjugate and the rank-2m update does not invert the Hessian even
    on their span (they mostly span the large-eigenvalue directions, which CG
    resolves fast anyway); and the update perturbs every eigenvalue, splitting
    the clusters that CG exploits. On a 64-point heat 4DVar
    (`DiffusionBackground`, direct control) the Hessian has 35 distinct
    eigenvalues (the Fourier pairs of a nearly periodic problem), the
    L-BFGS-preconditioned one 59, and CG (to 1e-8) needs 75 -> 116 iterations;
    one pair alone already costs 50% more; exact curvature pairs (``y = H s`` at
    the solution) give the same. Neither a short probe nor the accuracy of the
    pairs predicted when it helps (measured on heat 1D/2D, Lorenz-96 and a
    random quadratic).

    So with `lx.CG` (`checked=True`, the default) the solve is a race
    (`solve_raced`): plain CG and CG preconditioned by the memory advance in
    lockstep, and the first to converge is returned. `LinearSolveInfo.num_steps`
    is its iteration count, never more than the plain run's (which repeats
    `lx.CG`'s iteration: the same count, up to rounding), and
    `LinearSolveInfo.preconditioned` says which one won. With another lineax
    solver, or ``checked=False``, the memory is applied unchecked (and reported
    as applied).

    **Fields:** `checked` (static; default `True`).

    **Cost:** each iteration of the race costs two Hessian-vector products
    (batched: measured 1.2x to 2.1x the time of one on the CPU) plus
    O(memory_size * state). It saves time only where the memory cuts the
    iterations by more than that factor, which in `benchmarks/preconditioners.py`
    only the smallest Lorenz-96 (n = 20: 21 -> 12 iterations) showed: prefer a
    preconditioner built from the problem
    (`assimilax.costs.BackgroundPreconditioner` for 4DVar in direct control).
    Under `vmap`, the residual refresh every `stabilise_every` steps
    runs at every step (a batched `lax.cond`).

    **Raises:** `ValueError` with any inner solver other than `LBFGS`.

    ??? cite "References"

        Morales, Nocedal. *Automatic preconditioning by limited memory
        quasi-Newton updating*. SIAM J. Optim. 2000.
    """

    checked: bool = eqx.field(static=True, default=True)

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

    def solve(self, operator, vector, y0, linear_solver, built):
        if self.checked:
            return self.solve_raced(operator, vector, y0, linear_solver, built)
        return super().solve(operator, vector, y0, linear_solver, built)
