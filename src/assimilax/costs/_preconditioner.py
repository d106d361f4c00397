"""A preconditioner for the backward solve built from the variational problem."""

import equinox as eqx
import jax
import lineax as lx

from ..bilevel import AbstractPreconditioner
from ._control import ControlVariable, DirectControl
from ._fourdvar import StrongConstraint4DVar
from ._threedvar import ThreeDVar


class BackgroundPreconditioner(AbstractPreconditioner):
    """``B``, the background-error covariance, as the preconditioner of `Implicit`'s
    backward solve, for a problem that is `argmin`'s `args`.

    In direct control the Hessian of a 3DVar or strong-constraint 4DVar cost is
    ``B⁻¹ + Gᵀ R⁻¹ G`` (``G`` the linearised observed model; plus the priors'
    Hessians). Its conditioning is ``B``'s when ``B`` is strongly correlated (long
    length scales). Preconditioned by ``B`` it becomes similar to
    ``I + B^{1/2} Gᵀ R⁻¹ G B^{1/2}``: the identity plus a term whose rank is at
    most the number of observations, and whose eigenvalues decay with the
    smoothing of the model, so CG needs about as many iterations as that term
    has eigenvalues well above 1. This is the operational preconditioning of
    4DVar (the control-variable transform), here applied to the backward solve
    of a problem minimised in direct control. With `ControlVariable()` the
    problem is already in that form: `build` gives `None` (no preconditioner),
    and `LinearSolveInfo.preconditioned` is `False`.

        problem = StrongConstraint4DVar(model, obs, DiffusionBackground(xb, 0.3, 16.0))
        strategy = assimilax.Implicit(preconditioner=BackgroundPreconditioner())
        sol = assimilax.argmin(lambda x, p: p.cost(x), problem.first_guess(),
                               problem, solver=assimilax.LBFGS(),
                               hypergradient=strategy)

    **Fields:** `checked` (static; default `False`): with `True` the solve is a
    race between plain and ``B``-preconditioned CG (`solve_raced`, as in
    `LBFGSPreconditioner`), which never costs iterations but costs two
    Hessian-vector products per iteration.

    **Cost:** one application of ``B`` per CG iteration (`covariance`: two FFT
    pairs for `DiffusionBackground`, one matrix product for
    `CovarianceBackground`).

    **Limits:** it helps where ``B⁻¹`` makes the Hessian ill-conditioned and the
    observation term is of low effective rank (sparse, or smoothed by the
    model): measured 70 -> 14 CG iterations on a 64-point heat 4DVar (length
    scale 8 points, a quarter of the points observed). Where precise, dense
    observations make ``B^{1/2} Gᵀ R⁻¹ G B^{1/2}`` large and of high rank it
    costs iterations: 95 -> 235 on a 32x32 heat 2D 4DVar (40% of the points
    observed at the initial time with noise 0.05 against a background std of
    0.3; `benchmarks/preconditioners.py`); use ``checked=True`` there, or
    none. It ignores the priors' Hessians (a strong prior makes it a poorer
    approximation, never an invalid one: ``B`` is positive definite) and
    applies to `ThreeDVar` and `StrongConstraint4DVar` only: the
    weak-constraint Hessian couples the states of the window through the
    model-error term.

    **Raises:** `TypeError` when `args` is not a `ThreeDVar` or
    `StrongConstraint4DVar` (the problem must be `argmin`'s `args`), or its
    control is neither `DirectControl()` nor `ControlVariable()`.
    """

    checked: bool = eqx.field(static=True, default=False)

    def build(self, solver, fn, x, args, state):
        del solver, fn, state
        if not isinstance(args, (ThreeDVar, StrongConstraint4DVar)):
            raise TypeError(
                "BackgroundPreconditioner() needs `args` to be the variational "
                "problem (a ThreeDVar or StrongConstraint4DVar), as in "
                "argmin(lambda x, p: p.cost(x), problem.first_guess(), problem, "
                f"...); got {type(args).__name__}."
            )
        if isinstance(args.control, ControlVariable):
            return None  # the Hessian is already I + (data term)
        if not isinstance(args.control, DirectControl):
            raise TypeError(
                "BackgroundPreconditioner() supports control=DirectControl() or "
                f"ControlVariable(); got {type(args.control).__name__}."
            )
        structure = jax.eval_shape(lambda: x)
        tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)
        return lx.FunctionLinearOperator(args.background.covariance, structure, tags)

    def solve(self, operator, vector, y0, linear_solver, built):
        if self.checked:
            return self.solve_raced(operator, vector, y0, linear_solver, built)
        return super().solve(operator, vector, y0, linear_solver, built)
