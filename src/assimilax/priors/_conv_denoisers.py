"""Residual convolutional denoisers for 1D and 2D states (PnP / RED priors)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._networks import check_input, check_sizes, conv_layer, follow_dtype


class _AbstractConvDenoiser(eqx.Module):
    """Residual convolutional denoiser on a 1D or 2D grid (shared implementation)."""

    layers: eqx.AbstractVar[tuple[eqx.nn.Conv, ...]]
    activation: eqx.AbstractVar[Callable]

    def _run(self, owner: str, x: Array, d: int) -> Array:
        check_input(owner, x, d)
        net = follow_dtype(self, x.dtype)
        h = x[None]
        for conv in net.layers[:-1]:
            h = self.activation(conv(h))
        # Residual learning (DnCNN): the layers estimate the noise.
        return x - net.layers[-1](h)[0]


def _denoiser_layers(d, width, depth, kernel_size, periodic, dtype, key):
    keys = jr.split(key, depth)
    channels = [1] + [width] * (depth - 1) + [1]
    layers = [
        conv_layer(d, c_in, c_out, kernel_size, periodic, dtype, k)
        for c_in, c_out, k in zip(channels[:-1], channels[1:], keys)
    ]
    # A zero last layer: the untrained denoiser is the identity (its prior energy
    # is zero) and the denoising loss starts at the noise variance.
    last = layers[-1]
    last = eqx.tree_at(lambda c: c.weight, last, jnp.zeros_like(last.weight))
    last = eqx.tree_at(lambda c: c.bias, last, jnp.zeros_like(last.bias))
    return tuple(layers[:-1]) + (last,)


def _check_depth(owner: str, depth: int) -> None:
    if not isinstance(depth, int) or depth < 2:
        raise ValueError(f"{owner}(depth=...) must be an int >= 2, got {depth!r}.")


class ConvDenoiser1D(_AbstractConvDenoiser):
    """A residual convolutional denoiser ``D`` for 1D states, ``(n,) -> (n,)``.

    ``D(x) = x - f(x)``, with ``f`` a stack of `depth` convolutions (the last one
    linear, to one channel) that estimates the noise (DnCNN). Use it in
    `DenoiserPrior` (plug-and-play / RED) or, as ``φ``, in `EnergyPrior`.

    **Arguments:**

    - `width`: channels of the hidden layers (default 32).
    - `depth`: number of convolutions (>= 2; default 4).
    - `kernel_size`: convolution kernel size (default 5).
    - `periodic`: circular padding if `True` (default), zero padding otherwise.
    - `activation`: default `jax.nn.gelu`.
    - `dtype`: the weights' dtype (default: JAX's default floating dtype); at call
      they are cast to the state's dtype.
    - `key`: a PRNG key for the initial weights.

    The last convolution starts at zero, so the untrained denoiser is the identity.

    **Raises:** `ValueError` for sizes < 1 or `depth` < 2; at call, `TypeError`
    for a non-floating state and `ValueError` for a state of the wrong rank.

    **Cost:** O(n width² kernel_size depth) per call.

    ??? cite "References"

        Zhang, Zuo, Chen, Meng, Zhang. *Beyond a Gaussian denoiser: residual
        learning of deep CNN for image denoising*. IEEE TIP 2017.
    """

    layers: tuple[eqx.nn.Conv, ...]
    activation: Callable = eqx.field(static=True)

    def __init__(
        self,
        *,
        width: int = 32,
        depth: int = 4,
        kernel_size: int = 5,
        periodic: bool = True,
        activation: Callable = jax.nn.gelu,
        dtype=None,
        key: PRNGKeyArray,
    ):
        check_sizes("ConvDenoiser1D", width=width, kernel_size=kernel_size)
        _check_depth("ConvDenoiser1D", depth)
        self.layers = _denoiser_layers(
            1, width, depth, kernel_size, periodic, dtype, key
        )
        self.activation = activation

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """``D(x)``, shape ``(n,)`` and dtype of `x`."""
        return self._run("ConvDenoiser1D", x, 1)


class ConvDenoiser2D(_AbstractConvDenoiser):
    """A residual convolutional denoiser ``D`` for 2D fields, ``(nx, ny) -> (nx, ny)``.

    As `ConvDenoiser1D` with 2D convolutions.

    **Arguments:**

    - `width`: channels of the hidden layers (default 32).
    - `depth`: number of convolutions (>= 2; default 4).
    - `kernel_size`: convolution kernel size (default 3).
    - `periodic`: circular padding if `True` (default), zero padding otherwise.
    - `activation`: default `jax.nn.gelu`.
    - `dtype`: the weights' dtype (default: JAX's default floating dtype); at call
      they are cast to the state's dtype.
    - `key`: a PRNG key for the initial weights.

    The last convolution starts at zero, so the untrained denoiser is the identity.

    **Raises:** `ValueError` for sizes < 1 or `depth` < 2; at call, `TypeError`
    for a non-floating state and `ValueError` for a state of the wrong rank.

    **Cost:** O(nx ny width² kernel_size² depth) per call.
    """

    layers: tuple[eqx.nn.Conv, ...]
    activation: Callable = eqx.field(static=True)

    def __init__(
        self,
        *,
        width: int = 32,
        depth: int = 4,
        kernel_size: int = 3,
        periodic: bool = True,
        activation: Callable = jax.nn.gelu,
        dtype=None,
        key: PRNGKeyArray,
    ):
        check_sizes("ConvDenoiser2D", width=width, kernel_size=kernel_size)
        _check_depth("ConvDenoiser2D", depth)
        self.layers = _denoiser_layers(
            2, width, depth, kernel_size, periodic, dtype, key
        )
        self.activation = activation

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """``D(x)``, shape ``(nx, ny)`` and dtype of `x`."""
        return self._run("ConvDenoiser2D", x, 2)
