"""Small networks for learned priors: shared helpers, an MLP autoencoder, and the
standardisation wrapper."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._gaussian import check_values


def check_input(owner: str, x: Array, ndim: int) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{owner}: the state must be floating, got dtype {x.dtype}.")
    if x.ndim != ndim:
        raise ValueError(
            f"{owner} takes states of {ndim} dimension(s) (no batch axis: use "
            f"jax.vmap), got shape {x.shape}."
        )


def follow_dtype(module: eqx.Module, dtype: jnp.dtype) -> eqx.Module:
    # Weights cast to the state's dtype, so that float32 and float64 states both
    # run under strict dtype promotion; gradients flow back through the cast.
    def cast(leaf):
        return leaf.astype(dtype) if eqx.is_inexact_array(leaf) else leaf

    return jtu.tree_map(cast, module)


def check_sizes(owner: str, **sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or value < (0 if name == "depth" else 1):
            least = 0 if name == "depth" else 1
            raise ValueError(
                f"{owner}({name}=...) must be an int >= {least}, got {value!r}."
            )


def conv_layer(d, c_in, c_out, kernel_size, periodic, dtype, key):
    return eqx.nn.Conv(
        d,
        c_in,
        c_out,
        kernel_size,
        padding="SAME",
        padding_mode="CIRCULAR" if periodic else "ZEROS",
        dtype=dtype,
        key=key,
    )


class _Static(eqx.Module):
    """A function held as a static field: no pytree leaf."""

    fn: Callable = eqx.field(static=True)

    def __call__(self, x: Array) -> Array:
        return self.fn(x)


def _identity(x: Array) -> Array:
    return x


def _mlp(in_size, out_size, width, depth, activation, dtype, key) -> eqx.nn.MLP:
    mlp = eqx.nn.MLP(in_size, out_size, width, depth, activation, dtype=dtype, key=key)
    # `eqx.nn.MLP` keeps its activations as ordinary (function) leaves; inside a
    # problem that is `argmin`'s `args` every leaf must be an array or static, so
    # the activations become static fields.
    return eqx.tree_at(
        lambda m: (m.activation, m.final_activation),
        mlp,
        (_Static(activation), _Static(_identity)),
    )


class MLPAutoencoder(eqx.Module):
    """A fully connected autoencoder on the flattened state, any state shape.

    ``φ(x) = reshape(dec(enc(ravel(x))))`` with `enc` an `eqx.nn.MLP` from
    `size` to `bottleneck` and `dec` one back. With ``depth=0`` both are single
    affine maps: a linear autoencoder, whose optimum is the projection onto the
    leading principal subspace of the training data (PCA).

    **Arguments:**

    - `size`: the number of state variables (the flattened state).
    - `bottleneck`: the width of the code (>= 1).
    - `width`: hidden width (default 64; unused with ``depth=0``).
    - `depth`: hidden layers in the encoder and in the decoder (default 1).
    - `activation`: default `jax.nn.gelu`.
    - `dtype`: the weights' dtype; at call they are cast to the state's dtype.
    - `key`: a PRNG key for the initial weights.

    **Raises:** `ValueError` for sizes < 1 (`depth` < 0); at call, `TypeError`
    for a non-floating state and `ValueError` for a state of another size.

    **Cost:** O(size width + width² depth) per call; no spatial structure is
    assumed, so it suits small states (Lorenz-96) or reduced fields.
    """

    encoder: eqx.nn.MLP
    decoder: eqx.nn.MLP
    size: int = eqx.field(static=True)

    def __init__(
        self,
        size: int,
        bottleneck: int,
        *,
        width: int = 64,
        depth: int = 1,
        activation: Callable = jax.nn.gelu,
        dtype=None,
        key: PRNGKeyArray,
    ):
        check_sizes(
            "MLPAutoencoder", size=size, bottleneck=bottleneck, width=width, depth=depth
        )
        k_enc, k_dec = jr.split(key)
        self.encoder = _mlp(size, bottleneck, width, depth, activation, dtype, k_enc)
        self.decoder = _mlp(bottleneck, size, width, depth, activation, dtype, k_dec)
        self.size = size

    def __call__(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """``φ(x)``, the shape and dtype of `x`."""
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(
                f"MLPAutoencoder: the state must be floating, got dtype {x.dtype}."
            )
        if x.size != self.size:
            raise ValueError(
                f"MLPAutoencoder(size={self.size}) got a state of shape {x.shape} "
                f"({x.size} values)."
            )
        net = follow_dtype(self, x.dtype)
        return net.decoder(net.encoder(x.reshape(-1))).reshape(x.shape)


class Standardised(eqx.Module):
    """A network on standardised states, called on states in physical units.

    ``network_phys(x) = mean + std * network((x - mean) / std)``. `pretrain_prior`
    returns its network wrapped this way: the network is trained on standardised
    historical states (zero mean, unit variance per variable), and the priors of a
    variational problem receive states in physical units.

    **Arguments:**

    - `network`: a callable Equinox module on standardised states (same shape in
      and out).
    - `mean`, `std`: the statistics of the training data, broadcastable to the
      state's shape; `std` > 0. Frozen: they enter under `jax.lax.stop_gradient`,
      so fine-tuning through `argmin` trains the network, not the statistics.

    **Raises:** `ValueError` if `std` and `mean` do not broadcast together, or
    `std` is not > 0 (an `EquinoxRuntimeError` at run time when built under jit).
    """

    network: Callable
    mean: Float[Array, "..."]
    std: Float[Array, "..."]

    # Loose annotation: checked below, with a message naming the field.
    def __init__(
        self,
        network: object,
        mean: Float[ArrayLike, "..."],
        std: Float[ArrayLike, "..."],
    ):
        if not callable(network):
            raise TypeError(
                f"Standardised(network=...) must be callable, got {network!r}."
            )
        mean, std = jnp.asarray(mean), jnp.asarray(std)
        try:
            np.broadcast_shapes(mean.shape, std.shape)
        except ValueError:
            raise ValueError(
                f"Standardised(std=...) of shape {std.shape} does not broadcast with "
                f"mean of shape {mean.shape}."
            ) from None
        message = "Standardised(std=...) must be > 0 (and not NaN)."
        self.std = check_values(std, jnp.any(~(std > 0)), message)
        self.mean = mean
        self.network = network

    def __call__(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """The network in physical units: shape and dtype of `x`."""
        mean = jnp.broadcast_to(
            jax.lax.stop_gradient(self.mean).astype(x.dtype), x.shape
        )
        std = jnp.broadcast_to(jax.lax.stop_gradient(self.std).astype(x.dtype), x.shape)
        return mean + std * self.network((x - mean) / std)


class Precision(eqx.Module):
    """Evaluate `network` in another floating dtype: ``network(x.astype(dtype))``,
    cast back to the dtype of ``x``.

    For a float64 variational problem with a convolutional prior: on a CPU,
    float64 convolutions are several times slower than float32 ones (13x for a
    16-channel `ConvDenoiser2D` on 32x32 fields), while the solver, the dynamics
    and the other terms keep float64. The prior's energy and its gradient are
    then accurate to float32 round-off (relative ~1e-7), which bounds how tightly
    the inner problem can be solved (a relative gradient norm of ~1e-5 is
    reachable).

    **Arguments:**

    - `network`: a callable Equinox module (same shape in and out).
    - `dtype`: the floating dtype to evaluate it in (static; default float32).
    """

    network: Callable
    dtype: np.dtype = eqx.field(static=True)

    def __init__(self, network: object, dtype: object = np.float32):
        if not callable(network):
            raise TypeError(
                f"Precision(network=...) must be callable, got {network!r}."
            )
        dtype = np.dtype(dtype)
        if not np.issubdtype(dtype, np.floating):
            raise TypeError(f"Precision(dtype=...) must be floating, got {dtype}.")
        self.network = network
        self.dtype = dtype

    def __call__(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """``network(x)`` evaluated in `dtype`: shape and dtype of `x`."""
        return self.network(x.astype(self.dtype)).astype(x.dtype)
