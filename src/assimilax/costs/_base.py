"""The abstract variational problem, and the prox that solvers read from it."""

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .._custom_types import Args, Scalar, ScalarLike
from ..bilevel import AbstractProblem, AbstractProx
from ..priors import AbstractBackground, AbstractPrior, AbstractProximablePrior
from ._control import AbstractControl, ControlVariable


class AbstractVariationalProblem(AbstractProblem):
    """A variational data-assimilation problem: a cost ``U(control; θ)``.

    The problem holds everything its cost depends on (dynamics, observations,
    background, priors), so it is the `args` of `argmin` and each floating field
    is a parameter ``θ`` the outer loop can learn::

        sol = assimilax.argmin(lambda x, p: p.cost(x), problem.first_guess(),
                               problem, solver=assimilax.LBFGS())
        analysis = problem.to_state(sol.value)

    **Methods:** `cost` (the sum of `components`, a dict of named scalars:
    ``"background"``, ``"observations"``, ``"model_error"`` for weak-constraint
    problems, ``"prior_<i>"``); `residuals` (whitened residuals with
    ``cost == 0.5 |residuals|^2``, for `GaussNewton`); `to_state`;
    `states_and_times` (the states on their times, for output); `first_guess`;
    and for `ProximalGradient`/`PrimalDual` the split `smooth_cost` + `prox` (see
    `ProblemProx`).

    **Shapes:** the control has the state's shape ``(*state)`` (`ThreeDVar`,
    `StrongConstraint4DVar`: the initial state) or ``(grid, *state)``
    (`WeakConstraint4DVar`: a state at each time of the window's grid); costs and
    their components are scalars.

    Priors act on ``to_state(control)``; weak-constraint problems apply them to
    each state of the trajectory and sum.
    """

    background: eqx.AbstractVar[AbstractBackground]
    priors: eqx.AbstractVar[tuple[AbstractPrior, ...]]
    control: eqx.AbstractVar[AbstractControl]
    priors_per_time: ClassVar[bool] = False

    @abc.abstractmethod
    def to_state(self, control: Float[Array, "..."]) -> Float[Array, "..."]:
        """The analysis for this control, of the control's shape: the state
        ``(*state)``, or the trajectory ``(grid, *state)`` of weak-constraint
        problems."""

    @abc.abstractmethod
    def states_and_times(
        self, control: Float[Array, "..."]
    ) -> tuple[Float[Array, " time *state"], Float[Array, " time"]]:
        """The model states this control describes and their times: states of
        shape ``(time, *state)`` and times of shape ``(time,)`` (3DVar: one
        state, at the first observation time; 4DVar: the window's trajectory on
        its time grid). What `assimilate` writes out as the analysis."""

    @abc.abstractmethod
    def first_guess(self) -> Float[Array, "..."]:
        """The control of the background: the usual initial iterate, shape
        ``(*state)`` or ``(grid, *state)`` (weak constraint)."""

    @abc.abstractmethod
    def _components(self, control: Float[Array, "..."]) -> dict[str, Scalar]:
        """The terms other than the priors."""

    @abc.abstractmethod
    def _residuals(self, control: Float[Array, "..."]) -> dict[str, PyTree[Array]]:
        """Their residuals."""

    def _on_states(self, fn, states):
        # One prior term: on the state, or on each state of a trajectory.
        return jax.vmap(fn)(states) if self.priors_per_time else fn(states)

    def components(self, control: Float[Array, "..."]) -> dict[str, Scalar]:
        """The cost's terms by name, each a scalar; their sum is `cost`."""
        terms = self._components(control)
        if self.priors:
            states = self.to_state(control)
            for i, prior in enumerate(self.priors):
                terms[f"prior_{i}"] = jnp.sum(self._on_states(prior.energy, states))
        return terms

    def cost(self, control: Float[Array, "..."]) -> Scalar:
        """The cost ``U(control)``, a scalar: the sum of every term."""
        return sum(self.components(control).values())

    def residuals(self, control: Float[Array, "..."]) -> dict[str, PyTree[Array]]:
        """Whitened residuals ``r`` with ``cost == 0.5 |r|^2``: a dict of arrays
        (``"background"`` of the control's shape, ``"observations"`` of shape
        ``(time, *obs)``, ...).

        **Raises:** `TypeError` when a prior is not a sum of squares.
        """
        terms = self._residuals(control)
        if self.priors:
            states = self.to_state(control)
            terms["priors"] = tuple(
                self._on_states(prior.residuals, states) for prior in self.priors
            )
        return terms

    def smooth_cost(self, control: Float[Array, "..."]) -> Scalar:
        """`cost` without the proximable priors (a scalar): the ``f`` of proximal
        solvers."""
        terms = self.components(control)
        for i, prior in enumerate(self.priors):
            if isinstance(prior, AbstractProximablePrior):
                del terms[f"prior_{i}"]
        return sum(terms.values())

    def nonsmooth_energy(self, control: Float[Array, "..."]) -> Scalar:
        """The proximable priors' part of `cost`, a scalar (0 without one)."""
        total = jnp.zeros((), control.dtype)
        for prior in self.priors:
            if isinstance(prior, AbstractProximablePrior):
                total = total + jnp.sum(self._on_states(prior.energy, control))
        return total

    def prox(
        self, control: Float[Array, "..."], step: ScalarLike
    ) -> Float[Array, "..."]:
        """The prox of ``step`` (a scalar) times `nonsmooth_energy` (identity without
        one); same shape as `control`."""
        for prior in self.priors:
            if isinstance(prior, AbstractProximablePrior):
                return self._on_states(lambda s: prior.prox(s, step), control)
        return control


