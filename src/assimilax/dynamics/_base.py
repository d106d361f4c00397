"""The dynamics interface: a vector field and a trajectory at requested times."""

import abc

import equinox as eqx
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree, Real

from .._custom_types import ScalarLike
from ._checks import check_state, check_times
from ._integrator import AbstractIntegrator, ExactFlow


class AbstractDynamics(eqx.Module):
    """A forecast model ``dx/dt = f(t, x)`` (or a discrete map) as an Equinox module.

    Physical parameters are (array) fields, so a dynamics object can itself be the
    outer-loop parameter: `jax.grad` / `eqx.filter_grad` of any functional of
    `integrate` with respect to the module gives the gradients for its floating
    fields. Integration settings are a static field (configuration, not learnable):
    change them with ``dataclasses.replace(model, integrator=...)`` (`eqx.tree_at`
    only replaces leaves).

    Subclass [`assimilax.dynamics.AbstractODEDynamics`][] for a continuous model,
    or use [`assimilax.dynamics.VectorFieldDynamics`][] /
    [`assimilax.dynamics.DiscreteDynamics`][] to wrap a function.
    """

    @abc.abstractmethod
    def vector_field(
        self, t: ScalarLike, x: Float[Array, "*state"], args: PyTree = None
    ) -> Float[Array, "*state"]:
        """The tendency ``dx/dt`` at the scalar time `t` and state `x`, of `x`'s
        shape ``(*state)`` (`args` is unused by the built-in models: their
        parameters are fields)."""

    @abc.abstractmethod
    def integrate(
        self, x0: Real[ArrayLike, "*state"], times: Real[ArrayLike, "..."]
    ) -> Float[Array, " time *state"]:
        """The states at `times` (1-D, strictly increasing), starting from `x0` at
        ``times[0]``: ``out[0] == x0``.

        **Raises:** `ValueError` when `times` is not 1-D, is empty or not strictly
        increasing (an `EquinoxRuntimeError` for the latter under `jit`), or when
        `x0` does not have the model's state shape.
        """

    @property
    def state_shape(self) -> tuple[int, ...] | None:
        """Shape of one state, or None when the model accepts any shape."""
        return None

    @property
    def grid(self) -> tuple[np.ndarray, ...] | None:
        """Coordinates of the unknowns along each axis of the state (NumPy arrays,
        for xarray coords), or None (the default) for a model whose state is not a
        field on a spatial grid (Lorenz systems, a wrapped function)."""
        return None


class AbstractODEDynamics(AbstractDynamics):
    """A continuous model integrated by its `integrator` field.

    A subclass provides `vector_field`, an `integrator` field with a default
    (an [`assimilax.dynamics.Integrator`][] running diffrax, or
    [`assimilax.dynamics.ExactFlow`][] when it also implements `exact_flow`), and
    optionally `state_shape` so that a wrong `x0` is rejected with a clear message.
    """

    integrator: eqx.AbstractVar[AbstractIntegrator]

    def __check_init__(self):
        if not isinstance(self.integrator, AbstractIntegrator):
            raise TypeError(
                f"{type(self).__name__}(integrator=...) must be an "
                "AbstractIntegrator, e.g. Integrator(solver=diffrax.Tsit5()); got "
                f"{self.integrator!r}."
            )
        has_exact = type(self).exact_flow is not AbstractODEDynamics.exact_flow
        if isinstance(self.integrator, ExactFlow) and not has_exact:
            raise TypeError(
                f"{type(self).__name__} has no closed-form flow, so "
                "integrator=ExactFlow() does not apply; use Integrator(...) "
                "(diffrax) instead."
            )

    def integrate(
        self, x0: Real[ArrayLike, "*state"], times: Real[ArrayLike, "..."]
    ) -> Float[Array, " time *state"]:
        x0 = check_state(type(self).__name__, x0, self.state_shape)
        times = check_times(times, x0.dtype)
        return self.integrator.integrate(self, x0, times)

    def exact_flow(
        self, x0: Float[Array, "*state"], times: Float[Array, " time"]
    ) -> Float[Array, " time *state"]:
        """The exact solution at `times`, shape ``(time, *state)`` for `x0` of shape
        ``(*state)`` and `times` of shape ``(time,)`` (models with a closed-form
        flow only).

        **Raises:** `NotImplementedError` for models without one.
        """
        raise NotImplementedError(f"{type(self).__name__} has no closed-form flow.")
