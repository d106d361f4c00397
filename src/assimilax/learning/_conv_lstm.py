"""Convolutional LSTM cells on 1D and 2D grids, and the gradient modulator built
from them (the learned part of a 4DVarNet solver)."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
from jaxtyping import Array, Float, PRNGKeyArray

from ..priors._networks import conv_layer, follow_dtype


Hidden = tuple[Float[Array, " hidden *grid"], Float[Array, " hidden *grid"]]


class AbstractConvLSTMCell(eqx.Module):
    """A convolutional LSTM cell (Shi et al. 2015) on a grid of
    `num_spatial_dims` axes.

    The gates of `equinox.nn.LSTMCell` (input, forget, cell, output, in that
    order), with its matrix products replaced by one convolution of
    ``[input; h]`` over the grid: ``(in + hidden, *grid) -> (4 hidden, *grid)``.

    **Call:** ``cell(input, (h, c)) -> (h, c)`` with `input` of shape
    ``(input_size, *grid)`` and `h`, `c` of shape ``(hidden_size, *grid)``.
    """

    # Written by hand: Equinox has `LSTMCell` (dense) but no convolutional LSTM.
    conv: eqx.nn.Conv
    input_size: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)

    num_spatial_dims: ClassVar[int]

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        kernel_size: int = 5,
        periodic: bool = True,
        dtype=None,
        key: PRNGKeyArray,
    ):
        owner = type(self).__name__
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("kernel_size", kernel_size),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{owner}({name}=...) must be an int >= 1, got {value!r}."
                )
        if kernel_size % 2 == 0:
            # 'SAME' padding of an even kernel is asymmetric: the update would drift
            # by half a grid point at every step.
            raise ValueError(
                f"{owner}(kernel_size=...) must be odd, got {kernel_size}."
            )
        channels = (input_size + hidden_size, 4 * hidden_size)
        d = self.num_spatial_dims
        self.conv = conv_layer(d, *channels, kernel_size, periodic, dtype, key)
        self.input_size = input_size
        self.hidden_size = hidden_size

    def __call__(
        self, input: Float[Array, " channels *grid"], hidden: Hidden
    ) -> Hidden:
        h, c = hidden
        cell = follow_dtype(self, input.dtype)
        i, f, g, o = jnp.split(cell.conv(jnp.concatenate([input, h])), 4)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return h, c


class ConvLSTMCell1D(AbstractConvLSTMCell):
    """A convolutional LSTM cell on a 1D grid (Shi et al. 2015).

    The gates of `equinox.nn.LSTMCell` (input, forget, cell, output, in that order),
    with its matrix products replaced by one convolution of ``[input; h]`` over the
    grid: ``(in + hidden, n) -> (4 hidden, n)``. With ``kernel_size=1`` the cell is
    `equinox.nn.LSTMCell` applied at every grid point with shared weights (the
    coordinate-wise LSTM of Andrychowicz et al. 2016; tested).

    **Arguments:** `input_size`, `hidden_size`, `kernel_size` (odd, default 5),
    `periodic` (circular padding, default `True`; zeros otherwise), `dtype`,
    `key`.

    **Call:** ``cell(input, (h, c)) -> (h, c)`` with `input` of shape
    ``(input_size, n)`` and `h`, `c` of shape ``(hidden_size, n)``.

    **Cost:** O(n kernel_size hidden (in + hidden)) per call.
    """

    num_spatial_dims: ClassVar[int] = 1


class ConvLSTMCell2D(AbstractConvLSTMCell):
    """A convolutional LSTM cell on a 2D grid (Shi et al. 2015), the cell of
    4DVarNet's solver.

    As `ConvLSTMCell1D` with a 2D convolution (``kernel_size x kernel_size``):
    ``(in + hidden, ny, nx) -> (4 hidden, ny, nx)``.

    **Arguments:** `input_size`, `hidden_size`, `kernel_size` (odd, default 5),
    `periodic` (circular padding on both axes, a torus; default `True`), `dtype`,
    `key`.

    **Call:** ``cell(input, (h, c)) -> (h, c)`` with `input` of shape
    ``(input_size, ny, nx)`` and `h`, `c` of shape ``(hidden_size, ny, nx)``.

    **Cost:** O(ny nx kernel_size² hidden (in + hidden)) per call.
    """

    num_spatial_dims: ClassVar[int] = 2


class ConvLSTMModulator(eqx.Module):
    """The gradient modulator of a learned-gradient solver: a convolutional LSTM
    cell and a 1x1 readout, ``(g, (h, c)) -> (readout(h'), (h', c'))`` with
    ``(h', c') = cell(g, (h, c))``.

    The readout starts at zero, so the untrained modulator adds nothing to a
    gradient step (`LearnedGradientDescent` is then gradient descent).

    **Arguments:**

    - `num_spatial_dims`: 1 (states of shape ``(n,)``) or 2 (``(ny, nx)``);
      selects `ConvLSTMCell1D` or `ConvLSTMCell2D` (static: it fixes shapes).
    - `hidden_size`: LSTM channels per grid point (default 8).
    - `kernel_size`: the cell's convolution width (odd; default 5).
    - `periodic`: circular padding (default `True`), zeros otherwise.
    - `dtype`, `key`.

    **Call:** ``modulator(g, (h, c)) -> (update, (h, c))``, `g` and `update` of the
    state's shape ``(*grid)``, `h` and `c` of shape ``(hidden_size, *grid)``;
    `init_hidden(x)` gives the zero ``(h, c)`` for a state `x`.
    """

    cell: AbstractConvLSTMCell
    readout: eqx.nn.Conv

    def __init__(
        self,
        num_spatial_dims: int,
        *,
        hidden_size: int = 8,
        kernel_size: int = 5,
        periodic: bool = True,
        dtype=None,
        key: PRNGKeyArray,
    ):
        cells = {1: ConvLSTMCell1D, 2: ConvLSTMCell2D}
        if num_spatial_dims not in cells:
            raise ValueError(
                "ConvLSTMModulator(num_spatial_dims=...) must be 1 (states of shape "
                f"(n,)) or 2 ((ny, nx)), got {num_spatial_dims!r}."
            )
        cell_key, readout_key = jr.split(key)
        self.cell = cells[num_spatial_dims](
            1,
            hidden_size,
            kernel_size=kernel_size,
            periodic=periodic,
            dtype=dtype,
            key=cell_key,
        )
        readout = eqx.nn.Conv(
            num_spatial_dims, hidden_size, 1, 1, dtype=dtype, key=readout_key
        )
        # A zero readout: the untrained solver is gradient descent.
        self.readout = jtu.tree_map(
            lambda a: jnp.zeros_like(a) if eqx.is_array(a) else a, readout
        )

    @property
    def num_spatial_dims(self) -> int:
        """The rank a state must have: 1 or 2."""
        return self.cell.num_spatial_dims

    def init_hidden(self, x: Float[Array, "*grid"]) -> Hidden:
        """Zero ``(h, c)``, each of shape ``(hidden_size, *x.shape)`` and x's dtype."""
        zeros = jnp.zeros((self.cell.hidden_size, *x.shape), x.dtype)
        return zeros, zeros

    def __call__(
        self, g: Float[Array, "*grid"], hidden: Hidden
    ) -> tuple[Float[Array, "*grid"], Hidden]:
        net = follow_dtype(self, g.dtype)
        h, c = net.cell(g[None], hidden)
        return net.readout(h)[0], (h, c)
