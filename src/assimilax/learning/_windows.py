"""A dataset of assimilation windows as stacked arrays, and its batches."""

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import xarray as xr
from jaxtyping import Array, PyTree


WINDOW_DIMS = ("window", "sample")


def stack_windows(data: Any, owner: str = "fit") -> tuple[PyTree[Array], int]:
    """Windows as one pytree of arrays with a leading window axis, and their number.

    `data` is an `xarray.Dataset` with a `window` (or `sample`) dim (each data
    variable becomes an entry of a dict, the window dim moved first; variables
    without it are the same for every window and are broadcast), a pytree of
    arrays sharing a leading window axis, or an iterable of per-window pytrees.
    """
    windows, size = _stack(data, owner)
    if size == 0:
        # Caught here, or `split` would blame `validation=` for leaving no window.
        raise ValueError(
            f"{owner}(data=...) holds no window: its leading window axis has size 0; "
            "give at least one assimilation window."
        )
    return windows, size


def _stack(data: Any, owner: str) -> tuple[PyTree[Array], int]:
    if isinstance(data, xr.Dataset):
        dims = [d for d in WINDOW_DIMS if d in data.dims]
        if not dims:
            raise ValueError(
                f"{owner}(data=...): the Dataset needs a `window` or `sample` "
                f"dim (one entry per assimilation window); it has {tuple(data.dims)}."
            )
        dim, size = dims[0], data.sizes[dims[0]]
        windows = {}
        for name, variable in data.data_vars.items():
            if dim in variable.dims:
                values = variable.transpose(dim, ...).values
            else:
                values = np.broadcast_to(variable.values, (size,) + variable.shape)
            if not np.issubdtype(values.dtype, np.number) and values.dtype != bool:
                raise TypeError(
                    f"{owner}(data=...): variable {name!r} is not numeric "
                    f"({values.dtype})."
                )
            windows[str(name)] = jnp.asarray(values)
        return windows, size
    if not isinstance(data, Mapping | tuple | list) or _is_pytree_of_arrays(data):
        leaves = jtu.tree_leaves(data)
        if not leaves:
            raise ValueError(f"{owner}(data=...) holds no arrays.")
        sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in leaves}
        if len(sizes) != 1 or None in sizes:
            raise ValueError(
                f"{owner}(data=...): every array must share a leading window axis; "
                f"got leading sizes {sorted(map(str, sizes))}."
            )
        return jtu.tree_map(jnp.asarray, data), sizes.pop()
    return _stack_iterable(data, owner)


def _is_pytree_of_arrays(data: Any) -> bool:
    # A dict/tuple of arrays (one stacked dataset) rather than a list of windows.
    return isinstance(data, Mapping | tuple) and all(
        isinstance(leaf, np.ndarray | jax.Array) for leaf in jtu.tree_leaves(data)
    )


def _stack_iterable(data: Iterable, owner: str) -> tuple[PyTree[Array], int]:
    windows = list(data)
    if not windows:
        raise ValueError(f"{owner}(data=...) holds no window.")
    structure = jtu.tree_structure(windows[0])
    for i, window in enumerate(windows):
        if jtu.tree_structure(window) != structure:
            raise ValueError(
                f"{owner}(data=...): window {i} does not have the structure of "
                "window 0."
            )
    return jtu.tree_map(lambda *xs: jnp.stack(xs), *windows), len(windows)


def take(windows: PyTree[Array], index: Array | np.ndarray) -> PyTree[Array]:
    """The windows at `index` (a batch), from stacked windows."""
    return jtu.tree_map(lambda a: a[index], windows)


def split(
    num: int, validation: float, key: Array, owner: str = "fit"
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation window indices: a random `validation` fraction."""
    if not 0.0 <= validation < 1.0:
        raise ValueError(
            f"{owner}(validation=...) must be in [0, 1), got {validation}."
        )
    count = int(round(validation * num))
    if validation > 0 and count == 0:
        count = 1
    if num - count < 1:
        raise ValueError(
            f"{owner}(validation={validation}) leaves no training window of {num}."
        )
    order = np.asarray(jax.random.permutation(key, num))
    return np.sort(order[count:]), np.sort(order[:count])


def batch_indices(step: int, num: int, batch_size: int, key: Array) -> np.ndarray:
    """Positions (into the training windows) of the batch of outer step `step`.

    Each epoch is a fresh permutation drawn from ``fold_in(key, epoch)``; an
    epoch has ``num // batch_size`` batches (the windows left over change from
    epoch to epoch). A function of `step` alone, so a resumed run draws exactly
    the batches the uninterrupted run would have.
    """
    per_epoch = num // batch_size
    epoch, position = divmod(step, per_epoch)
    order = _epoch_order(epoch, num, key)
    return order[position * batch_size : (position + 1) * batch_size]


# One permutation per epoch, drawn once (not once per step); keyed by the key's
# data, since typed PRNG keys are not hashable.
_ORDERS: dict[tuple, np.ndarray] = {}


def _epoch_order(epoch: int, num: int, key: Array) -> np.ndarray:
    tag = (epoch, num, np.asarray(jax.random.key_data(key)).tobytes())
    if tag not in _ORDERS:
        if len(_ORDERS) > 64:
            _ORDERS.clear()
        folded = jax.random.fold_in(key, epoch)
        _ORDERS[tag] = np.asarray(jax.random.permutation(folded, num))
    return _ORDERS[tag]
