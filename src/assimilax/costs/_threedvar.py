"""3DVar: one state, a background and observations, no model."""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .._custom_types import Scalar
from ..priors import AbstractBackground, AbstractPrior
from ._base import AbstractVariationalProblem, check_fits, check_parts
from ._control import AbstractControl, DirectControl


class ThreeDVar(AbstractVariationalProblem):
    """The 3DVar cost ``0.5 |x - xb|²_B⁻¹ + 0.5 |y - H x|²_R⁻¹ + priors(x)``.

    **Arguments:**

    - `observations`: an `assimilax.observations.Observations`. Observations at
      every one of its times are compared with the same state ``x`` (no model: the
      state is assumed valid over the whole window; give one time for classic
      3DVar).
    - `background`: an `AbstractBackground` (e.g. `DiagonalBackground`,
      `DiffusionBackground`); its `xb` fixes the state's shape.
    - `priors`: extra `AbstractPrior` terms on ``x`` (keyword; default none).
    - `control`: `DirectControl()` (default; the control is ``x``) or
      `ControlVariable()` (the control is ``v``, ``x = xb + S v``; read the
      analysis with `to_state`).

    With a linear operator and Gaussian errors the minimiser is the BLUE
    ``xb + B Hᵀ (H B Hᵀ + R)⁻¹ (y - H xb)``.

    **Raises:** `TypeError` for fields of the wrong kind; `ValueError` when
    `background.xb` does not fit the observations, or for an unsupported
    combination of priors and control.

    **Cost:** one application of the observation operator and of ``S⁻¹`` (or
    ``S``) per evaluation, the same again for a gradient.
    """

    observations: eqx.Module
    background: AbstractBackground
    priors: tuple[AbstractPrior, ...]
    control: AbstractControl

    def __init__(
        self,
        observations: eqx.Module,
        background: AbstractBackground,
        *,
        priors: tuple[AbstractPrior, ...] = (),
        control: AbstractControl = DirectControl(),
    ):
        self.observations = observations
        self.background = background
        self.priors = priors
        self.control = control

    def __check_init__(self):
        check_parts("ThreeDVar", self.background, self.priors, self.control)
        xb = self.background.xb
        shape = (self._num_times(),) + xb.shape
        check_fits(
            "ThreeDVar", self.observations, jax.ShapeDtypeStruct(shape, xb.dtype)
        )

    def _num_times(self) -> int:
        return jnp.shape(self.observations.times)[0]

    def _observed(self, x: Float[Array, "*state"]) -> Float[Array, " time *state"]:
        return jnp.broadcast_to(x, (self._num_times(),) + x.shape)

    def to_state(self, control: Float[Array, "*state"]) -> Float[Array, "*state"]:
        return self.control.to_state(control, self.background)

    def states_and_times(
        self, control: Float[Array, "*state"]
    ) -> tuple[Float[Array, " 1 *state"], Float[Array, " 1"]]:
        """The state, shape ``(1, *state)``, at the first observation time, shape
        ``(1,)``: 3DVar has no model, so its analysis is reported once."""
        times = jnp.asarray(self.observations.times)[:1]
        return self.to_state(control)[None], times

    def first_guess(self) -> Float[Array, "*state"]:
        return self.control.first_guess(self.background)

    def _components(self, control: Float[Array, "*state"]) -> dict[str, Scalar]:
        residual = self.control.background_residual(control, self.background)
        states = self._observed(self.to_state(control))
        return {
            "background": 0.5 * jnp.sum(jnp.square(residual)),
            "observations": self.observations.misfit(states),
        }

    def _residuals(self, control: Float[Array, "*state"]) -> dict[str, PyTree[Array]]:
        states = self._observed(self.to_state(control))
        return {
            "background": self.control.background_residual(control, self.background),
            "observations": self.observations.residuals(states),
        }
