"""The heat equation ``u_t = kappa * laplacian(u) + source`` in 1D and 2D."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from .._custom_types import ScalarLike
from ._base import AbstractODEDynamics
from ._boundary import AbstractBoundary, check_boundary, Periodic
from ._checks import as_float, check_nonnegative
from ._integrator import AbstractIntegrator, ExactFlow
from ._spectral import spectral_flow, spectral_tendency


def _optional_float(value):
    return None if value is None else as_float(value)


class AbstractHeat(AbstractODEDynamics):
    """Shared implementation of `Heat1D` and `Heat2D` (pseudo-spectral Laplacian).

    The Laplacian is applied in the basis that diagonalises it on the grid (Fourier
    for `Periodic`, sine for `Dirichlet`) with the exact eigenvalues ``-|k|^2``:
    spectrally accurate for smooth fields, so that a band-limited initial state
    evolves with no spatial error either.
    """

    kappa: eqx.AbstractVar[Float[Array, ""]]
    boundary: eqx.AbstractVar[AbstractBoundary]
    source: eqx.AbstractVar[Float[Array, "*state"] | None]
    lengths: eqx.AbstractVar[tuple[float, ...]]

    @property
    def grid(self) -> tuple[np.ndarray, ...]:
        """Coordinates of the unknowns along each axis (NumPy, for xarray coords)."""
        return tuple(
            self.boundary.grid(n, length)
            for n, length in zip(self.state_shape, self.lengths)
        )

    def __check_init__(self):
        owner = type(self).__name__
        check_boundary(self.boundary, owner)
        if jnp.ndim(self.kappa) != 0:
            raise ValueError(
                f"{owner}(kappa=...) must be a scalar, got shape "
                f"{jnp.shape(self.kappa)}."
            )
        check_nonnegative(owner, "kappa", self.kappa)
        if self.source is not None and self.source.shape != self.state_shape:
            raise ValueError(
                f"{owner}(source=...) has shape {self.source.shape} but the grid has "
                f"shape {self.state_shape}."
            )

    def _eigenvalues(self, dtype) -> Float[Array, "..."]:
        symbol = self.boundary.laplacian_symbol(self.state_shape, self.lengths)
        return self.kappa.astype(dtype) * jnp.asarray(symbol, dtype)

    def vector_field(
        self, t: ScalarLike, x: Float[Array, "*state"], args: PyTree = None
    ) -> Float[Array, "*state"]:
        del t, args
        lift = self.boundary.lift(self.state_shape, self.lengths, x.dtype)
        tendency = spectral_tendency(self.boundary, self._eigenvalues(x.dtype), x, lift)
        if self.source is None:
            return tendency
        return tendency + self.source.astype(x.dtype)

    def exact_flow(
        self, x0: Float[Array, "*state"], times: Float[Array, " time"]
    ) -> Float[Array, " time *state"]:
        lift = self.boundary.lift(self.state_shape, self.lengths, x0.dtype)
        source = None if self.source is None else self.source.astype(x0.dtype)
        return spectral_flow(
            self.boundary, self._eigenvalues(x0.dtype), x0, times, lift, source
        )


class Heat1D(AbstractHeat):
    """Diffusion ``u_t = kappa u_xx + source(x)`` on ``[0, length]``, ``n`` points.

    **Fields:**

    - `n`: number of unknowns (static). `Periodic()` puts them at ``j L / n``,
      `Dirichlet(left, right)` at the interior points ``j L / (n + 1)``.
    - `kappa`: diffusivity, >= 0 (array field: learnable).
    - `length`: domain length (static, default 1.0).
    - `boundary`: `Periodic()` (default) or `Dirichlet(left, right)`.
    - `source`: None or a time-independent field of shape ``(n,)`` (learnable).
    - `integrator`: default `ExactFlow()`.

    **Cost and limits:** the default `ExactFlow()` is exact in time for any output
    times, O(T n log n), and immune to stiffness. The spatial operator has
    eigenvalues down to ``-kappa (pi n / L)^2``: with an `Integrator`, an explicit
    solver needs steps below ``~2.8 / (kappa (pi n / L)^2)``, so use an implicit one
    (`diffrax.Kvaerno5()` with a `PIDController`, dense Jacobian O(n^3) per Newton
    factorisation) if you integrate in time at all.

    **Raises:** `ValueError` for `n < 2`, a negative or non-scalar `kappa`, a
    non-positive `length` or a `source` of the wrong shape; `TypeError` for a
    `boundary` that is not a boundary object.
    """

    n: int = eqx.field(static=True, default=128)
    kappa: Float[Array, ""] = eqx.field(converter=as_float, default=1.0)
    length: float = eqx.field(static=True, default=1.0)
    boundary: AbstractBoundary = Periodic()
    source: Float[Array, " n"] | None = eqx.field(
        converter=_optional_float, default=None
    )
    integrator: AbstractIntegrator = eqx.field(static=True, default=ExactFlow())

    def __check_init__(self):
        if self.n < 2:
            raise ValueError(f"Heat1D(n=...) must be >= 2, got {self.n}.")
        if not self.length > 0:
            raise ValueError(f"Heat1D(length=...) must be > 0, got {self.length}.")

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.n,)

    @property
    def lengths(self) -> tuple[float, ...]:
        """The domain length along each axis: ``(length,)``."""
        return (self.length,)


class Heat2D(AbstractHeat):
    """Diffusion ``u_t = kappa (u_xx + u_yy) + source(x, y)`` on a rectangle.

    **Fields:** as [`assimilax.dynamics.Heat1D`][], with `shape` ``(nx, ny)``
    (static, default ``(64, 64)``; axis 0 is ``x``) instead of `n`, and `lengths`
    ``(Lx, Ly)`` (static, default ``(1.0, 1.0)``) instead of `length`. See
    [`assimilax.dynamics.Dirichlet`][] for the boundary values in 2D.

    **Cost and limits:** `ExactFlow()` costs O(T N log N) with ``N = nx ny``: the
    time grows (almost) linearly in the number of grid points. Integrating in time
    with an implicit diffrax solver would build an ``N x N`` Jacobian: avoid beyond
    a few thousand points.
    """

    shape: tuple[int, ...] = eqx.field(static=True, default=(64, 64))
    kappa: Float[Array, ""] = eqx.field(converter=as_float, default=1.0)
    lengths: tuple[float, ...] = eqx.field(static=True, default=(1.0, 1.0))
    boundary: AbstractBoundary = Periodic()
    source: Float[Array, "nx ny"] | None = eqx.field(
        converter=_optional_float, default=None
    )
    integrator: AbstractIntegrator = eqx.field(static=True, default=ExactFlow())

    def __check_init__(self):
        if len(self.shape) != 2 or min(self.shape) < 2:
            raise ValueError(
                f"Heat2D(shape=...) must be two sizes >= 2, got {self.shape}."
            )
        if len(self.lengths) != 2 or not min(self.lengths) > 0:
            raise ValueError(
                f"Heat2D(lengths=...) must be two lengths > 0, got {self.lengths}."
            )

    @property
    def state_shape(self) -> tuple[int, ...]:
        return tuple(self.shape)
