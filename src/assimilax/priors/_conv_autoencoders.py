"""Convolutional autoencoders for 1D and 2D states (energy priors, 4DVarNet)."""

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, PRNGKeyArray

from ._conv import AbstractConvNetwork
from ._networks import check_sizes, conv_layer


def _pool(h: Array) -> Array:
    """Average over 2 (or 2x2) neighbouring points: halves each spatial axis."""
    channels, *spatial = h.shape
    split = [channels]
    for size in spatial:
        split += [size // 2, 2]
    return jnp.mean(h.reshape(split), axis=tuple(range(2, 2 + 2 * len(spatial), 2)))


def _upsample(h: Array) -> Array:
    for axis in range(1, h.ndim):
        h = jnp.repeat(h, 2, axis=axis)
    return h


class _AbstractConvAutoencoder(AbstractConvNetwork):
    """Convolutional autoencoder on a grid of `spatial_rank` axes: the fields, the
    constructor and the forward pass, shared by `ConvAutoencoder1D` and
    `ConvAutoencoder2D`."""

    encoder: tuple[eqx.nn.Conv, ...]
    decoder: tuple[eqx.nn.Conv, ...]

    def __init__(
        self,
        *,
        width: int = 32,
        latent_channels: int = 2,
        depth: int = 2,
        kernel_size: int | None = None,
        periodic: bool = True,
        activation: Callable = jax.nn.gelu,
        dtype=None,
        key: PRNGKeyArray,
    ):
        kernel_size = self._kernel_size(kernel_size)
        check_sizes(
            type(self).__name__,
            width=width,
            latent_channels=latent_channels,
            depth=depth,
            kernel_size=kernel_size,
        )
        keys = iter(jr.split(key, 2 * depth + 4))

        def conv(c_in, c_out):
            return conv_layer(
                self.spatial_rank, c_in, c_out, kernel_size, periodic, dtype, next(keys)
            )

        self.encoder = (
            (conv(1, width),)
            + tuple(conv(width, width) for _ in range(depth))
            + (conv(width, latent_channels),)
        )
        self.decoder = (
            (conv(latent_channels, width),)
            + tuple(conv(width, width) for _ in range(depth))
            + (conv(width, 1),)
        )
        self.activation = activation

    def _forward(self, x: Array) -> Array:
        levels = len(self.encoder) - 2
        if any(size % 2**levels for size in x.shape):
            raise ValueError(
                f"{type(self).__name__}: every axis of the state must be divisible "
                f"by 2**depth = {2**levels}, got shape {x.shape}."
            )
        h = self.activation(self.encoder[0](x[None]))
        for conv in self.encoder[1:-1]:
            h = _pool(self.activation(conv(h)))
        h = self.encoder[-1](h)  # the bottleneck: linear
        h = self.activation(self.decoder[0](h))
        for conv in self.decoder[1:-1]:
            h = self.activation(conv(_upsample(h)))
        return self.decoder[-1](h)[0]


class ConvAutoencoder1D(_AbstractConvAutoencoder):
    """A convolutional autoencoder ``φ`` for 1D states, shape ``(n,) -> (n,)``.

    Encoder: a convolution to `width` channels, then `depth` blocks of
    (convolution, activation, average-pooling by 2), then a linear convolution
    to `latent_channels` channels: the bottleneck holds
    ``latent_channels * n / 2**depth`` numbers. The decoder mirrors it with
    nearest-neighbour upsampling. Use it in `EnergyPrior` (4DVarNet style).
    ``φ(x)`` has the shape ``(n,)`` and dtype of `x`.

    **Arguments:**

    - `width`: channels of the hidden layers (default 32).
    - `latent_channels`: channels at the bottleneck (default 2).
    - `depth`: number of halvings of the grid (default 2; each axis of the state
      must be divisible by ``2**depth``).
    - `kernel_size`: convolution kernel size (default 5).
    - `periodic`: circular padding (a ring, as Lorenz-96) if `True` (default),
      zero padding otherwise.
    - `activation`: default `jax.nn.gelu` (smooth: LBFGS and Hessian-vector
      products see a smooth energy).
    - `dtype`: the weights' dtype (default: JAX's default floating dtype). At call
      the weights are cast to the state's dtype, so the output has the dtype of
      the input.
    - `key`: a PRNG key for the initial weights.

    **Raises:** `ValueError` for sizes < 1 (`depth` < 0); at call, `TypeError`
    for a non-floating state and `ValueError` for a state of the wrong rank or
    not divisible by ``2**depth``.

    **Cost:** O(n width² kernel_size depth) per call.
    """

    spatial_rank: ClassVar[int] = 1
    default_kernel_size: ClassVar[int] = 5


class ConvAutoencoder2D(_AbstractConvAutoencoder):
    """A convolutional autoencoder ``φ`` for 2D fields, ``(nx, ny) -> (nx, ny)``.

    As `ConvAutoencoder1D` with 2D convolutions and 2x2 pooling: the bottleneck
    holds ``latent_channels * nx * ny / 4**depth`` numbers. ``φ(x)`` has the
    shape ``(nx, ny)`` and dtype of `x`.

    **Arguments:** those of `ConvAutoencoder1D`, except:

    - `kernel_size`: convolution kernel size (default 3).
    - `periodic`: circular padding (a torus: a doubly periodic field) if `True`
      (default), zero padding otherwise.

    **Raises:** as `ConvAutoencoder1D`.

    **Cost:** O(nx ny width² kernel_size² depth) per call.
    """

    spatial_rank: ClassVar[int] = 2
    default_kernel_size: ClassVar[int] = 3
