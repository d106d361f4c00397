"""Tikhonov (ridge, gradient, curvature) penalties."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._custom_types import Scalar
from ._base import AbstractPrior
from ._gaussian import check_values


class Tikhonov(AbstractPrior):
    """``J(x) = 0.5 * weight * sum_axes |D^order x|^2``.

    ``D`` is the forward difference along one axis (no wrap-around: the field is
    not assumed periodic), applied `order` times, and the sum runs over every axis
    of ``x``: `order=0` is the ridge penalty ``0.5 w |x|^2``, `order=1` penalises
    the gradient (smoothness), `order=2` the curvature. Differences are in grid
    units; fold the grid spacing into `weight`.

    **Arguments:**

    - `weight`: ``w >= 0`` (scalar). A field: learnable in an outer loop.
    - `order`: 0, 1 or 2 (static; default 1).

    A sum of squares: `residuals` gives ``sqrt(w) D^order x`` per axis (a tuple), so
    `GaussNewton` applies. In `WeakConstraint4DVar` the prior acts on each state.

    **Raises:** `ValueError` for a non-scalar, negative or NaN `weight` (an
    `EquinoxRuntimeError` at run time when built under jit) or another `order`.

    **Cost:** O(size of x).
    """

    weight: Float[Array, ""]
    order: int = eqx.field(static=True)

    def __init__(self, weight: Float[ArrayLike, "..."], *, order: int = 1):
        if jnp.ndim(weight) != 0:
            raise ValueError(
                f"Tikhonov(weight=...) must be a scalar, got shape {jnp.shape(weight)}."
            )
        if order not in (0, 1, 2):
            raise ValueError(f"Tikhonov(order=...) must be 0, 1 or 2, got {order}.")
        weight = jnp.asarray(weight)
        message = "Tikhonov(weight=...) must be >= 0 (and not NaN)."
        self.weight = check_values(weight, ~(weight >= 0), message)
        self.order = order

    def _differences(
        self, x: Float[Array, "*state"]
    ) -> tuple[Float[Array, "..."], ...]:
        if self.order == 0:
            return (x,)
        return tuple(jnp.diff(x, n=self.order, axis=axis) for axis in range(x.ndim))

    def energy(self, x: Float[Array, "*state"]) -> Scalar:
        squares = sum(jnp.sum(jnp.square(d)) for d in self._differences(x))
        # Cast (not promote): a Python-float weight follows the precision of x.
        return 0.5 * self.weight.astype(x.dtype) * squares

    def residuals(self, x: Float[Array, "*state"]) -> tuple[Float[Array, "..."], ...]:
        root = jnp.sqrt(self.weight.astype(x.dtype))
        return tuple(root * d for d in self._differences(x))
