"""`xarray.Dataset` to and from `Observations` and trajectories (eager, not jitted)."""

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, ArrayLike, Float

from .._dims import (
    OBS,
    OBS_ATTRS,
    OTHER_NAMES,
    space_dim_roles,
    SPACE_DIMS,
    STATE,
    STATE_ATTRS,
    STATION,
    TIME,
    TIME_ATTRS,
    X,
    Y,
)
from ..observations import (
    AbstractNoise,
    AbstractObservationOperator,
    Identity,
    Observations,
)


def observations_from_dataset(
    ds: xr.Dataset,
    *,
    operator: AbstractObservationOperator = Identity(),
    noise: AbstractNoise,
    variable: str = OBS,
    state_shape: Sequence[int] | None = None,
    window: tuple[float, float] | None = None,
) -> Observations:
    """`Observations` from the variable `variable` of `ds`.

    **Arguments:**

    - `ds`: a Dataset whose `variable` has dims ``(time, x)`` or ``(time, x, y)``
      (observations on the grid: `Identity`, `Mask`) or ``(time, station)``
      (`Stations`, `Linear`), a float `time` coordinate (strictly increasing) and
      NaN where a value is missing. Space dims are put in ``(time, x, y)``
      order whatever their order in the file; `lon`/`longitude` are read as `x`
      and `lat`/`latitude` as `y`, as is any dim whose coordinate has the CF attr
      `axis` (``"X"``/``"Y"``), a longitude/latitude or projection x/y
      `standard_name`, or `units` ``degrees_east``/``degrees_north``.
    - `operator`, `noise`: the observation operator and error model.
    - `variable`: the name of the data variable (default ``"obs"``).
    - `state_shape`: the model's state shape, checked against the operator and
      the dataset's space dims (optional when the operator knows it).
    - `window`: ``(t0, t1)``: every time must lie in it.

    **Returns:** `Observations` with NaN turned into `mask == False`.

    **Raises:** `KeyError` for a missing `variable`; `ValueError` naming the field
    for a missing `time` dim or coordinate, a space dim of another name (rename
    it: ``ds.rename({"row": "x"})``), a space dim whose size does not match
    the operator or model, non-increasing times, times outside `window`; a
    `TypeError` for non-numeric (e.g. datetime) times: convert them to model time.

    The conversion is lossless in float64 (``jax_enable_x64``): with the same
    coordinates and attrs, `observations_to_dataset` gives `ds` back.
    """
    da = _data_array(ds, variable)
    values = np.asarray(da.values)
    space = da.dims[1:]
    shape = _expected_obs_shape(operator, state_shape)
    if shape is not None:
        _check_sizes(variable, space, values.shape[1:], shape, type(operator).__name__)
    observations = Observations(
        jnp.asarray(values), None, _times(da, variable), operator, noise
    )
    return observations if window is None else observations.check_window(*window)


