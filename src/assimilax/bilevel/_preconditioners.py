"""Preconditioners for the backward linear solve of the implicit hypergradient.

A preconditioner is an approximation of the *inverse* Hessian at the inner
solution, as a positive-definite `lineax` operator; `lx.CG` applies it. Each
solve reports whether one was applied (`LinearSolveInfo.preconditioned`): a
preconditioner may decline at run time (`applies`), and then the solve runs
exactly as without one.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import lineax as lx
from jax.flatten_util import ravel_pytree

from .._custom_types import Args, BoolScalar, Objective, X
from ._solvers._base import AbstractInnerSolver, InnerState


class AbstractPreconditioner(eqx.Module):
    """Builds an approximate inverse Hessian at the inner solution (or `None`).

    Concrete preconditioners implement `build`; `applies` (by default: always)
    may decline the built operator for one solve, at run time.
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

    def applies(
        self,
        operator: lx.AbstractLinearOperator,
        vector: X,
        y0: X,
        preconditioner: lx.AbstractLinearOperator,
    ) -> BoolScalar:
        """Whether to apply `preconditioner` (from `build`) to the solve of
        ``operator w = vector`` started at `y0`: a boolean scalar, `True` here.
        Where it is `False` the solve runs unpreconditioned, and
        `LinearSolveInfo.preconditioned` says so."""
        del operator, vector, y0, preconditioner
        return jnp.asarray(True)


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
    applied only where a short probe shows that it helps.

    The L-BFGS curvature pairs collected during the inner solve approximate the
    inverse Hessian (`LBFGS.inverse_hessian_operator`, free to build). That is
    often *not* a good preconditioner for CG: outside the span of the pairs it is
    ``gamma I``, a scalar to which CG is invariant; the pairs come from inexact
    (Wolfe) line-search steps, so they are not Hessian-conjugate and the rank-2m
    update does not invert the Hessian even on their span; and it perturbs every
    eigenvalue, which splits the clusters that CG exploits. On a 64-point heat
    4DVar (`DiffusionBackground`, direct control) the Hessian has 35 distinct
    eigenvalues (Fourier pairs of a nearly periodic problem), the L-BFGS-
    preconditioned one 59, and CG needs 71 -> 104 iterations; one pair alone
    already costs 50% more. So before each solve, `probe_steps` iterations of CG
    with and without the preconditioner run side by side (their Hessian-vector
    products batched) and the preconditioner is kept only when it has reduced
    the CG energy ``0.5 wᵀHw - x̄ᵀw`` (the squared error in the Hessian norm,
    up to a constant) strictly more; otherwise the solve runs unpreconditioned
    and `LinearSolveInfo.preconditioned` is `False`. Memory without a usable
    pair gives the identity, which never wins.

    **Fields:** `probe_steps` (static, >= 0; default 10). With ``0`` the memory
    is always applied, unchecked.

    **Cost:** ``2 probe_steps + 1`` extra Hessian-vector products per solve
    (``probe_steps + 1`` calls, the pairs batched by `vmap`), then
    O(memory_size * state) per CG iteration. The probe is a heuristic: it
    chose the faster option on each problem measured
    (`benchmarks/preconditioners.py`), but the gains measured were at most about
    15% of the iterations, which the probe's cost takes back; prefer a
    preconditioner built from the problem (`assimilax.costs.BackgroundPreconditioner`
    for 4DVar in direct control).

    **Raises:** `ValueError` with any inner solver other than `LBFGS`.

    ??? cite "References"

        Morales, Nocedal. *Automatic preconditioning by limited memory
        quasi-Newton updating*. SIAM J. Optim. 2000.
    """

    probe_steps: int = eqx.field(static=True, default=10)

    def __check_init__(self):
        if self.probe_steps < 0:
            raise ValueError(
                "LBFGSPreconditioner(probe_steps=...) must be >= 0, got "
                f"{self.probe_steps}."
            )

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

    def applies(self, operator, vector, y0, preconditioner):
        if self.probe_steps == 0:
            return jnp.asarray(True)
        return probe(operator, vector, y0, preconditioner, self.probe_steps)


def probe(
    operator: lx.AbstractLinearOperator,
    vector: X,
    y0: X,
    preconditioner: lx.AbstractLinearOperator,
    steps: int,
) -> BoolScalar:
    """Whether `steps` iterations of preconditioned CG on ``A w = b`` lower the
    energy ``0.5 wᵀAw - bᵀw`` strictly more than plain CG from the same `y0`.

    Both runs advance together, their two products with ``A`` batched by `vmap`.
    Written here rather than with `lx.CG` because lineax returns neither the
    energy nor a way to run two solves in lockstep; no stopping test (a run that
    has converged keeps its iterate: zero steps).
    """
    b, unravel = ravel_pytree(vector)

    def mv(v):
        return ravel_pytree(operator.mv(unravel(v)))[0]

    def precondition(r):
        # Row 0 plain CG, row 1 preconditioned.
        return jnp.stack([r[0], ravel_pytree(preconditioner.mv(unravel(r[1])))[0]])

    def safe_divide(num, den):
        ok = den > 0
        return jnp.where(ok, num / jnp.where(ok, den, 1), 0)

    start = ravel_pytree(y0)[0]
    r0 = b - mv(start)
    y = jnp.stack([start, start])
    r = jnp.stack([r0, r0])
    z = precondition(r)
    gamma = jnp.sum(r * z, axis=1)

    def body(_, carry):
        y, r, p, gamma = carry
        ap = jax.vmap(mv)(p)
        alpha = safe_divide(gamma, jnp.sum(p * ap, axis=1))[:, None]
        y, r = y + alpha * p, r - alpha * ap
        z = precondition(r)
        new_gamma = jnp.sum(r * z, axis=1)
        p = z + safe_divide(new_gamma, gamma)[:, None] * p
        return y, r, p, new_gamma

    y, r, _, _ = lax.fori_loop(0, steps, body, (y, r, z, gamma))
    # With A y = b - r: 0.5 yᵀAy - bᵀy = -0.5 (b + r)ᵀ y.
    energy = -0.5 * jnp.sum((b[None] + r) * y, axis=1)
    return energy[1] < energy[0]
