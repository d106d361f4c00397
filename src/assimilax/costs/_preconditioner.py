"""A preconditioner for the backward solve built from the variational problem."""

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

    **Cost:** one application of ``B`` per CG iteration (`covariance`: two FFT
    pairs for `DiffusionBackground`, one matrix product for
    `CovarianceBackground`). **Limits:** it ignores the priors' Hessians (a
    strong prior makes it a poorer approximation, never an invalid one: ``B`` is
    positive definite) and applies to `ThreeDVar` and `StrongConstraint4DVar`
    only: the weak-constraint Hessian couples the states of the window through
    the model-error term.

    **Raises:** `TypeError` when `args` is not a `ThreeDVar` or
    `StrongConstraint4DVar` (the problem must be `argmin`'s `args`), or its
    control is neither `DirectControl()` nor `ControlVariable()`.
    """

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