def observations_to_dataset(
    observations: Observations,
    coords: Mapping[Hashable, Any] | None = None,
    *,
    variable: str = OBS,
    dims: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """A Dataset holding `observations.values`, NaN where not observed.

    **Arguments:**

    - `observations`: the `Observations`.
    - `coords`: coordinates (e.g. ``ds.coords`` of the Dataset they came from, or
      ``{"x": ("x", x, {"units": "m"})}``). `time` is taken from it when present
      (and must equal `observations.times`), else built from `observations.times`
      with attrs ``{"long_name": "time", "units": "1"}``.
    - `variable`: the variable name (default ``"obs"``).
    - `dims`: the space dims; by default ``x`` / ``x, y`` when the observations
      have the state's shape (`Identity`, `Mask`), else ``station``.
    - `attrs`: the variable's attrs (default ``{"long_name": "observations"}``).

    The noise model and the operator are not stored: they are arguments of
    `observations_from_dataset`.
    """
    values = np.asarray(observations.values)
    values = np.where(np.asarray(observations.mask), values, np.nan)
    if dims is None:
        state_shape = observations.operator.state_shape
        on_grid = state_shape is None or tuple(state_shape) == values.shape[1:]
        dims = _space_dims(values.ndim - 1) if on_grid else (STATION,)
    else:
        _check_dim_order(dims)
    attrs = OBS_ATTRS if attrs is None else attrs
    return _dataset(variable, values, observations.times, dims, coords, attrs)


def trajectory_to_dataset(
    states: Float[ArrayLike, " time *state"],
    times: Float[ArrayLike, " time"],
    coords: Mapping[Hashable, Any] | None = None,
    *,
    name: str = STATE,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """A Dataset with the trajectory `states` (dims ``(time, x)`` / ``(time, x, y)``).

    `coords` and the `time` coordinate are handled as in `observations_to_dataset`;
    `attrs` default to ``{"long_name": "model state"}``.
    """
    states = np.asarray(states)
    dims = _space_dims(states.ndim - 1)
    attrs = STATE_ATTRS if attrs is None else attrs
    return _dataset(name, states, times, dims, coords, attrs)


def trajectory_from_dataset(
    ds: xr.Dataset,
    *,
    name: str = STATE,
    state_shape: Sequence[int] | None = None,
) -> tuple[Float[Array, " time *state"], Float[Array, " time"]]:
    """``(states, times)`` from the variable `name` of `ds` (the inverse of
    `trajectory_to_dataset`), checked against the model's `state_shape` if given.
    Space dims are read as in `observations_from_dataset` (``(time, x, y)`` order;
    `lat`/`lon` and CF axis attrs understood; other names refused).

    **Raises:** as `observations_from_dataset`; NaN in the trajectory is an error.
    """
    da = _data_array(ds, name)
    states = np.asarray(da.values)
    if state_shape is not None:
        _check_sizes(name, da.dims[1:], states.shape[1:], tuple(state_shape), "model")
    if np.isnan(states).any():
        raise ValueError(
            f"`ds['{name}']` contains NaN: a trajectory cannot be missing."
        )
    times = _times(da, name)
    if np.any(np.diff(times) <= 0):
        raise ValueError(
            f"`ds['{name}']`: the `time` coordinate must be strictly increasing."
        )
    return jnp.asarray(states), jnp.asarray(times)


def _data_array(ds: xr.Dataset, variable: str) -> xr.DataArray:
    if variable not in ds.data_vars:
        raise KeyError(
            f"The Dataset has no variable {variable!r} (variables: "
            f"{list(map(str, ds.data_vars))}); pass `variable=`/`name=`."
        )
    da = ds[variable]
    if TIME not in da.dims:
        raise ValueError(
            f"`ds['{variable}']` has no `{TIME}` dimension (dims {da.dims}); "
            f"expected ({TIME!r}, {X!r}) or ({TIME!r}, {X!r}, {Y!r})."
        )
    if TIME not in da.coords:
        raise ValueError(
            f"`ds['{variable}']` has a `{TIME}` dim but no `{TIME}` coordinate."
        )
    # Dims are matched by role, not file order: a (time, lat, lon) field on a
    # square grid would otherwise be read transposed.
    return da.transpose(TIME, *space_dim_roles(da, variable))


def _times(da: xr.DataArray, variable: str) -> np.ndarray:
    times = np.asarray(da[TIME].values)
    if not np.issubdtype(times.dtype, np.number):
        raise TypeError(
            f"`ds['{variable}']`: the `{TIME}` coordinate has dtype {times.dtype}; "
            "convert it to model time (floats) first."
        )
    return times.astype(float)


def _expected_obs_shape(
    operator: AbstractObservationOperator, state_shape: Sequence[int] | None
) -> tuple[int, ...] | None:
    known = operator.state_shape
    if state_shape is not None:
        state_shape = tuple(int(n) for n in state_shape)
        if known is not None and tuple(known) != state_shape:
            raise ValueError(
                f"state_shape={state_shape} does not match the state shape {known} "
                f"of the operator {type(operator).__name__}."
            )
        known = state_shape
    return None if known is None else operator.obs_shape(tuple(known))


def _check_sizes(
    variable: str,
    dims: Sequence[Hashable],
    shape: tuple[int, ...],
    expected: tuple[int, ...],
    who: str,
) -> None:
    if len(shape) != len(expected):
        raise ValueError(
            f"`ds['{variable}']` has space dims {tuple(dims)} of shape {shape} but the "
            f"{who} expects shape {expected}."
        )
    for dim, size, want in zip(dims, shape, expected):
        if size != want:
            raise ValueError(
                f"`ds['{variable}']` dim `{dim}` has size {size} but the {who} expects "
                f"{want} (shape {expected})."
            )


def _check_dim_order(dims: Sequence[str]) -> None:
    # The reader puts dims in (x, y) order by name: names in the other order
    # (e.g. ("lat", "lon") for (x, y) arrays) would not read back as written.
    roles = [OTHER_NAMES.get(str(d).lower(), d) for d in dims]
    if X in roles and Y in roles and roles.index(X) > roles.index(Y):
        raise ValueError(
            f"dims={tuple(dims)} name the first space axis as `{Y}` and the second "
            f"as `{X}`, but the arrays are ({TIME}, {X}, {Y}): give "
            f"dims={tuple(reversed(dims))}."
        )


def _space_dims(ndim: int) -> tuple[str, ...]:
    if ndim not in SPACE_DIMS:
        raise ValueError(
            f"Only 1D and 2D grids have named dims; got {ndim} space dims."
        )
    return SPACE_DIMS[ndim]


def _dataset(
    variable: str,
    values: np.ndarray,
    times: Float[ArrayLike, " time"],
    dims: Sequence[str],
    coords: Mapping[Hashable, Any] | None,
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    times = np.asarray(times)
    if len(dims) != values.ndim - 1:
        raise ValueError(
            f"dims={tuple(dims)} do not match the {values.ndim - 1} space axes."
        )
    coords = dict(coords or {})
    coords.setdefault(TIME, (TIME, times, dict(TIME_ATTRS)))
    data = {variable: ((TIME, *dims), values, dict(attrs))}
    ds = xr.Dataset(data, coords=coords)
    # A caller's time coordinate keeps its attrs and dtype, but must agree with the
    # times the computation used (to float32 accuracy when x64 is off).
    given = np.asarray(ds[TIME].values)
    if not np.issubdtype(given.dtype, np.number) or not np.allclose(
        given, times, rtol=1e-6, atol=0
    ):
        raise ValueError(
            f"coords['{TIME}'] = {given} differs from the times of the data {times}."
        )
    return ds
