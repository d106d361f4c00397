"""Boundary conditions for grid models, and the spectral basis each one implies.

Each boundary object knows its grid, the transform that diagonalises the Laplacian
on it (real FFT for periodic, type-I sine transform for Dirichlet) and the harmonic
lift that carries non-zero boundary values, so that the models are written once.
"""

import abc

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Complex, Float

from ._checks import as_float


def _dst1(u: Float[Array, "..."], axis: int) -> Float[Array, "..."]:
    """Type-I discrete sine transform along `axis`:
    ``S_m = sum_j u_j sin(pi m j / (n + 1))``, ``j, m = 1..n``.

    Done with a real FFT of the odd extension ``[0, u, 0, -reverse(u)]`` (length
    ``2n + 2``), because `jax.numpy.fft` has no sine transform: O(n log n) and
    differentiable. Its own inverse up to the factor ``2 / (n + 1)``.
    """
    u = jnp.moveaxis(u, axis, -1)
    n = u.shape[-1]
    zero = jnp.zeros(u.shape[:-1] + (1,), u.dtype)
    extended = jnp.concatenate([zero, u, zero, -u[..., ::-1]], axis=-1)
    transformed = -0.5 * jnp.fft.rfft(extended, axis=-1)[..., 1 : n + 1].imag
    return jnp.moveaxis(transformed, -1, axis)


class AbstractBoundary(eqx.Module):
    """A boundary condition for the grid models (`Heat1D`, `Heat2D`)."""

    @abc.abstractmethod
    def grid(self, n: int, length: float) -> np.ndarray:
        """Coordinates of the `n` unknowns on ``[0, length]``."""

    @abc.abstractmethod
    def wavenumbers(self, n: int, length: float, last: bool) -> np.ndarray:
        """Wavenumbers of the transform along one axis (`last`: the rfft axis)."""

    @abc.abstractmethod
    def forward(self, u: Float[Array, "..."], ndim: int) -> Array:
        """Transform `u`, of shape ``(..., *grid)``, over its last `ndim` axes:
        ``(..., *modes)`` coefficients (a real sine transform for `Dirichlet`, the
        half-spectrum complex ``rfftn`` for `Periodic`, whose last axis has
        ``n // 2 + 1`` modes)."""

    @abc.abstractmethod
    def inverse(self, uh: Array, shape: tuple[int, ...]) -> Float[Array, "..."]:
        """Inverse of `forward`, back to a real field of trailing shape `shape`."""

    @abc.abstractmethod
    def lift(
        self, shape: tuple[int, ...], lengths: tuple[float, ...], dtype
    ) -> Float[Array, "..."]:
        """A harmonic field of shape `shape` (the grid's) with the boundary values
        (``u - lift`` is homogeneous); zeros for `Periodic`."""

    def laplacian_symbol(
        self, shape: tuple[int, ...], lengths: tuple[float, ...]
    ) -> np.ndarray:
        """Eigenvalues ``-|k|^2`` of the Laplacian in the transform's layout."""
        last = len(shape) - 1
        ks = [
            self.wavenumbers(n, length, i == last)
            for i, (n, length) in enumerate(zip(shape, lengths))
        ]
        grids = np.meshgrid(*ks, indexing="ij")
        return -sum(k**2 for k in grids)


class Periodic(AbstractBoundary):
    """Periodic boundaries: ``n`` points ``x_j = j L / n``, ``j = 0..n-1``."""

    def grid(self, n, length):
        return np.arange(n) * (length / n)

    def wavenumbers(self, n, length, last):
        spacing = length / n
        freq = np.fft.rfftfreq(n, spacing) if last else np.fft.fftfreq(n, spacing)
        return 2 * np.pi * freq

    def forward(self, u, ndim) -> Complex[Array, "..."]:
        return jnp.fft.rfftn(u, axes=tuple(range(-ndim, 0)))

    def inverse(self, uh, shape):
        return jnp.fft.irfftn(uh, s=shape, axes=tuple(range(-len(shape), 0)))

    def lift(self, shape, lengths, dtype):
        return jnp.zeros(shape, dtype)


class Dirichlet(AbstractBoundary):
    """Fixed values: ``u = left`` at ``x = 0`` and ``u = right`` at ``x = L``.

    The ``n`` unknowns are the interior points ``x_j = j L / (n + 1)``,
    ``j = 1..n``. In 2D the values vary linearly in ``x`` (the first axis) from
    `left` to `right` along the ``y = 0`` and ``y = L_y`` edges, so the steady state
    is that linear profile; ``Dirichlet()`` (zero everywhere) is the common case.
    `left` and `right` are scalars (array fields: learnable).
    """

    left: Float[Array, ""] = eqx.field(converter=as_float, default=0.0)
    right: Float[Array, ""] = eqx.field(converter=as_float, default=0.0)

    def __check_init__(self):
        for name, value in (("left", self.left), ("right", self.right)):
            if jnp.ndim(value) != 0:
                raise ValueError(
                    f"Dirichlet({name}=...) must be a scalar, got shape "
                    f"{jnp.shape(value)}."
                )

    def grid(self, n, length):
        return np.arange(1, n + 1) * (length / (n + 1))

    def wavenumbers(self, n, length, last):
        del last
        return np.pi * np.arange(1, n + 1) / length

    def forward(self, u, ndim):
        for axis in range(-ndim, 0):
            u = _dst1(u, axis)
        return u

    def inverse(self, uh, shape):
        scale = np.prod([2.0 / (n + 1) for n in shape])
        return scale * self.forward(uh, len(shape))

    def lift(self, shape, lengths, dtype):
        x = jnp.asarray(self.grid(shape[0], lengths[0]) / lengths[0], dtype)
        left = self.left.astype(dtype)
        profile = left + (self.right.astype(dtype) - left) * x
        return jnp.broadcast_to(profile.reshape((-1,) + (1,) * (len(shape) - 1)), shape)


def check_boundary(boundary: object, owner: str) -> None:
    """A `TypeError` naming the field when `boundary` is not a boundary object."""
    if not isinstance(boundary, AbstractBoundary):
        raise TypeError(
            f"{owner}(boundary=...) must be Periodic() or Dirichlet(left, right), "
            f"got {boundary!r}."
        )