class ProblemProx(AbstractProx):
    """The proximable prior of the problem that is `argmin`'s `args`.

    Pairs with ``fn = lambda x, problem: problem.smooth_cost(x)``::

        solver = assimilax.ProximalGradient(prox=ProblemProx(), step_size=0.1)
        assimilax.argmin(fn, problem.first_guess(), problem, solver=solver)

    so the prior's weights stay parameters of the problem (learnable). `args` must
    be an `AbstractVariationalProblem`.
    """

    def __call__(self, x: Float[Array, "..."], step: ScalarLike, args: Args):
        return args.prox(x, step)

    def value(self, x: Float[Array, "..."], args: Args) -> Scalar:
        return args.nonsmooth_energy(x)


def check_parts(owner: str, background, priors, control) -> None:
    """Types of the common fields, and the prior combinations a problem supports."""
    if not isinstance(background, AbstractBackground):
        raise TypeError(
            f"{owner}(background=...) must be a background term such as "
            f"DiagonalBackground(xb, std); got {type(background).__name__}."
        )
    if not isinstance(priors, tuple) or not all(
        isinstance(p, AbstractPrior) for p in priors
    ):
        raise TypeError(
            f"{owner}(priors=...) must be a tuple of priors such as "
            f"(Tikhonov(0.1),); got {priors!r}."
        )
    if not isinstance(control, AbstractControl):
        raise TypeError(
            f"{owner}(control=...) must be DirectControl() or ControlVariable(); "
            f"got {control!r}."
        )
    proximable = [p for p in priors if isinstance(p, AbstractProximablePrior)]
    if len(proximable) > 1:
        raise ValueError(
            f"{owner}(priors=...) holds {len(proximable)} proximable priors; the "
            "prox of a sum is not the composition of proxes: keep one (or use "
            "PrimalDual with the second as its operator term)."
        )
    if proximable and isinstance(control, ControlVariable):
        raise ValueError(
            f"{owner}(priors=...) has a proximable prior, whose prox acts on the "
            "state, but control=ControlVariable() optimises v: use DirectControl()."
        )


def check_fits(owner: str, observations, states: jax.ShapeDtypeStruct) -> None:
    """The observations accept states shaped like the background's (trace only)."""
    try:
        jax.eval_shape(observations.misfit, states)
    except Exception as error:  # re-raised naming the field that does not fit
        raise ValueError(
            f"{owner}(background=...): states of shape {states.shape[1:]} (the "
            f"shape of background.xb) do not fit the observations: "
            f"{type(error).__name__}: {error}"
        ) from error
