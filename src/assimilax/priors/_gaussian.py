"""Gaussian background terms ``0.5 (x - xb)ᵀ B⁻¹ (x - xb)`` and diagonal ``B``."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .._custom_types import Scalar
from ._base import AbstractPrior


def check_values(
    value: Float[Array, "..."], bad: Bool[Array, ""], message: str
) -> Float[Array, "..."]:
    """A `ValueError` now when `bad` is known, else an `eqx.error_if` (under jit)."""
    try:
        known = bool(np.asarray(bad))
    except jax.errors.TracerArrayConversionError:
        return eqx.error_if(value, bad, message)
    if known:
        raise ValueError(message)
    return value


def check_mean(owner: str, xb: ArrayLike) -> Float[Array, "..."]:
    """`xb` as a floating array; NaN/inf raise (eagerly, or at run time under jit)."""
    xb = jnp.asarray(xb)
    if not jnp.issubdtype(xb.dtype, jnp.floating):
        raise TypeError(
            f"{owner}(xb=...) must be floating point, got dtype {xb.dtype}."
        )
    message = f"{owner}(xb=...): the background contains NaN or inf."
    return check_values(xb, jnp.any(~jnp.isfinite(xb)), message)


def check_positive(
    owner: str,
    name: str,
    value: Float[ArrayLike, "..."],
    like: Float[Array, "..."] | jax.ShapeDtypeStruct,
    *,
    what: str = "xb",
) -> Float[Array, "..."]:
    """`value` in the dtype of `like`, broadcastable to its shape, entries > 0."""
    value = jnp.asarray(value, dtype=like.dtype)
    try:
        shape = np.broadcast_shapes(value.shape, like.shape)
    except ValueError:
        shape = None
    if shape != like.shape:
        raise ValueError(
            f"{owner}({name}=...) of shape {value.shape} does not broadcast to the "
            f"shape {like.shape} of {what}."
        )
    message = f"{owner}({name}=...) must be > 0 (and not NaN)."
    return check_values(value, jnp.any(~(value > 0)), message)


def broadcast(
    value: Float[Array, "..."], x: Float[Array, "..."]
) -> Float[Array, "..."]:
    # Explicit, because rank promotion is an error in strict mode (and in our tests).
    return jnp.broadcast_to(value, x.shape)


class AbstractBackground(AbstractPrior):
    """The background term ``0.5 (x - xb)ᵀ B⁻¹ (x - xb)`` of a variational problem.

    ``B`` is given through a square root ``S`` with ``B = S Sᵀ``. Concrete
    backgrounds implement `sqrt_covariance` (``v -> S v``), `sqrt_transpose`
    (``v -> Sᵀ v``) and `whiten` (``x -> S⁻¹ (x - xb)``). The control-variable
    transform ``x = xb + S v`` is `to_state`; in the variable ``v`` the background
    term is ``0.5 |v|^2``, and the Hessian of the cost is ``I + (data terms)``,
    which is why iterative solvers converge faster in ``v`` when ``B`` is
    ill-conditioned.
    """

    xb: eqx.AbstractVar[Float[Array, "*state"]]

    @abc.abstractmethod
    def sqrt_covariance(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """``S v``, with ``B = S Sᵀ``; `v` and the result have shape ``(*state)``."""

    @abc.abstractmethod
    def sqrt_transpose(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """``Sᵀ v``; `v` and the result have shape ``(*state)``."""

    @abc.abstractmethod
    def whiten(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """``S⁻¹ (x - xb)``, shape ``(*state)``: the residual of the background
        term."""

    def covariance(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """``B v = S (Sᵀ v)``; `v` and the result have shape ``(*state)``."""
        return self.sqrt_covariance(self.sqrt_transpose(v))

    def to_state(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """The control-variable transform ``x = xb + S v``, shape ``(*state)``."""
        return self.xb + self.sqrt_covariance(v)

    def energy(self, x: Float[Array, "*state"]) -> Scalar:
        return 0.5 * jnp.sum(jnp.square(self.whiten(x)))

    def residuals(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        return self.whiten(x)


class DiagonalBackground(AbstractBackground):
    """A background with diagonal ``B = diag(std^2)`` (uncorrelated errors).

    **Arguments:**

    - `xb`: the background state (prior mean), any shape (``"*state"``).
    - `std`: the background-error standard deviation, ``> 0``: a scalar or an
      array broadcastable to the shape of `xb`. Cast to the dtype of `xb`. It is a
      field, hence learnable (a "B scaling") when the problem is `argmin`'s `args`.

    **Raises:** `TypeError` for a non-floating `xb`; `ValueError` for a `std` that
    does not broadcast to `xb`, NaN/inf in `xb` or a non-positive `std` (when built
    under jit, the last two are an `EquinoxRuntimeError` at run time).

    **Cost:** O(size of x) per evaluation; ``S = diag(std)`` is symmetric.
    """

    xb: Float[Array, "*state"]
    std: Float[Array, "..."]

    def __init__(self, xb: Float[ArrayLike, "..."], std: Float[ArrayLike, "..."]):
        self.xb = check_mean("DiagonalBackground", xb)
        self.std = check_positive("DiagonalBackground", "std", std, self.xb)

    def sqrt_covariance(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        return broadcast(self.std, v) * v

    def sqrt_transpose(self, v: Float[Array, "*state"]) -> Float[Array, "*state"]:
        return broadcast(self.std, v) * v

    def whiten(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        return (x - self.xb) / broadcast(self.std, x)
