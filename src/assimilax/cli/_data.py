"""The data of an experiment: read from netCDF or generated as twin windows.

Either way the result is one `xarray.Dataset` with a `window` dim and the
documented assimilax variables: `obs` (``window, time, x[, y]`` or ``window,
time, station``; NaN = missing), optionally `truth` (``window, time, x[, y]``)
and `xb` (a background state per window, ``[window,] x[, y]``). The names in
the file are set by ``[data].obs``, ``.truth`` and ``.xb``.
"""

import contextlib

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import xarray as xr

from .._dims import space_dim_roles, SPACE_DIMS, TIME, X, Y
from ..io import observations_from_dataset, trajectory_from_dataset, twin_experiment
from ._table import ConfigError


WINDOW = "window"


@contextlib.contextmanager
def config_context(where: str):
    """Turn the library's `ValueError`/`TypeError`/`KeyError` into a `ConfigError`.

    Used while objects are built from the config, before anything is computed:
    a library error there is a bad config, and `where` says which part of it.
    """
    try:
        yield
    except (ValueError, TypeError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) else error
        raise ConfigError(f"{where}: {message}") from None


def ordered(da: xr.DataArray) -> xr.DataArray:
    """`da` with dims ``window, time`` first, then ``x, y`` (or ``station``)."""
    first = [d for d in (WINDOW, TIME) if d in da.dims]
    space = [d for d in da.dims if d not in first]
    if set(space) == {X, Y}:
        space = [X, Y]
    return da.transpose(*first, *space)


def read_netcdf(config, operator, noise, state_shape) -> xr.Dataset:
    """The Dataset of ``[data].netcdf``, checked against the operator and model."""
    data = config.data
    where = f"[data].netcdf = {str(data.netcdf)!r}"
    try:
        with xr.open_dataset(data.netcdf) as ds:
            ds = ds.load()
    except (OSError, ValueError) as error:
        raise ConfigError(f"{where}: cannot read it as netCDF: {error}") from None
    names = {"obs": data.obs, "truth": data.truth, "xb": data.xb}
    if data.obs not in ds.data_vars:
        raise ConfigError(
            f"{where} has no variable {data.obs!r} (its variables: "
            f"{', '.join(map(str, ds.data_vars)) or 'none'}); set [data].obs"
        )
    keep = {key: name for key, name in names.items() if name in ds.data_vars}
    ds = ds[list(keep.values())].rename({v: k for k, v in keep.items()})
    # Our names for the space dims (`lat`/`lon`, CF axes): `ordered` then puts
    # them in (x, y) order by name, not by their order in the file.
    for key, name in keep.items():
        with config_context(f"{where}, variable {name!r}"):
            roles = space_dim_roles(ds[key], name, skip=(WINDOW, TIME))
            ds = ds.rename({dim: role for dim, role in roles.items() if dim != role})
    if WINDOW not in ds.dims:
        ds = ds.expand_dims(WINDOW)
    for key in ("obs", "truth"):
        if key in ds and WINDOW not in ds[key].dims:
            ds[key] = ds[key].expand_dims({WINDOW: ds.sizes[WINDOW]})
    first = ds.isel({WINDOW: 0})
    with config_context(f"{where}, variable {names['obs']!r}"):
        observations_from_dataset(
            first, operator=operator, noise=noise, state_shape=state_shape
        )
    if "truth" in ds:
        with config_context(f"{where}, variable {names['truth']!r}"):
            trajectory_from_dataset(first, name="truth", state_shape=state_shape)
    if "xb" in ds:
        xb = ordered(first["xb"])
        if xb.shape != tuple(state_shape) or np.isnan(xb.values).any():
            raise ConfigError(
                f"{where}: variable {names['xb']!r} must be a state of shape "
                f"{tuple(state_shape)} without NaN (dims {SPACE_DIMS[len(state_shape)]}"
                f"); got dims {xb.dims} of shape {xb.shape}"
            )
    return ds


def generate_twin(config, operator, noise, background, coords) -> xr.Dataset:
    """Twin windows: truths drawn from the background, observed with noise.

    Each window's true initial state is ``xb + S e`` (``e`` standard normal:
    a draw from the background distribution), integrated for ``spinup`` time
    units by the truth model; with ``perturb_background`` the window's own
    background ``xb`` is the truth plus another draw of the background error.
    """
    twin = config.data.twin
    with config_context("[data.twin.truth_model]"):
        truth_model = twin.truth_model.build()
    shape = tuple(background.xb.shape)
    times = jnp.asarray(twin.times, dtype=background.xb.dtype)
    windows = []
    for index in range(twin.windows):
        key_truth, key_obs, key_background = jr.split(
            jr.fold_in(jr.key(twin.seed), index), 3
        )
        x0 = background.to_state(jr.normal(key_truth, shape, background.xb.dtype))
        if twin.spinup > 0:
            spin = jnp.asarray([0.0, twin.spinup], dtype=x0.dtype)
            x0 = truth_model.integrate(x0, spin)[-1]
        ds = twin_experiment(
            truth_model,
            x0,
            times,
            operator,
            noise,
            key_obs,
            observe_every=twin.observe_every,
            coords=coords,
        )
        if twin.perturb_background:
            error = jr.normal(key_background, shape, x0.dtype)
            xb = x0 + background.sqrt_covariance(error)
            ds["xb"] = (SPACE_DIMS[len(shape)], np.asarray(xb))
        windows.append(ds)
    return xr.concat(windows, dim=WINDOW)
