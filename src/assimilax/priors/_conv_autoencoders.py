"""Convolutional autoencoders for 1D and 2D states (energy priors, 4DVarNet)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._networks import check_input, check_sizes, conv_layer, follow_dtype


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


class _AbstractConvAutoencoder(eqx.Module):
    """Convolutional autoencoder on a 1D or 2D grid (shared implementation)."""

    encoder: eqx.AbstractVar[tuple[eqx.nn.Conv, ...]]
    decoder: eqx.AbstractVar[tuple[eqx.nn.Conv, ...]]
    activation: eqx.AbstractVar[Callable]

    def _run(self, owner: str, x: Array, d: int) -> Array:
        check_input(owner, x, d)
        levels = len(self.encoder) - 2
        if any(size % 2**levels for size in x.shape):
            raise ValueError(
                f"{owner}: every axis of the state must be divisible by "
                f"2**depth = {2**levels}, got shape {x.shape}."
            )
        net = follow_dtype(self, x.dtype)
        h = self.activation(net.encoder[0](x[None]))
        for conv in net.encoder[1:-1]:
            h = _pool(self.activation(conv(h)))
        h = net.encoder[-1](h)  # the bottleneck: linear
        h = self.activation(net.decoder[0](h))
        for conv in net.decoder[1:-1]:
            h = self.activation(conv(_upsample(h)))
        return net.decoder[-1](h)[0]


def _autoencoder_layers(
    d, width, latent_channels, depth, kernel_size, periodic, dtype, key
):
    keys = iter(jr.split(key, 2 * depth + 4))
    conv = lambda c_in, c_out: conv_layer(  # noqa: E731
        d, c_in, c_out, kernel_size, periodic, dtype, next(keys)
    )
    encoder = (
        (conv(1, width),)
        + tuple(conv(width, width) for _ in range(depth))
        + (conv(width, latent_channels),)
    )
    decoder = (
        (conv(latent_channels, width),)
        + tuple(conv(width, width) for _ in range(depth))
        + (conv(width, 1),)
    )
    return encoder, decoder


class ConvAutoencoder1D(_AbstractConvAutoencoder):
    """A convolutional autoencoder ``φ`` for 1D states, shape ``(n,) -> (n,)``.

    Encoder: a convolution to `width` channels, then `depth` blocks of
    (convolution, activation, average-pooling by 2), then a linear convolution
    to `latent_channels` channels: the bottleneck holds
    ``latent_channels * n / 2**depth`` numbers. The decoder mirrors it with
    nearest-neighbour upsampling. Use it in `EnergyPrior` (4DVarNet style).

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

    encoder: tuple[eqx.nn.Conv, ...]
    decoder: tuple[eqx.nn.Conv, ...]
    activation: Callable = eqx.field(static=True)

    def __init__(
        self,
        *,
        width: int = 32,
        latent_channels: int = 2,
        depth: int = 2,
        kernel_size: int = 5,
        periodic: bool = True,
        activation: Callable = jax.nn.gelu,
        dtype=None,
        key: PRNGKeyArray,
    ):
        check_sizes(
            "ConvAutoencoder1D",
            width=width,
            latent_channels=latent_channels,
            depth=depth,
            kernel_size=kernel_size,
        )
        self.encoder, self.decoder = _autoencoder_layers(
            1, width, latent_channels, depth, kernel_size, periodic, dtype, key
        )
        self.activation = activation

    # Loose annotations: the rank is checked, with a message naming the network.
    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """``φ(x)``, shape ``(n,)`` and dtype of `x`."""
        return self._run("ConvAutoencoder1D", x, 1)


class ConvAutoencoder2D(_AbstractConvAutoencoder):
    """A convolutional autoencoder ``φ`` for 2D fields, ``(nx, ny) -> (nx, ny)``.

    As `ConvAutoencoder1D` with 2D convolutions and 2x2 pooling: the bottleneck
    holds ``latent_channels * nx * ny / 4**depth`` numbers.

    **Arguments:**

    - `width`: channels of the hidden layers (default 32).
    - `latent_channels`: channels at the bottleneck (default 2).
    - `depth`: number of halvings of the grid (default 2; each axis of the state
      must be divisible by ``2**depth``).
    - `kernel_size`: convolution kernel size (default 3).
    - `periodic`: circular padding (a torus: a doubly periodic field) if `True`
      (default), zero padding otherwise.
    - `activation`: default `jax.nn.gelu` (smooth: LBFGS and Hessian-vector
      products see a smooth energy).
    - `dtype`: the weights' dtype (default: JAX's default floating dtype). At call
      the weights are cast to the state's dtype, so the output has the dtype of
      the input.
    - `key`: a PRNG key for the initial weights.

    **Raises:** `ValueError` for sizes < 1 (`depth` < 0); at call, `TypeError`
    for a non-floating state and `ValueError` for a state of the wrong rank or
    not divisible by ``2**depth``.

    **Cost:** O(nx ny width² kernel_size² depth) per call.
    """

    encoder: tuple[eqx.nn.Conv, ...]
    decoder: tuple[eqx.nn.Conv, ...]
    activation: Callable = eqx.field(static=True)

    def __init__(
        self,
        *,
        width: int = 32,
        latent_channels: int = 2,
        depth: int = 2,
        kernel_size: int = 3,
        periodic: bool = True,
        activation: Callable = jax.nn.gelu,
        dtype=None,
        key: PRNGKeyArray,
    ):
        check_sizes(
            "ConvAutoencoder2D",
            width=width,
            latent_channels=latent_channels,
            depth=depth,
            kernel_size=kernel_size,
        )
        self.encoder, self.decoder = _autoencoder_layers(
            2, width, latent_channels, depth, kernel_size, periodic, dtype, key
        )
        self.activation = activation

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """``φ(x)``, shape ``(nx, ny)`` and dtype of `x`."""
        return self._run("ConvAutoencoder2D", x, 2)
