"""The control variable of a variational problem: the state itself, or ``v``."""

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..priors import AbstractBackground


class AbstractControl(eqx.Module):
    """How the control (the variable `argmin` optimises) maps to the state.

    A strategy object of a problem's `control` field: `DirectControl()` (the
    default) optimises the state, `ControlVariable()` optimises
    ``v = S⁻¹ (x - xb)`` (``B = S Sᵀ``). In 4DVar this concerns the initial state.
    """

    @abc.abstractmethod
    def to_state(
        self, control: Float[Array, "*state"], background: AbstractBackground
    ) -> Float[Array, "*state"]:
        """The state for this control: ``x`` of the background's shape ``(*state)``,
        like `control`."""

    @abc.abstractmethod
    def background_residual(
        self, control: Float[Array, "*state"], background: AbstractBackground
    ) -> Float[Array, "*state"]:
        """The whitened background residual ``r``, shape ``(*state)``: the
        background term is ``0.5 |r|^2``."""

    @abc.abstractmethod
    def first_guess(self, background: AbstractBackground) -> Float[Array, "*state"]:
        """The control of the background state (the usual starting point), shape
        ``(*state)``."""


class DirectControl(AbstractControl):
    """The control is the state ``x``; the background term is
    ``0.5 |S⁻¹ (x - xb)|^2``. Simple, and the form that proximable priors (L1, TV)
    need; ill-conditioned when ``B`` is (long correlation lengths)."""

    def to_state(
        self, control: Float[Array, "*state"], background: AbstractBackground
    ) -> Float[Array, "*state"]:
        del background
        return control

    def background_residual(
        self, control: Float[Array, "*state"], background: AbstractBackground
    ) -> Float[Array, "*state"]:
        return background.whiten(control)

    def first_guess(self, background: AbstractBackground) -> Float[Array, "*state"]:
        return background.xb


class ControlVariable(AbstractControl):
    """The control-variable transform ``x = xb + S v`` (``B = S Sᵀ``).

    The background term becomes ``0.5 |v|^2`` and the Hessian of the cost
    ``I + Sᵀ Hᵀ R⁻¹ H S`` (linearised), with eigenvalues >= 1: the standard
    preconditioning of operational 4DVar. ``B⁻¹`` is never applied. The minimiser
    maps to the same analysis as `DirectControl`'s; read it with the problem's
    `to_state`. Not combinable with proximable priors (their prox acts on ``x``).
    """

    def to_state(
        self, control: Float[Array, "*state"], background: AbstractBackground
    ) -> Float[Array, "*state"]:
        return background.to_state(control)

    def background_residual(
        self, control: Float[Array, "*state"], background: AbstractBackground
    ) -> Float[Array, "*state"]:
        del background
        return control

    def first_guess(self, background: AbstractBackground) -> Float[Array, "*state"]:
        return jnp.zeros_like(background.xb)
