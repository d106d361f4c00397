"""The base of the convolutional networks on 1D and 2D grids (autoencoders and
denoisers): the spatial rank, the input checks and the dtype of the weights."""

import abc
from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, Float

from ._networks import check_input, follow_dtype


class AbstractConvNetwork(eqx.Module):
    """A convolutional network on one state of `spatial_rank` axes (no channel
    or batch axis), with the state's shape and dtype out.

    A concrete network sets `spatial_rank` (1 or 2) and `default_kernel_size`
    as class variables; its family's abstract class builds the layers and
    implements `_forward`. It is called on one state, with its weights cast to
    the state's dtype first.
    """

    activation: Callable = eqx.field(static=True)
    spatial_rank: eqx.AbstractClassVar[int]
    default_kernel_size: eqx.AbstractClassVar[int]

    def _kernel_size(self, kernel_size: int | None) -> int | None:
        # `None` stands for the rank's default (5 in 1D, 3 in 2D), so that one
        # constructor serves both ranks; other values are checked by the caller.
        return self.default_kernel_size if kernel_size is None else kernel_size

    @abc.abstractmethod
    def _forward(self, x: Array) -> Array:
        """The network on a checked state `x`, with weights in the dtype of `x`."""

    # Loose annotations: the rank is checked, with a message naming the network.
    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """The network on one state: the shape and dtype of `x`."""
        check_input(type(self).__name__, x, self.spatial_rank)
        return follow_dtype(self, x.dtype)._forward(x)
