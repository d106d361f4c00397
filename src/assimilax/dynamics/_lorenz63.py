"""The Lorenz (1963) three-variable convection model."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .._custom_types import ScalarLike
from ._base import AbstractODEDynamics
from ._checks import as_float
from ._fixed_step import FixedStepRK4
from ._integrator import AbstractIntegrator


class Lorenz63(AbstractODEDynamics):
    """``x' = sigma (y - x)``, ``y' = x (rho - z) - y``, ``z' = x y - beta z``.

    The state has shape ``(3,)``.

    **Fields:** `sigma` (10), `rho` (28), `beta` (8/3): scalars, array fields,
    learnable.
    `integrator`: default `FixedStepRK4(dt=0.01)` (classical RK4 with the
    step of DAPPER's ``Lorenz63`` setup); for a tolerance-controlled solution pass
    ``Integrator(solver=diffrax.Tsit5(), stepsize_controller=PIDController(...))``.

    **Cost:** 4 evaluations of a 3-vector field per step; chaotic (leading Lyapunov
    exponent ~0.9), so gradients through long windows grow like ``exp(0.9 t)``.

    ??? cite "References"

        Lorenz. *Deterministic nonperiodic flow*. J. Atmos. Sci. 1963.
    """

    sigma: Float[Array, ""] = eqx.field(converter=as_float, default=10.0)
    rho: Float[Array, ""] = eqx.field(converter=as_float, default=28.0)
    beta: Float[Array, ""] = eqx.field(converter=as_float, default=8.0 / 3.0)
    integrator: AbstractIntegrator = eqx.field(
        static=True, default=FixedStepRK4(dt=0.01)
    )

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (3,)

    def vector_field(
        self, t: ScalarLike, x: Float[Array, "3"], args: PyTree = None
    ) -> Float[Array, "3"]:
        del t, args
        sigma, rho, beta = (
            p.astype(x.dtype) for p in (self.sigma, self.rho, self.beta)
        )
        return jnp.stack(
            [
                sigma * (x[1] - x[0]),
                x[0] * (rho - x[2]) - x[1],
                x[0] * x[1] - beta * x[2],
            ]
        )
