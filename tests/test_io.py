"""xarray and netCDF round trips of observations and trajectories, and bad input."""

import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from assimilax.io import (
    observations_from_dataset,
    observations_to_dataset,
    trajectory_from_dataset,
    trajectory_to_dataset,
)
from assimilax.observations import Mask, ScalarNoise, Stations


NOISE = ScalarNoise(0.5)


def _obs_dataset(nt=4, nx=8, ny=None, seed=0):
    """A conventional observation Dataset: NaN gaps, coordinates with units."""
    rng = np.random.default_rng(seed)
    shape = (nt, nx) if ny is None else (nt, nx, ny)
    values = rng.normal(size=shape)
    values[rng.random(shape) < 0.3] = np.nan
    dims = ("time", "x") if ny is None else ("time", "x", "y")
    coords = {
        "time": (
            "time",
            np.linspace(0.0, 0.15, nt),
            {"long_name": "time", "units": "1"},
        ),
        "x": ("x", np.linspace(0.0, 1.0, nx), {"long_name": "position", "units": "m"}),
    }
    if ny is not None:
        coords["y"] = ("y", np.arange(ny) * 2.0, {"long_name": "height", "units": "m"})
    obs = xr.DataArray(
        values, dims=dims, attrs={"long_name": "temperature", "units": "K"}
    )
    return xr.Dataset({"obs": obs}, coords=coords)


def _netcdf(ds, tmp_path, name="ds.nc"):
    path = tmp_path / name
    ds.to_netcdf(path)
    with xr.open_dataset(path) as opened:
        return opened.load()


@pytest.mark.parametrize("ny", [None, 5])
def test_observations_netcdf_round_trip(ny, tmp_path):
    ds = _obs_dataset(ny=ny)
    opened = _netcdf(ds, tmp_path)
    obs = observations_from_dataset(opened, noise=NOISE)
    np.testing.assert_array_equal(obs.mask, ~np.isnan(ds["obs"].values))
    back = observations_to_dataset(obs, opened.coords, attrs=opened["obs"].attrs)
    xr.testing.assert_identical(back, ds)
    # And through a second netCDF file: nothing is lost on the way out either.
    xr.testing.assert_identical(_netcdf(back, tmp_path, "back.nc"), ds)


def test_default_conventions_round_trip():
    """Without coords/attrs we write time with CF attrs, and read them back."""
    values = jnp.array([[1.0, np.nan, 3.0], [4.0, 5.0, np.nan]])
    obs = observations_from_dataset(
        xr.Dataset({"obs": (("time", "x"), np.asarray(values))}, {"time": [0.0, 0.5]}),
        noise=NOISE,
    )
    ds = observations_to_dataset(obs)
    assert ds["time"].attrs == {"long_name": "time", "units": "1"}
    assert ds["obs"].attrs == {"long_name": "observations"}
    assert ds["obs"].dims == ("time", "x")
    again = observations_to_dataset(observations_from_dataset(ds, noise=NOISE))
    xr.testing.assert_identical(again, ds)


def test_transposed_space_dims():
    ds = _obs_dataset(ny=3)
    obs = observations_from_dataset(ds.transpose("time", "y", "x"), noise=NOISE)
    np.testing.assert_array_equal(obs.mask, ~np.isnan(ds["obs"].values))


def _assert_same_observations(a, b):
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.times, b.times)


@pytest.mark.parametrize(
    "names",
    [
        {"x": "lon", "y": "lat"},
        {"x": "Longitude", "y": "LATITUDE"},
        {"x": "x", "y": "lat"},
    ],
)
@pytest.mark.parametrize("order", [("time", "x", "y"), ("time", "y", "x")])
def test_lat_lon_dims_are_mapped_not_taken_in_file_order(names, order):
    # A square grid: taking the dims in file order would read the transpose, with
    # no size mismatch to catch it.
    ds = _obs_dataset(nx=4, ny=4)
    reference = observations_from_dataset(ds, noise=NOISE)
    field = ds.transpose(*order).rename(names)
    assert field["obs"].dims == tuple(names.get(d, d) for d in order)
    obs = observations_from_dataset(field, noise=NOISE)
    _assert_same_observations(obs, reference)
    # The same for a trajectory, e.g. (time, lat, lon).
    states = np.random.default_rng(2).normal(size=(3, 4, 4))
    traj = trajectory_to_dataset(jnp.asarray(states), jnp.arange(3.0))
    traj = traj.transpose(*order).rename(names)
    np.testing.assert_array_equal(trajectory_from_dataset(traj)[0], states)


