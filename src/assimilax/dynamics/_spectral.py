"""Tendency and exact flow of linear constant-coefficient models in a spectral basis."""

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._boundary import AbstractBoundary


def spectral_tendency(
    boundary: AbstractBoundary,
    eigenvalues: Array,
    x: Float[Array, "*grid"],
    lift: Float[Array, "*grid"],
) -> Float[Array, "*grid"]:
    """``L (x - lift)`` for the operator ``L`` with the given `eigenvalues`."""
    ndim = x.ndim
    xh = boundary.forward(x - lift, ndim)
    # Strict dtype promotion: put the (real) eigenvalues in the transform's dtype.
    return boundary.inverse(eigenvalues.astype(xh.dtype) * xh, x.shape)


def spectral_flow(
    boundary: AbstractBoundary,
    eigenvalues: Array,
    x0: Float[Array, "*grid"],
    times: Float[Array, " time"],
    lift: Float[Array, "*grid"],
    source: Float[Array, "*grid"] | None,
) -> Float[Array, " time *grid"]:
    """Exact solution of ``dx/dt = L (x - lift) + source`` at `times`.

    With ``w = x - lift`` and ``ŵ`` its transform, each mode obeys
    ``ŵ' = λ ŵ + f̂``, so ``ŵ(τ) = exp(λτ) ŵ(0) + τ φ₁(λτ) f̂`` with
    ``φ₁(z) = (exp(z) - 1) / z`` (``φ₁(0) = 1``: a mean source accumulates).
    """
    ndim = x0.ndim
    tau = (times - times[0]).reshape((-1,) + (1,) * ndim)
    w0h = boundary.forward(x0 - lift, ndim)
    z = eigenvalues.astype(w0h.dtype)[None] * tau.astype(w0h.dtype)
    wh = jnp.exp(z) * w0h[None]
    if source is not None:
        fh = boundary.forward(source, ndim)
        # Double `where`, so that the gradient of the removable singularity at
        # z = 0 is not NaN; expm1 keeps small |z| accurate.
        zero = z == 0
        safe = jnp.where(zero, 1, z)
        phi = jnp.where(zero, 1, jnp.expm1(safe) / safe)
        wh = wh + tau.astype(w0h.dtype) * phi * fh[None]
    return boundary.inverse(wh, x0.shape) + lift[None]
