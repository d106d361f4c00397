"""The Lorenz (1996) model on a ring of ``n`` variables."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .._custom_types import ScalarLike
from ._base import AbstractODEDynamics
from ._checks import as_float
from ._fixed_step import FixedStepRK4
from ._integrator import AbstractIntegrator


class Lorenz96(AbstractODEDynamics):
    """``x_i' = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F``, indices modulo ``n``.

    **Fields:**

    - `n`: number of variables (static, >= 4; default 40): the state has shape
      ``(n,)``.
    - `F`: forcing, a scalar (array field, learnable; default 8, chaotic).
    - `integrator`: default `FixedStepRK4(dt=0.05)`: classical RK4 with exactly
      DAPPER's model step for the Sakov & Oke (2008) setup, so the two agree to
      rounding (a `lax.scan`, whose gradient costs ~3x the forward pass). For an
      error-controlled solution use ``Integrator(solver=diffrax.Tsit5(),
      stepsize_controller=diffrax.PIDController(...))``.

    **Cost:** 4 vector-field evaluations (O(n) each) per step. Chaotic for
    ``F = 8`` (leading Lyapunov exponent ~1.7 for ``n = 40``): gradients through a
    window of length ``t`` grow like ``exp(1.7 t)``.

    **Raises:** `ValueError` for ``n < 4``.

    ??? cite "References"

        Lorenz. *Predictability: a problem partly solved*. ECMWF seminar 1996.
        Sakov, Oke. *A deterministic formulation of the ensemble Kalman filter*.
        Tellus A 2008.
    """

    n: int = eqx.field(static=True, default=40)
    F: Float[Array, ""] = eqx.field(converter=as_float, default=8.0)
    integrator: AbstractIntegrator = eqx.field(
        static=True, default=FixedStepRK4(dt=0.05)
    )

    def __check_init__(self):
        if self.n < 4:
            raise ValueError(f"Lorenz96(n=...) must be >= 4, got {self.n}.")
        if jnp.ndim(self.F) != 0:
            raise ValueError(
                f"Lorenz96(F=...) must be a scalar, got shape {jnp.shape(self.F)}."
            )

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.n,)

    def vector_field(
        self, t: ScalarLike, x: Float[Array, " n"], args: PyTree = None
    ) -> Float[Array, " n"]:
        del t, args
        # jnp.roll(x, -1)[i] = x[i+1]; jnp.roll(x, 2)[i] = x[i-2].
        return (
            (jnp.roll(x, -1) - jnp.roll(x, 2)) * jnp.roll(x, 1)
            - x
            + self.F.astype(x.dtype)
        )
