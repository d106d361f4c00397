"""A background with a dense, full ``B`` given as a covariance matrix."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ._gaussian import AbstractBackground, check_mean, check_values


class CovarianceBackground(AbstractBackground):
    """A background with a full covariance matrix ``B`` (small states).

    ``B = V diag(λ) Vᵀ`` is factorised once (an eigendecomposition) and its
    symmetric square root ``S = V diag(√λ) Vᵀ`` used for the control-variable
    transform. Meant for states of up to a few thousand variables, such as
    Lorenz-96 with a climatological ``B`` or one estimated from background errors
    (`assimilax.assimilation.background_error_covariance`); for fields use
    `DiffusionBackground`.

    **Arguments:**

    - `xb`: the background state, shape ``(n,)``.
    - `covariance`: ``B``, shape ``(n, n)``, symmetric positive definite (cast to
      the dtype of `xb`). Its factors are fields, so ``B`` built from outer
      parameters inside `jit` is differentiable (through `jnp.linalg.eigh`).

    **Raises:** `TypeError` for a non-floating `xb`; `ValueError` for an `xb`
    that is not 1-D, a `covariance` of the wrong shape, not symmetric or not
    positive definite (eagerly; under jit an `EquinoxRuntimeError`), NaN in `xb`.

    **Cost:** O(n³) once, O(n²) per application.
    """

    xb: Float[Array, " n"]
    eigenvectors: Float[Array, "n n"]
    sqrt_eigenvalues: Float[Array, " n"]

    # Loose annotations: the shapes are checked below, with messages naming them.
    def __init__(
        self, xb: Float[ArrayLike, "..."], covariance: Float[ArrayLike, "..."]
    ):
        xb = check_mean("CovarianceBackground", xb)
        if xb.ndim != 1:
            raise ValueError(
                f"CovarianceBackground(xb=...) must be 1-D (a state vector), got "
                f"shape {xb.shape}; flatten fields or use DiffusionBackground."
            )
        covariance = jnp.asarray(covariance, dtype=xb.dtype)
        if covariance.shape != (xb.size, xb.size):
            raise ValueError(
                f"CovarianceBackground(covariance=...) must have shape "
                f"{(xb.size, xb.size)} to match xb, got {covariance.shape}."
            )
        scale = jnp.max(jnp.abs(covariance))
        tolerance = 100 * np.finfo(np.dtype(xb.dtype)).eps * scale
        asymmetric = jnp.max(jnp.abs(covariance - covariance.T)) > tolerance
        covariance = check_values(
            covariance,
            asymmetric | jnp.any(~jnp.isfinite(covariance)),
            "CovarianceBackground(covariance=...) must be symmetric and finite.",
        )
        values, vectors = jnp.linalg.eigh(0.5 * (covariance + covariance.T))
        values = check_values(
            values,
            ~(jnp.min(values) > 0),
            "CovarianceBackground(covariance=...) must be positive definite; "
            "its smallest eigenvalue is <= 0 (add a small multiple of the "
            "identity to a rank-deficient sample covariance).",
        )
        self.xb = xb
        self.eigenvectors = vectors
        self.sqrt_eigenvalues = jnp.sqrt(values)

    @property
    def covariance_matrix(self) -> Float[Array, "n n"]:
        """``B`` as a dense ``(n, n)`` matrix."""
        scaled = self.eigenvectors * jnp.square(self.sqrt_eigenvalues)[None, :]
        return scaled @ self.eigenvectors.T

    def sqrt_covariance(self, v: Float[Array, " n"]) -> Float[Array, " n"]:
        return self.eigenvectors @ (self.sqrt_eigenvalues * (self.eigenvectors.T @ v))

    def sqrt_transpose(self, v: Float[Array, " n"]) -> Float[Array, " n"]:
        return self.sqrt_covariance(v)  # S is symmetric

    def whiten(self, x: Float[Array, " n"]) -> Float[Array, " n"]:
        coefficients = self.eigenvectors.T @ (x - self.xb)
        return self.eigenvectors @ (coefficients / self.sqrt_eigenvalues)
