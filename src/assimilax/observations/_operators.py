"""Observation operators ``H``: the map from one model state to what is observed."""

import abc
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real, Shaped


class AbstractObservationOperator(eqx.Module):
    """The observation operator ``H``: one model state to its observed part.

    Concrete operators implement `__call__` on the state at *one* time (it may be
    nonlinear: Gauss-Newton linearises it through the residuals);
    `Observations` maps them over time. Their floating fields (a `Linear` matrix)
    are parameters like any other and may be learnt by an outer loop.

    Two optional hooks describe shapes and validity, so that `Observations` and the
    xarray readers can check inputs eagerly:

    - `state_shape`: the state shape the operator expects, or `None` for any;
    - `observed`: which entries of the observation space carry information
      (`None`: all). `Observations` drops data outside it from its mask.
    """

    @abc.abstractmethod
    def __call__(self, x: Float[Array, "*state"]) -> Float[Array, "*obs"]:
        """``H x`` for the state ``x`` at one time."""

    @property
    def state_shape(self) -> tuple[int, ...] | None:
        """The state shape this operator expects (`None`: any shape)."""
        return None

    def obs_shape(self, state_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of ``H x`` for a state of shape `state_shape` (no FLOPs)."""
        out = jax.eval_shape(
            self, jax.ShapeDtypeStruct(state_shape, jnp.result_type(float))
        )
        return tuple(out.shape)

    def observed(self) -> Bool[Array, "*obs"] | None:
        """The entries of ``H x`` that are observed: a boolean mask of shape
        ``(*obs)``, or `None` when all of them are."""
        return None


class Identity(AbstractObservationOperator):
    """Every state variable observed: ``H x = x``. Any state shape; no cost."""

    def __call__(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        return x


class Mask(AbstractObservationOperator):
    """A gappy field: the state observed where `mask` is True.

    The observation space is the full grid, ``H x = where(mask, x, 0)``, rather
    than the compressed list of observed values: missing data (NaN) are then a
    second mask on the same grid, the observations keep the grid's coordinates in
    xarray, and ``H`` is its own adjoint. `Observations` ignores the unobserved
    points (its mask is ANDed with this one), so what the data hold there does
    not matter.

    **Arguments:**

    - `mask`: boolean array of the state's shape (``"*state"``).

    **Cost:** O(size of the state) per call, whatever the fraction observed; for a
    few stations on a large grid `Stations` is cheaper.
    """

    mask: Bool[Array, "*state"]

    def __init__(self, mask: Shaped[ArrayLike, "*state"]):
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise TypeError(f"Mask(mask=...) must be boolean, got dtype {mask.dtype}.")
        self.mask = mask

    @property
    def state_shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)

    def __call__(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        if x.shape != self.mask.shape:
            raise ValueError(
                f"Mask: the state has shape {x.shape} but `mask` has shape "
                f"{self.mask.shape}."
            )
        return jnp.where(self.mask, x, jnp.zeros_like(x))

    def observed(self) -> Bool[Array, "*state"]:
        return self.mask


class Stations(AbstractObservationOperator):
    """Point observations at grid points ("stations"): ``H x = x[indices]``.

    **Arguments:**

    - `indices`: integer grid indices, shape ``(station,)`` on a 1D grid or
      ``(station, ndim)`` on an ``ndim``-dimensional grid (one row per station).
    - `grid_shape`: the state shape (keyword; optional): checked against every
      index, and used by the xarray readers to check dataset sizes.

    Build them with `Stations.every(k, n)` (every ``k``-th point of a grid of
    shape ``n``) or `Stations.nearest(positions, grid)` (stations at coordinates,
    snapped to the nearest grid point). The observation space is ``(station,)``.

    **Cost:** O(number of stations) per call (a gather; its adjoint a scatter-add).
    **Limits:** no interpolation between grid points: use `Linear` with an
    interpolation matrix for that.
    """

    indices: Int[Array, " station *ndim"]
    grid_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        indices: Shaped[ArrayLike, " station *ndim"],
        *,
        grid_shape: Sequence[int] | int | None = None,
    ):
        indices = np.asarray(indices)
        if not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(
                f"Stations(indices=...) must be integers, got dtype {indices.dtype}."
            )
        if indices.ndim not in (1, 2) or indices.shape[0] == 0:
            raise ValueError(
                "Stations(indices=...) must have shape (station,) or (station, ndim) "
                f"with at least one station, got shape {indices.shape}."
            )
        if isinstance(grid_shape, int):
            grid_shape = (grid_shape,)
        if grid_shape is not None:
            grid_shape = tuple(int(n) for n in grid_shape)
            ndim = 1 if indices.ndim == 1 else indices.shape[1]
            if ndim != len(grid_shape):
                raise ValueError(
                    f"Stations(indices=...) index {ndim} dimension(s) but "
                    f"grid_shape={grid_shape} has {len(grid_shape)}."
                )
            upper = np.asarray(grid_shape).reshape(
                (-1,) if indices.ndim == 1 else (1, -1)
            )
            if np.any(indices < 0) or np.any(indices >= upper):
                raise ValueError(
                    "Stations(indices=...) has indices outside "
                    f"grid_shape={grid_shape}."
                )
        # int32 whatever the x64 setting: an int64 array built while x64 is on
        # and used after it is switched off warns at every gather.
        self.indices = jnp.asarray(indices, dtype=jnp.int32)
        self.grid_shape = grid_shape

    @classmethod
    def every(cls, k: int, n: Sequence[int] | int, *, offset: int = 0) -> "Stations":
        """Every `k`-th point along each axis of a grid of shape `n`, from `offset`.

        On a 2D grid this is the sub-lattice ``x[offset::k, offset::k]`` (stations in
        row-major order), a fraction ``1/k^2`` of the points.
        """
        shape = (n,) if isinstance(n, int) else tuple(n)
        if k < 1 or not 0 <= offset < k:
            raise ValueError(
                f"Stations.every(k=..., offset=...) needs k >= 1 and 0 <= offset < k, "
                f"got k={k}, offset={offset}."
            )
        axes = [np.arange(offset, size, k) for size in shape]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(
            -1, len(shape)
        )
        return cls(grid[:, 0] if len(shape) == 1 else grid, grid_shape=shape)

    @classmethod
    def nearest(
        cls,
        positions: Real[ArrayLike, " station *ndim"],
        grid: Sequence[Real[ArrayLike, " _"]],
    ) -> "Stations":
        """Stations at coordinates `positions`, snapped to the nearest grid point.

        `grid` holds one 1D coordinate array per axis (e.g. ``[x]`` or ``[x, y]``);
        `positions` has shape ``(station,)`` (1D) or ``(station, ndim)``. A position
        outside the range of its axis, or not finite (NaN, inf), raises a
        `ValueError` rather than being moved to a grid point.
        """
        positions = np.asarray(positions, dtype=float)
        positions = positions[:, None] if positions.ndim == 1 else positions
        if positions.ndim != 2 or positions.shape[1] != len(grid):
            raise ValueError(
                f"Stations.nearest: positions of shape {positions.shape} do not match "
                f"a grid with {len(grid)} axis/axes."
            )
        # NaN fails every comparison, so the range check below would let it through
        # and argmin would snap it to grid point 0.
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        if bad.size:
            raise ValueError(
                "Stations.nearest(positions=...) must be finite: station(s) "
                f"{bad.tolist()} have NaN or inf coordinates; drop those stations or "
                "give their coordinates."
            )
        columns = []
        for axis, coordinate in enumerate(grid):
            coordinate = np.asarray(coordinate, dtype=float)
            p = positions[:, axis]
            if np.any(p < coordinate.min()) or np.any(p > coordinate.max()):
                raise ValueError(
                    f"Stations.nearest: a position along axis {axis} lies outside the "
                    f"grid range [{coordinate.min()}, {coordinate.max()}]."
                )
            columns.append(np.argmin(np.abs(p[:, None] - coordinate[None, :]), axis=1))
        shape = tuple(len(c) for c in grid)
        indices = columns[0] if len(grid) == 1 else np.stack(columns, axis=-1)
        return cls(indices, grid_shape=shape)

    @property
    def state_shape(self) -> tuple[int, ...] | None:
        return self.grid_shape

    def __call__(self, x: Float[Array, "*state"]) -> Float[Array, " station"]:
        if self.indices.ndim == 1:
            # Without this check a 1D index list would pick whole rows of a 2D state.
            if x.ndim != 1:
                raise ValueError(
                    f"Stations: the state has shape {x.shape} but `indices` has one "
                    "column (a 1D grid); give (station, ndim) indices."
                )
            return x[self.indices]
        if x.ndim != self.indices.shape[1]:
            raise ValueError(
                f"Stations: the state has {x.ndim} dimension(s) but `indices` has "
                f"{self.indices.shape[1]} column(s)."
            )
        return x[tuple(self.indices.T)]


class Linear(AbstractObservationOperator):
    """A general linear operator: ``H x = matrix @ ravel(x)``.

    **Arguments:**

    - `matrix`: the ``(obs, n)`` matrix; a floating field, so it can be learnt.
    - `state_shape`: the state shape (keyword; default ``(n,)``), flattened in
      row-major order before the product. Its size must be ``n``.

    **Cost:** O(obs * n) per call and memory for the dense matrix: fine for
    interpolation or averaging kernels on small grids, not for a 256x256 field
    (use `Mask` or `Stations` there).
    """

    matrix: Float[Array, "obs n"]
    shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        matrix: Shaped[ArrayLike, "obs n"],
        *,
        state_shape: Sequence[int] | None = None,
    ):
        matrix = jnp.asarray(matrix)
        if matrix.ndim != 2 or not jnp.issubdtype(matrix.dtype, jnp.floating):
            raise ValueError(
                "Linear(matrix=...) must be a 2D floating array, got shape "
                f"{matrix.shape} and dtype {matrix.dtype}."
            )
        shape = (matrix.shape[1],) if state_shape is None else tuple(state_shape)
        if int(np.prod(shape)) != matrix.shape[1]:
            raise ValueError(
                f"Linear(state_shape={shape}) has {int(np.prod(shape))} entries but "
                f"`matrix` has {matrix.shape[1]} columns."
            )
        self.matrix = matrix
        self.shape = shape

    @property
    def state_shape(self) -> tuple[int, ...]:
        return self.shape

    def __call__(self, x: Float[Array, "*state"]) -> Float[Array, " obs"]:
        if x.shape != self.shape:
            raise ValueError(
                f"Linear: the state has shape {x.shape}, expected {self.shape}."
            )
        return self.matrix @ x.reshape(-1)
