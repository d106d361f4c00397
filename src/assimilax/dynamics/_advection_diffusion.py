"""Advection-diffusion ``u_t + velocity u_x = kappa u_xx`` on a periodic domain."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float, PyTree

from .._custom_types import ScalarLike
from ._base import AbstractODEDynamics
from ._boundary import Periodic
from ._checks import as_float, check_nonnegative
from ._integrator import AbstractIntegrator, ExactFlow
from ._spectral import spectral_flow, spectral_tendency


class AdvectionDiffusion1D(AbstractODEDynamics):
    """Constant-velocity advection with diffusion on the periodic ``[0, length)``.

    **Fields:**

    - `n`: number of grid points ``x_j = j L / n`` (static, default 128); the
      state has shape ``(n,)``.
    - `velocity`: advection speed, a scalar (any sign; array field: learnable).
    - `kappa`: diffusivity, a scalar >= 0 (learnable).
    - `length`: domain length (static, default 1.0).
    - `integrator`: default `ExactFlow()`.

    Derivatives are pseudo-spectral: the symbol is ``-i velocity k - kappa k^2``,
    with the first derivative of the Nyquist mode set to zero (standard for real
    fields on an even grid). The exact flow translates by ``velocity * t`` and
    damps mode ``k`` by ``exp(-kappa k^2 t)``; it costs O(T n log n).

    **Limits:** periodic only (advection mixes sine and cosine modes, so Dirichlet
    boundaries would need a different basis). With an explicit diffrax solver the
    step is limited by ``|velocity| pi n / L`` and ``kappa (pi n / L)^2``.
    """

    n: int = eqx.field(static=True, default=128)
    velocity: Float[Array, ""] = eqx.field(converter=as_float, default=1.0)
    kappa: Float[Array, ""] = eqx.field(converter=as_float, default=0.01)
    length: float = eqx.field(static=True, default=1.0)
    integrator: AbstractIntegrator = eqx.field(static=True, default=ExactFlow())

    def __check_init__(self):
        owner = "AdvectionDiffusion1D"
        if self.n < 2:
            raise ValueError(f"{owner}(n=...) must be >= 2, got {self.n}.")
        if not self.length > 0:
            raise ValueError(f"{owner}(length=...) must be > 0, got {self.length}.")
        for name, value in (("velocity", self.velocity), ("kappa", self.kappa)):
            if jnp.ndim(value) != 0:
                raise ValueError(f"{owner}({name}=...) must be a scalar.")
        check_nonnegative(owner, "kappa", self.kappa)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.n,)

    @property
    def grid(self) -> tuple[np.ndarray, ...]:
        """The coordinates ``x_j = j L / n``, a one-tuple of NumPy arrays of shape
        ``(n,)`` (for xarray coords)."""
        return (Periodic().grid(self.n, self.length),)

    def _eigenvalues(self, dtype) -> Complex[Array, " modes"]:
        k = Periodic().wavenumbers(self.n, self.length, True)
        first = 1j * k
        if self.n % 2 == 0:
            first[-1] = 0.0
        # Strict promotion has no float -> complex path: pick the matching width.
        wide = jnp.dtype(dtype).itemsize == 8
        cdtype = jnp.complex128 if wide else jnp.complex64
        velocity = self.velocity.astype(dtype).astype(cdtype)
        kappa = self.kappa.astype(dtype).astype(cdtype)
        return -velocity * jnp.asarray(first, cdtype) - kappa * jnp.asarray(
            k**2, cdtype
        )

    def vector_field(
        self, t: ScalarLike, x: Float[Array, " n"], args: PyTree = None
    ) -> Float[Array, " n"]:
        del t, args
        zero = jnp.zeros_like(x)
        return spectral_tendency(Periodic(), self._eigenvalues(x.dtype), x, zero)

    def exact_flow(
        self, x0: Float[Array, " n"], times: Float[Array, " time"]
    ) -> Float[Array, "time n"]:
        zero = jnp.zeros_like(x0)
        return spectral_flow(
            Periodic(), self._eigenvalues(x0.dtype), x0, times, zero, None
        )
