"""The inner problem that an outer loop (`assimilax.learning.fit`) learns through."""

import abc

import equinox as eqx
from jaxtyping import PyTree

from .._custom_types import Scalar


class AbstractProblem(eqx.Module):
    """An inner problem: a cost ``U(control)`` to minimise, its usual first guess,
    and the state a control stands for.

    The problem holds everything its cost depends on, so it is the `args` of
    `argmin` and its floating fields are the parameters an outer loop learns.
    Every `assimilax.costs` problem is one; write your own by subclassing it::

        class Denoising(AbstractProblem):
            y: Float[Array, " n"]
            weight: Float[Array, ""]

            def cost(self, x):
                return 0.5 * jnp.sum((x - self.y) ** 2) + self.weight * jnp.sum(x**2)

            def first_guess(self):
                return self.y
    """

    @abc.abstractmethod
    def cost(self, control: PyTree) -> Scalar:
        """The scalar cost of `control` (a pytree shaped like `first_guess()`)."""

    @abc.abstractmethod
    def first_guess(self) -> PyTree:
        """The control the inner solve starts from."""

    def to_state(self, control: PyTree) -> PyTree:
        """The state (analysis) that `control` stands for: the control itself
        unless the problem optimises a transformed variable (override)."""
        return control


def check_problem(owner: str, problem: object) -> None:
    """Raise `TypeError` unless `problem` is an `AbstractProblem`."""
    if not isinstance(problem, AbstractProblem):
        raise TypeError(
            f"{owner}: the problem must be an assimilax AbstractProblem (every "
            "assimilax.costs problem is; subclass AbstractProblem and define "
            f"`cost` and `first_guess` for your own), got {type(problem).__name__}."
        )
