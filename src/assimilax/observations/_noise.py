"""Observation-error models: the covariance ``R`` of the observation noise."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Shaped

from .._custom_types import Scalar


def is_concrete(x: ArrayLike) -> bool:
    """Whether `x` has a value now (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_positive(owner: str, std: Shaped[ArrayLike, "..."]) -> Float[Array, "..."]:
    """`std` as a floating array whose entries are all > 0 (and not NaN).

    A concrete value is checked here and raises a `ValueError`; a traced one (a
    noise built inside jit, e.g. from an outer parameter) gets an `eqx.error_if`
    that raises when the program runs.
    """
    std = jnp.asarray(std)
    if not jnp.issubdtype(std.dtype, jnp.floating):
        # Integer stds would make R integer and break strict dtype promotion later.
        raise TypeError(f"{owner}(std=...) must be floating point, got {std.dtype}.")
    message = f"{owner}(std=...) must be > 0 (and not NaN): noise std <= 0."
    if is_concrete(std):
        if not np.all(np.asarray(std) > 0):
            raise ValueError(message)
        return std
    return eqx.error_if(std, jnp.any(~(std > 0)), message)


class AbstractNoise(eqx.Module):
    """The observation-error covariance ``R`` at one time.

    Concrete noise models implement `whiten` (``r -> R^{-1/2} r``); the weighted
    square ``0.5 rᵀ R⁻¹ r`` follows. Those that can also draw errors ``R^{1/2} e``
    implement `sample` (`twin_experiment` needs it). Their floating fields (the
    standard deviations) are parameters: an outer loop may learn "R scalings".
    """

    @abc.abstractmethod
    def whiten(self, residual: Float[Array, "*obs"]) -> Float[Array, "*obs"]:
        """``R^{-1/2} r`` for a residual of shape ``(*obs)`` (one time), same shape:
        residuals for Gauss-Newton (incremental 4DVar)."""

    def weighted_square(self, residual: Float[Array, "*obs"]) -> Scalar:
        """``0.5 rᵀ R⁻¹ r`` (a scalar)."""
        return 0.5 * jnp.sum(jnp.square(self.whiten(residual)))

    def sample(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype
    ) -> Float[Array, "..."]:
        """Draws ``R^{1/2} e`` with ``e ~ N(0, I)``, of shape `shape` (``(*batch,
        *obs)``: independent draws along the leading axes) and dtype `dtype`.

        Optional: a noise model that only weights residuals need not implement it
        (the default raises), but `twin_experiment` samples with it.

        **Raises:** `NotImplementedError` here, in the base class.
        """
        del key, shape, dtype
        raise NotImplementedError(
            f"{type(self).__name__} cannot draw noise samples: implement its "
            "`sample(key, shape, dtype)` (twin_experiment draws the observation "
            "errors with it), or use ScalarNoise / DiagonalNoise."
        )


class ScalarNoise(AbstractNoise):
    """Independent errors with one standard deviation: ``R = std² I``.

    **Arguments:**

    - `std`: the standard deviation, a positive scalar (a Python float or a JAX
      scalar; the latter can be an outer parameter).

    **Raises:** `ValueError` for ``std <= 0`` or NaN (an `EquinoxRuntimeError` at
    run time when built under jit); `TypeError` for a non-floating `std`.

    **Cost:** O(size of the residual).
    """

    std: Float[Array, ""]

    def __init__(self, std: float | Shaped[ArrayLike, "..."]):
        std = check_positive("ScalarNoise", std)
        if std.ndim != 0:
            raise ValueError(
                f"ScalarNoise(std=...) must be a scalar, got shape {std.shape}; use "
                "DiagonalNoise for one std per observation."
            )
        self.std = std

    def whiten(self, residual: Float[Array, "*obs"]) -> Float[Array, "*obs"]:
        return residual / self.std

    def sample(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype
    ) -> Float[Array, "..."]:
        return jr.normal(key, shape, dtype) * self.std.astype(dtype)


class DiagonalNoise(AbstractNoise):
    """Independent errors, one standard deviation per observation: ``R = diag(std²)``.

    **Arguments:**

    - `std`: positive standard deviations, an array of the observation shape
      (``"*obs"``) at one time, the same at every time of a window.

    **Raises:** as `ScalarNoise`, plus a `ValueError` in `whiten` when a residual's
    shape differs from that of `std` (no silent broadcasting).

    **Cost:** O(size of the residual).
    """

    std: Float[Array, "*obs"]

    def __init__(self, std: Shaped[ArrayLike, "*obs"]):
        self.std = check_positive("DiagonalNoise", std)

    def whiten(self, residual: Float[Array, "*obs"]) -> Float[Array, "*obs"]:
        if residual.shape != self.std.shape:
            raise ValueError(
                f"DiagonalNoise: the residual has shape {residual.shape} but `std` "
                f"has shape {self.std.shape}."
            )
        return residual / self.std

    def sample(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype
    ) -> Float[Array, "..."]:
        """Draws of shape `shape`, whose trailing axes are `std`'s shape.

        **Raises:** `ValueError` when `shape` does not end with `std`'s shape.
        """
        if tuple(shape[len(shape) - self.std.ndim :]) != self.std.shape:
            raise ValueError(
                f"DiagonalNoise.sample(shape={tuple(shape)}): the trailing axes must "
                f"be the shape of `std`, {self.std.shape}."
            )
        std = jnp.broadcast_to(self.std.astype(dtype), shape)
        return jr.normal(key, shape, dtype) * std