@pytest.mark.parametrize(
    "attrs",
    [
        ({"axis": "X"}, {"axis": "Y"}),
        ({"standard_name": "longitude"}, {"standard_name": "latitude"}),
        ({"standard_name": "projection_x_coordinate"}, {"axis": "Y"}),
        ({"units": "degrees_east"}, {"units": "degrees_north"}),
    ],
)
def test_cf_attrs_place_space_dims(attrs):
    ds = _obs_dataset(nx=4, ny=4)
    reference = observations_from_dataset(ds, noise=NOISE)
    # Names that say nothing, in (time, y, x) order: only the attrs place them.
    field = ds.assign_coords(
        x=("x", ds["x"].values, attrs[0]), y=("y", ds["y"].values, attrs[1])
    )
    field = field.rename({"x": "nav_b", "y": "nav_a"}).transpose("time", "nav_a", ...)
    assert field["obs"].dims == ("time", "nav_a", "nav_b")
    _assert_same_observations(observations_from_dataset(field, noise=NOISE), reference)


def test_unknown_space_dims_are_refused_with_how_to_rename():
    ds = _obs_dataset(nx=4, ny=4).rename({"x": "row", "y": "col"})
    message = (
        "`ds\\['obs'\\]` has space dims \\('row', 'col'\\), and assimilax cannot "
        "tell which axis \\('row', 'col'\\) is. Rename them: `x` is the first axis.*"
        "ds = ds.rename\\(\\{'row': 'x', 'col': 'y'\\}\\)"
    )
    with pytest.raises(ValueError, match=message):
        observations_from_dataset(ds, noise=NOISE)
    one_known = _obs_dataset(nx=4, ny=4).rename({"y": "level"})
    level = "which axis \\('level',\\) is.*rename\\(\\{'level': 'y'\\}\\)"
    with pytest.raises(ValueError, match=level):
        observations_from_dataset(one_known, noise=NOISE)
    with pytest.raises(ValueError, match="`ds\\['state'\\]` has space dims"):
        trajectory_from_dataset(
            trajectory_to_dataset(jnp.zeros((2, 3)), jnp.arange(2.0)).rename(x="site")
        )
    # Two dims standing for the same axis.
    both = _obs_dataset(nx=4, ny=4).rename({"y": "lon"})
    with pytest.raises(ValueError, match="of which \\('x', 'lon'\\) all stand for `x`"):
        observations_from_dataset(both, noise=NOISE)


def test_lat_lon_dims_written_in_x_y_order():
    ds = _obs_dataset(nx=4, ny=4)
    obs = observations_from_dataset(ds, noise=NOISE)
    out = observations_to_dataset(obs, dims=("lon", "lat"))
    _assert_same_observations(observations_from_dataset(out, noise=NOISE), obs)
    with pytest.raises(
        ValueError, match="dims=\\('lat', 'lon'\\) name the first space axis as `y`"
    ):
        observations_to_dataset(obs, dims=("lat", "lon"))


def test_stations_dataset():
    op = Stations.every(4, 16)
    values = np.arange(12.0).reshape(3, 4)
    ds = xr.Dataset(
        {"obs": (("time", "station"), values)},
        coords={
            "time": [0.0, 1.0, 2.0],
            "station_x": ("station", [0.0, 4.0, 8.0, 12.0]),
        },
    )
    obs = observations_from_dataset(ds, operator=op, noise=NOISE)
    assert obs.values.shape == (3, 4)
    back = observations_to_dataset(obs, ds.coords, attrs={})
    assert back["obs"].dims == ("time", "station")
    xr.testing.assert_identical(back, ds)


def test_trajectory_round_trip(tmp_path):
    states = np.random.default_rng(1).normal(size=(5, 4, 3))
    times = np.linspace(0.0, 1.0, 5)
    ds = trajectory_to_dataset(
        jnp.asarray(states), jnp.asarray(times), {"x": np.arange(4.0)}
    )
    assert ds["state"].dims == ("time", "x", "y")
    out_states, out_times = trajectory_from_dataset(
        _netcdf(ds, tmp_path), state_shape=(4, 3)
    )
    np.testing.assert_array_equal(out_states, states)
    np.testing.assert_array_equal(out_times, times)
    again = trajectory_to_dataset(out_states, out_times, ds.coords)
    xr.testing.assert_identical(again, ds)


