"""Learnable corrections of a model's tendency, for `CorrectedDynamics`."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import as_float


class LocalConvCorrection(eqx.Module):
    """A local convolutional network on periodic 1D states: ``(n,) -> (n,)``.

    The first layer convolves the state with `hidden` stencils of `width` points
    (circular padding: the state is a ring, as Lorenz-96's), the next ones are
    pointwise (kernel 1) with `activation` in between, and the last maps back to
    one channel. Every output ``i`` is then the same function of
    ``x[i - width // 2], ..., x[i + width // 2]`` (indices modulo ``n``): the
    correction is local and translation-equivariant, like the networks that
    learn Lorenz-96's tendency or its unresolved-scale term in Brajard et al.
    (2020) and Bocquet et al. (2020) (without their bilinear layer). The last
    layer's weights are scaled by `output_scale` and its bias is zero, so the
    correction starts small and the corrected model close to its base.

    **Arguments** (keyword-only):

    - `key`: a PRNG key for the initial weights (`eqx.nn.Conv1d`'s default
      initialisation).
    - `width`: odd stencil width of the first layer (default 5).
    - `hidden`: channels of the hidden layers (default 16).
    - `depth`: number of convolutional layers, >= 1 (default 3; 1 is a single
      linear stencil).
    - `activation`: elementwise function between layers (static; default
      `jax.numpy.tanh`).
    - `output_scale`: factor on the last layer's initial weights (default 1e-2).
    - `dtype`: of the weights (default: JAX's default float).

    The input enters unscaled: with states of magnitude ~10 (Lorenz-96) many
    first-layer `tanh` units start saturated; scale the state beforehand if that
    matters for training.

    **Cost:** O(n (width + (depth - 2) hidden) hidden) per state. **Limits:** 1D
    periodic states of shape ``(n,)`` (leading batch axes allowed); for a state
    holding two rings (`TwoScaleLorenz96`) the stencil wraps across the join, so
    correct its slow part alone (a truncated `Lorenz96(n=K)`).
    """

    layers: tuple[eqx.nn.Conv1d, ...]
    activation: Callable = eqx.field(static=True)

    def __init__(
        self,
        *,
        key: PRNGKeyArray,
        width: int = 5,
        hidden: int = 16,
        depth: int = 3,
        activation: Callable = jnp.tanh,
        output_scale: float = 1e-2,
        dtype=None,
    ):
        if width < 1 or width % 2 == 0:
            raise ValueError(
                f"LocalConvCorrection(width=...) must be odd and >= 1, got {width}."
            )
        if hidden < 1:
            raise ValueError(
                f"LocalConvCorrection(hidden=...) must be >= 1, got {hidden}."
            )
        if depth < 1:
            raise ValueError(
                f"LocalConvCorrection(depth=...) must be >= 1, got {depth}."
            )
        channels = [1] + [hidden] * (depth - 1) + [1]
        kernels = [width] + [1] * (depth - 1)
        keys = jr.split(key, depth)
        layers = [
            eqx.nn.Conv1d(
                c_in,
                c_out,
                kernel,
                padding=kernel // 2,
                padding_mode="CIRCULAR",
                dtype=dtype,
                key=k,
            )
            for c_in, c_out, kernel, k in zip(
                channels[:-1], channels[1:], kernels, keys
            )
        ]
        last = layers[-1]
        layers[-1] = eqx.tree_at(
            lambda conv: (conv.weight, conv.bias),
            last,
            (output_scale * last.weight, jnp.zeros_like(last.bias)),
        )
        self.layers = tuple(layers)
        self.activation = activation

    def __call__(self, x: Float[Array, "*batch n"]) -> Float[Array, "*batch n"]:
        """The correction at the state `x` of shape ``(n,)`` (or states of shape
        ``(*batch, n)``, each corrected alone), of `x`'s shape and dtype
        (computed in the weights' dtype)."""
        flat = x.reshape(-1, 1, x.shape[-1])  # (batch, one input channel, n)
        out = jax.vmap(self._single)(flat.astype(self.layers[0].weight.dtype))
        return out.reshape(x.shape).astype(x.dtype)

    def _single(self, h: Float[Array, "1 n"]) -> Float[Array, "1 n"]:
        for layer in self.layers[:-1]:
            h = self.activation(layer(h))
        return self.layers[-1](h)


class LinearCorrection(eqx.Module):
    """``correction(x) = weight * x + bias`` with scalar `weight` and `bias`.

    The simplest correction, with a known optimum in tests and a useful first
    term: a Lorenz-96 run with forcing ``F - d`` is corrected exactly by
    ``bias = d``, ``weight = 0``, and a wrong damping rate by `weight`.

    **Fields:** `weight`, `bias`: scalars (array fields, learnable; default 0,
    the null correction). Any state shape ``(*state)``; the output has `x`'s
    shape and dtype.

    **Raises:** `ValueError` when `weight` or `bias` is not a scalar.
    """

    weight: Float[Array, ""] = eqx.field(converter=as_float, default=0.0)
    bias: Float[Array, ""] = eqx.field(converter=as_float, default=0.0)

    def __check_init__(self):
        for name in ("weight", "bias"):
            value = getattr(self, name)
            if jnp.ndim(value) != 0:
                raise ValueError(
                    f"LinearCorrection({name}=...) must be a scalar, got shape "
                    f"{jnp.shape(value)}."
                )

    def __call__(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """``weight * x + bias``, of `x`'s shape ``(*state)`` and dtype."""
        return self.weight.astype(x.dtype) * x + self.bias.astype(x.dtype)
