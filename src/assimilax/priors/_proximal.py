"""Non-smooth priors from the engine's proximal operators (L1, TV, constraints)."""

from .._custom_types import Scalar, ScalarLike, X
from ..bilevel import AbstractProx
from ._base import AbstractProximablePrior


class ProxPrior(AbstractProximablePrior):
    """A prior given by one of the engine's proximal terms.

    `ProxPrior(assimilax.L1(weight=0.1))` is the penalty ``0.1 |x|_1``;
    `ProxPrior(assimilax.TotalVariation1D(weight=0.1))` is 1D total variation
    along the last axis; `ProxPrior(assimilax.NonNegative())` a constraint.

    **Fields:** `term`, an `assimilax.AbstractProx`. Give its parameters as values
    (floats or arrays), not functions of `args`: the term is called with
    ``args=None``. Its floating fields live inside the problem, so they are
    learnable like every other parameter when the problem is `argmin`'s `args`.

    **Cost and limits:** those of the term (`TotalVariation1D`'s prox is an inner
    iterative solve). Not a sum of squares: no `residuals`, so no `GaussNewton`.
    """

    term: AbstractProx

    def __check_init__(self):
        if not isinstance(self.term, AbstractProx):
            raise TypeError(
                "ProxPrior(term=...) must be an assimilax proximal term such as "
                f"assimilax.L1(weight=0.1); got {self.term!r}."
            )

    def energy(self, x: X) -> Scalar:
        return self.term.value(x, None)

    def prox(self, x: X, step: ScalarLike) -> X:
        return self.term(x, step, None)