# --- bad input: one test per case, each message names the field ------------------


def test_missing_time():
    ds = _obs_dataset().isel(time=0)
    with pytest.raises(ValueError, match="`ds\\['obs'\\]` has no `time` dimension"):
        observations_from_dataset(ds, noise=NOISE)


def test_time_dim_without_coordinate():
    ds = _obs_dataset().drop_vars("time")
    with pytest.raises(ValueError, match="no `time` coordinate"):
        observations_from_dataset(ds, noise=NOISE)


def test_space_dim_size_mismatch():
    ds = _obs_dataset(nx=64)
    mask = Mask(np.ones(128, dtype=bool))
    with pytest.raises(
        ValueError, match="dim `x` has size 64 but the Mask expects 128"
    ):
        observations_from_dataset(ds, operator=mask, noise=NOISE)
    # The model's shape, for operators that accept any (Identity).
    with pytest.raises(ValueError, match="dim `x` has size 64 .* expects 128"):
        observations_from_dataset(ds, noise=NOISE, state_shape=(128,))
    with pytest.raises(ValueError, match="space dims \\('x',\\) of shape \\(64,\\)"):
        observations_from_dataset(ds, noise=NOISE, state_shape=(64, 64))
    with pytest.raises(ValueError, match="does not match the state shape \\(128,\\)"):
        observations_from_dataset(ds, operator=mask, noise=NOISE, state_shape=(64,))


def test_non_monotonic_times():
    ds = _obs_dataset().isel(time=[0, 2, 1, 3])
    with pytest.raises(ValueError, match="times=...\\) must be strictly increasing"):
        observations_from_dataset(ds, noise=NOISE)
    traj = trajectory_to_dataset(jnp.zeros((3, 2)), jnp.arange(3.0)).isel(
        time=[1, 0, 2]
    )
    with pytest.raises(
        ValueError, match="`time` coordinate must be strictly increasing"
    ):
        trajectory_from_dataset(traj)


def test_nonpositive_noise():
    with pytest.raises(ValueError, match="ScalarNoise\\(std=...\\) must be > 0"):
        observations_from_dataset(_obs_dataset(), noise=ScalarNoise(0.0))


def test_times_outside_window():
    ds = _obs_dataset()  # times 0, 0.05, 0.1, 0.15
    obs = observations_from_dataset(ds, noise=NOISE, window=(0.0, 0.15))
    assert obs.times.shape == (4,)
    with pytest.raises(ValueError, match="outside the assimilation window.*time 0.15"):
        observations_from_dataset(ds, noise=NOISE, window=(0.0, 0.12))


def test_other_bad_input():
    ds = _obs_dataset()
    with pytest.raises(KeyError, match="no variable 'y_obs'"):
        observations_from_dataset(ds, noise=NOISE, variable="y_obs")
    dated = ds.assign_coords(time=np.arange(4).astype("datetime64[D]"))
    with pytest.raises(TypeError, match="convert it to model time"):
        observations_from_dataset(dated, noise=NOISE)
    obs = observations_from_dataset(ds, noise=NOISE)
    with pytest.raises(
        ValueError, match="coords\\['time'\\] .* differs from the times"
    ):
        observations_to_dataset(obs, {"time": ("time", np.arange(4.0))})
    traj = trajectory_to_dataset(jnp.full((2, 3), jnp.nan), jnp.arange(2.0))
    with pytest.raises(ValueError, match="`ds\\['state'\\]` contains NaN"):
        trajectory_from_dataset(traj)
    with pytest.raises(ValueError, match="Only 1D and 2D grids"):
        trajectory_to_dataset(jnp.zeros((2, 2, 2, 2)), jnp.arange(2.0))
    with pytest.raises(ValueError, match="dim `x` has size 3 but the model expects 4"):
        trajectory_from_dataset(
            trajectory_to_dataset(jnp.zeros((2, 3)), jnp.arange(2.0)), state_shape=(4,)
        )
