"""The prior (regularisation) terms of a variational problem."""

import abc

import equinox as eqx
from jaxtyping import Array, PyTree

from .._custom_types import Scalar, ScalarLike, X


class AbstractPrior(eqx.Module):
    """A term ``J(x)`` added to the cost of a variational problem.

    Concrete priors implement `energy`. Their parameters (weights, scales, means)
    are fields: a problem holding the prior is the `args` of `argmin`, so every
    floating field can be learnt by an outer loop.

    Priors that are a sum of squares, ``J = 0.5 |r(x)|^2``, also override
    `residuals`, which `GaussNewton` (incremental 4DVar) needs.
    """

    @abc.abstractmethod
    def energy(self, x: X) -> Scalar:
        """The value ``J(x)`` (a scalar)."""

    def residuals(self, x: X) -> PyTree[Array]:
        """Residuals ``r`` with ``energy(x) == 0.5 |r|^2``.

        **Raises:** `TypeError` for priors that are not a sum of squares (L1, TV).
        """
        del x
        raise TypeError(
            f"{type(self).__name__} is not a sum of squares, so it has no "
            "residuals: use a gradient solver (LBFGS, or ProximalGradient with "
            "ProblemProx() for proximable priors) rather than GaussNewton."
        )


class AbstractProximablePrior(AbstractPrior):
    """A non-smooth prior with a proximal operator.

    Solved by `ProximalGradient` or `PrimalDual` through `assimilax.costs.ProblemProx`:
    the smooth part of the problem is the objective, this term is the prox.
    """

    @abc.abstractmethod
    def prox(self, x: X, step: ScalarLike) -> X:
        """``argmin_u step * energy(u) + |u - x|^2 / 2`` for a scalar ``step > 0``
        (same pytree and shapes as ``x``)."""
