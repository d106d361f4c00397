"""Residual convolutional denoisers for 1D and 2D states (PnP / RED priors)."""

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, PRNGKeyArray

from ._conv import AbstractConvNetwork
from ._networks import check_sizes, conv_layer


class _AbstractConvDenoiser(AbstractConvNetwork):
    """Residual convolutional denoiser on a grid of `spatial_rank` axes: the
    fields, the constructor and the forward pass, shared by `ConvDenoiser1D` and
    `ConvDenoiser2D`."""

    layers: tuple[eqx.nn.Conv, ...]

    def __init__(
        self,
        *,
        width: int = 32,
        depth: int = 4,
        kernel_size: int | None = None,
        periodic: bool = True,
        activation: Callable = jax.nn.gelu,
        dtype=None,
        key: PRNGKeyArray,
    ):
        owner = type(self).__name__
        kernel_size = self._kernel_size(kernel_size)
        check_sizes(owner, width=width, kernel_size=kernel_size)
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"{owner}(depth=...) must be an int >= 2, got {depth!r}.")
        keys = jr.split(key, depth)
        channels = [1] + [width] * (depth - 1) + [1]
        layers = [
            conv_layer(self.spatial_rank, c_in, c_out, kernel_size, periodic, dtype, k)
            for c_in, c_out, k in zip(channels[:-1], channels[1:], keys)
        ]
        # A zero last layer: the untrained denoiser is the identity (its prior
        # energy is zero) and the denoising loss starts at the noise variance.
        last = layers[-1]
        last = eqx.tree_at(lambda c: c.weight, last, jnp.zeros_like(last.weight))
        last = eqx.tree_at(lambda c: c.bias, last, jnp.zeros_like(last.bias))
        self.layers = tuple(layers[:-1]) + (last,)
        self.activation = activation

    def _forward(self, x: Array) -> Array:
        h = x[None]
        for conv in self.layers[:-1]:
            h = self.activation(conv(h))
        # Residual learning (DnCNN): the layers estimate the noise.
        return x - self.layers[-1](h)[0]


class ConvDenoiser1D(_AbstractConvDenoiser):
    """A residual convolutional denoiser ``D`` for 1D states, ``(n,) -> (n,)``.

    ``D(x) = x - f(x)``, with ``f`` a stack of `depth` convolutions (the last one
    linear, to one channel) that estimates the noise (DnCNN). Use it in
    `DenoiserPrior` (plug-and-play / RED) or, as ``φ``, in `EnergyPrior`.
    ``D(x)`` has the shape ``(n,)`` and dtype of `x`.

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

    spatial_rank: ClassVar[int] = 1
    default_kernel_size: ClassVar[int] = 5


class ConvDenoiser2D(_AbstractConvDenoiser):
    """A residual convolutional denoiser ``D`` for 2D fields, ``(nx, ny) -> (nx, ny)``.

    As `ConvDenoiser1D` with 2D convolutions. ``D(x)`` has the shape
    ``(nx, ny)`` and dtype of `x`.

    **Arguments:** those of `ConvDenoiser1D`, except `kernel_size` (default 3).

    The last convolution starts at zero, so the untrained denoiser is the identity.

    **Raises:** as `ConvDenoiser1D`.

    **Cost:** O(nx ny width² kernel_size² depth) per call.
    """

    spatial_rank: ClassVar[int] = 2
    default_kernel_size: ClassVar[int] = 3
