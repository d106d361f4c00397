"""Correlated background errors through an implicit diffusion operator."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._gaussian import AbstractBackground, broadcast, check_mean, check_positive


class DiffusionBackground(AbstractBackground):
    """A background with spatially correlated errors, ``B = Σ C Σ``.

    ``Σ = diag(std)`` and the correlation ``C = L²`` is built from ``steps`` (``m``)
    implicit-Euler steps of the diffusion equation on the periodic grid of `xb`:
    ``L = c^{-1/2} (I - κ Δ)^{-m}``, with ``Δ`` the second-order finite-difference
    Laplacian (1D or 2D, grid `spacing` ``h``), ``κ = length_scale² / (4 m)`` and
    ``c`` chosen so that ``C`` has a unit diagonal (then `std` is the actual
    standard deviation of every grid point). The spectrum of ``C`` is
    ``(1 + κ k²)^{-2m} ≈ exp(-length_scale² k² / 2)``, so as ``m`` grows the
    correlation tends to the Gaussian ``exp(-r² / (2 length_scale²))``; with small
    ``m`` it has heavier, Matérn-like tails. ``S = Σ L`` is the square root used
    by the control-variable transform ``x = xb + S v``.

    **Arguments:**

    - `xb`: the background state on a periodic grid, shape ``(n,)`` or ``(nx, ny)``.
    - `std`: standard deviation (> 0), a scalar or an array broadcastable to `xb`.
    - `length_scale`: correlation length (> 0, scalar), in the units of `spacing`.
    - `spacing`: grid spacing ``h`` (static, > 0; default 1.0: grid units).
    - `steps`: number ``m`` of implicit diffusion steps (static, >= 1; default 2).

    `std` and `length_scale` are fields, hence learnable in an outer loop.

    **Raises:** `ValueError` for an `xb` that is not 1D or 2D, a `std` that does
    not broadcast to it, a non-scalar `length_scale`, non-positive `spacing` or
    `steps < 1`, NaN/inf in `xb`, non-positive `std` or `length_scale` (the last
    three are an `EquinoxRuntimeError` at run time when built under jit).

    **Cost and limits:** ``L`` is circulant on a periodic grid, so we apply it
    exactly with real FFTs, O(n log n), instead of the ``m`` banded linear solves
    an operational system would run (those are what a non-periodic domain would
    need; not provided). `whiten` applies ``L⁻¹``, whose gain at the grid scale is
    ``(1 + 4 d κ / h²)^m`` (``d`` the dimension): the direct form of the cost is
    ill-conditioned for long length scales, and the control variable
    ``v = S⁻¹ (x - xb)`` (Hessian ``I + ...``) is the form to minimise in.

    ??? cite "References"

        Weaver, Courtier. *Correlation modelling on the sphere using a generalized
        diffusion equation*. QJRMS 2001.
        Mirouze, Weaver. *Representation of correlation functions in variational
        assimilation using an implicit diffusion operator*. QJRMS 2010.
    """

    xb: Float[Array, "*state"]
    std: Float[Array, "..."]
    length_scale: Float[Array, ""]
    spacing: float = eqx.field(static=True)
    steps: int = eqx.field(static=True)

    def __init__(
        self,
        xb: Float[ArrayLike, "..."],
        std: Float[ArrayLike, "..."],
        length_scale: Float[ArrayLike, "..."],
        *,
        spacing: float = 1.0,
        steps: int = 2,
    ):
        owner = "DiffusionBackground"
        self.xb = check_mean(owner, xb)
        if self.xb.ndim not in (1, 2):
            raise ValueError(
                f"{owner}(xb=...) must be a 1D or 2D field on a periodic grid, got "
                f"shape {self.xb.shape}."
            )
        if jnp.ndim(length_scale) != 0:
            raise ValueError(
                f"{owner}(length_scale=...) must be a scalar, got shape "
                f"{jnp.shape(length_scale)}."
            )
        if not spacing > 0:
            raise ValueError(f"{owner}(spacing=...) must be > 0, got {spacing}.")
        if steps < 1:
            raise ValueError(f"{owner}(steps=...) must be >= 1, got {steps}.")
        self.std = check_positive(owner, "std", std, self.xb)
        self.length_scale = check_positive(owner, "length_scale", length_scale, self.xb)
        self.spacing = float(spacing)
        self.steps = int(steps)

    def _filter(self, *, half: bool) -> Float[Array, "..."]:
        # (1 + κ λ)^(-m) with λ the eigenvalues of -Δ, on the rfft grid (half) or on
        # the full FFT grid (for the normalisation constant).
        kappa = self.length_scale**2 / (4 * self.steps)
        shape = self.xb.shape
        eigenvalues = jnp.zeros((), self.xb.dtype)
        for axis, n in enumerate(shape):
            last = half and axis == len(shape) - 1
            freq = np.fft.rfftfreq(n) if last else np.fft.fftfreq(n)
            lam = (2.0 - 2.0 * np.cos(2.0 * np.pi * freq)) / self.spacing**2
            index = [None] * len(shape)
            index[axis] = slice(None)
            eigenvalues = eigenvalues + jnp.asarray(lam, self.xb.dtype)[tuple(index)]
        return (1.0 + kappa * eigenvalues) ** (-self.steps)

    def _smooth(self, u: Float[Array, "*state"], power: int) -> Float[Array, "*state"]:
        """``L^power u`` (power = 1, 2 or -1) by a real FFT pair."""
        full = self._filter(half=False)
        # The diagonal of the unnormalised L² is the mean of its spectrum (circulant).
        gain = (self._filter(half=True) / jnp.sqrt(jnp.mean(full**2))) ** power
        axes = tuple(range(u.ndim))
        spectrum = jnp.fft.rfftn(u, axes=axes)
        # Strict dtype promotion: multiply complex by complex.
        spectrum = spectrum * gain.astype(spectrum.dtype)
        return jnp.fft.irfftn(spectrum, s=u.shape, axes=axes)

    def sqrt_covariance(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        return broadcast(self.std, v) * self._smooth(v, 1)

    def sqrt_transpose(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        return self._smooth(broadcast(self.std, v) * v, 1)

    def covariance(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        # One FFT pair with L² instead of two with L.
        return broadcast(self.std, v) * self._smooth(broadcast(self.std, v) * v, 2)

    def whiten(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        return self._smooth((x - self.xb) / broadcast(self.std, x), -1)
