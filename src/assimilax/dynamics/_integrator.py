"""How a continuous model is integrated: diffrax with exposed settings, or exactly."""

import abc
from collections.abc import Callable
from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


# Classical fourth-order Runge-Kutta, as used by DAPPER (`dapper.mods.integration.rk4`).
# diffrax ships no RK4 under that name. The four-stage tableau has no distinct
# embedded third-order method (the order conditions force b = RK4's own weights),
# so the error estimate is zero and the solver is fixed-step only (checked below).
_rk4_tableau = dfx.ButcherTableau(
    a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    b_error=np.zeros(4),
    c=np.array([0.5, 0.5, 1.0]),
)


class RK4(dfx.AbstractERK):
    """The classical fourth-order Runge-Kutta method, as a diffrax solver.

    Four vector-field evaluations per step, third-order Hermite interpolation for
    outputs between steps. It has no error estimate: use it with
    `diffrax.ConstantStepSize()` (the [`assimilax.dynamics.Integrator`][] rejects
    an adaptive controller with it). With `dt0` equal to DAPPER's model step it
    reproduces DAPPER's ``rk4`` integration up to rounding.
    """

    tableau: ClassVar[dfx.ButcherTableau] = _rk4_tableau
    interpolation_cls: ClassVar[Callable[..., dfx.AbstractLocalInterpolation]] = (
        dfx.ThirdOrderHermitePolynomialInterpolation.from_k
    )

    def order(self, terms):
        """The order of the method, 4 (diffrax's solver interface)."""
        del terms
        return 4


class AbstractIntegrator(eqx.Module):
    """How `integrate` turns a model into a trajectory at requested times."""

    @abc.abstractmethod
    def integrate(
        self, dynamics, x0: Float[Array, "*state"], times: Float[Array, " time"]
    ) -> Float[Array, " time *state"]:
        """States of `dynamics` at `times` (validated, shape ``(time,)``), from `x0`
        of shape ``(*state)``: shape ``(time, *state)``, ``out[0] == x0``."""


def _diffrax_vector_field(t, y, dynamics):
    # The module travels as diffrax's `args` rather than in a closure, so that every
    # adjoint (BacksolveAdjoint included) sees and differentiates its parameters.
    return dynamics.vector_field(t, y)


class Integrator(AbstractIntegrator):
    """Integration by `diffrax.diffeqsolve` with ``SaveAt(ts=times)``.

    **Fields** (all passed straight to diffrax):

    - `solver`: a diffrax solver (default `diffrax.Tsit5()`). For stiff models (heat
      on a fine grid integrated in time rather than exactly) use an implicit one,
      e.g. `diffrax.Kvaerno5()` with a `PIDController`: its Newton solves build
      the dense Jacobian, so it suits states up to a few thousand values.
    - `dt0`: initial (or fixed) step; None lets an adaptive controller choose.
    - `stepsize_controller`: default `diffrax.PIDController(rtol=1e-6, atol=1e-6)`;
      `diffrax.ConstantStepSize()` for fixed steps (then `dt0` is required).
    - `adjoint`: how reverse mode differentiates the solve (default
      `diffrax.RecursiveCheckpointAdjoint()`: exact gradients of the discrete
      solution, memory O(sqrt(steps)) recomputation).
    - `max_steps`: step cap; reaching it raises (diffrax's ``throw=True``).

    **Cost:** (number of steps) x (stages) vector-field evaluations; outputs in
    between steps are interpolated, so `times` need not be multiples of `dt0`.
    """

    solver: dfx.AbstractSolver = dfx.Tsit5()
    dt0: float | None = None
    stepsize_controller: dfx.AbstractStepSizeController = dfx.PIDController(
        rtol=1e-6, atol=1e-6
    )
    adjoint: dfx.AbstractAdjoint = dfx.RecursiveCheckpointAdjoint()
    max_steps: int = 4096

    def __check_init__(self):
        constant = isinstance(self.stepsize_controller, dfx.ConstantStepSize)
        if constant and self.dt0 is None:
            raise ValueError("Integrator(dt0=...) is required with ConstantStepSize().")
        if isinstance(self.solver, RK4) and not constant:
            raise ValueError(
                "Integrator(solver=RK4()) has no error estimate: use "
                "stepsize_controller=diffrax.ConstantStepSize(), or an adaptive "
                "solver such as diffrax.Tsit5() with a PIDController."
            )
        if self.dt0 is not None and not self.dt0 > 0:
            raise ValueError(f"Integrator(dt0=...) must be > 0, got {self.dt0}.")
        if self.max_steps < 1:
            raise ValueError(
                f"Integrator(max_steps=...) must be >= 1, got {self.max_steps}."
            )

    def integrate(self, dynamics, x0, times):
        if times.shape[0] == 1:
            return x0[None]
        solution = dfx.diffeqsolve(
            dfx.ODETerm(_diffrax_vector_field),
            self.solver,
            times[0],
            times[-1],
            self.dt0,
            x0,
            args=dynamics,
            saveat=dfx.SaveAt(ts=times),
            stepsize_controller=self.stepsize_controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
        )
        # Pin the first output to x0 exactly (diffrax evaluates it by interpolation).
        return jnp.concatenate([x0[None], solution.ys[1:]])


class ExactFlow(AbstractIntegrator):
    """The closed-form flow of a linear model with constant coefficients.

    Heat and advection-diffusion on periodic or Dirichlet grids are diagonal in a
    Fourier (or sine) basis, so ``x(t) = F⁻¹ exp(t Λ) F x0`` (plus the exact
    response to a constant source) at every output time at once. There is no time
    step and no stiffness: the result is exact in time for any spacing of `times`.

    **Cost:** one forward and ``len(times)`` inverse FFTs, O(T N log N) time and
    O(T N) memory; reverse mode costs about as much again. Applies only to models
    that implement `exact_flow` (a `TypeError` at construction otherwise).
    """

    def integrate(self, dynamics, x0, times):
        return dynamics.exact_flow(x0, times)
