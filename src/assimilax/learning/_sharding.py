"""Data parallelism for `fit`: a device mesh with a `data` axis, across hosts too.

The batch of windows is placed with a `NamedSharding` that splits it over the
mesh's `data` axis, parameters and optimiser state are replicated, and XLA
partitions the one `jit` training step (GSPMD): the batch sums of losses and
hypergradients become all-reduces. Across hosts, every
process holds its own windows (its shard of the dataset) and contributes its
share of each batch; `jax.experimental.multihost_utils` assembles the global
arrays. All of it is JAX's own machinery: no scheduler, no pickling.
"""

import os
from collections.abc import Sequence

import jax
import numpy as np
import xarray as xr
from jax.experimental import multihost_utils
from jax.sharding import Mesh, PartitionSpec
from jaxtyping import PyTree


DATA_AXIS = "data"
BATCH = PartitionSpec(DATA_AXIS)
REPLICATED = PartitionSpec()


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"data"`` over `devices` (default: every device of
    every process, `jax.devices()`), for `fit(mesh=...)`."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("data_mesh(devices=...) is empty.")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_mesh(mesh: Mesh, batch_size: int, owner: str = "fit") -> int:
    """Validate `mesh` for a global batch of `batch_size` windows; return this
    process's share of each batch (``batch_size / process_count``)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"{owner}(mesh=...) must be a jax.sharding.Mesh (see "
            f"assimilax.learning.data_mesh), got {type(mesh).__name__}."
        )
    if DATA_AXIS not in mesh.axis_names:
        raise ValueError(
            f"{owner}(mesh=...) needs an axis named {DATA_AXIS!r} to split the "
            f"windows over; it has {mesh.axis_names}."
        )
    size = mesh.shape[DATA_AXIS]
    if batch_size % size:
        raise ValueError(
            f"{owner}(batch_size={batch_size}) must be a multiple of the mesh's "
            f"{DATA_AXIS!r} axis ({size} devices): each device takes an equal share."
        )
    return batch_size // jax.process_count()


def to_global(tree: PyTree, mesh: Mesh, spec: PartitionSpec) -> PyTree:
    """This process's arrays (its rows of a batch for `BATCH`; the whole value,
    the same on every process, for `REPLICATED`) as global arrays on `mesh`."""
    return multihost_utils.host_local_array_to_global_array(tree, mesh, spec)


def to_local(tree: PyTree, mesh: Mesh, spec: PartitionSpec) -> PyTree:
    """Global arrays on `mesh` as NumPy arrays of this process's rows."""
    local = multihost_utils.global_array_to_host_local_array(tree, mesh, spec)
    return jax.tree_util.tree_map(np.asarray, local)


def process_shard(data: xr.Dataset, dim: str = "window") -> xr.Dataset:
    """This process's contiguous share of `data` along `dim` (``isel``), for
    multi-host `fit`: process ``i`` of ``p`` gets windows ``[i n/p, (i+1) n/p)``.

    **Raises:** `ValueError` when `dim` is missing or its size is not a multiple
    of the number of processes (every process needs as many windows).
    """
    if dim not in data.dims:
        raise ValueError(f"process_shard: the Dataset has no {dim!r} dim.")
    count, index = jax.process_count(), jax.process_index()
    size = data.sizes[dim]
    if size % count:
        raise ValueError(
            f"process_shard: {size} windows along {dim!r} do not split evenly over "
            f"{count} processes."
        )
    share = size // count
    return data.isel({dim: slice(index * share, (index + 1) * share)})


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process JAX run (`jax.distributed.initialize`), before any
    other JAX call. Arguments left `None` come from ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, else from the cluster
    (SLURM, Open MPI...), as JAX detects it. CPU processes talk through Gloo.
    """
    if num_processes is None and "JAX_NUM_PROCESSES" in os.environ:
        num_processes = int(os.environ["JAX_NUM_PROCESSES"])
    if process_id is None and "JAX_PROCESS_ID" in os.environ:
        process_id = int(os.environ["JAX_PROCESS_ID"])
    # Only read by CPU backends; they have no cross-process collectives without it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
