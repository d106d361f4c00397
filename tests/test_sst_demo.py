"""The SST demo (issue 19): its input checks, and a small end-to-end run on a
subset of the band (every 12th longitude, tiny training budgets)."""

import dataclasses

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr


pytest.importorskip("iris_sample_data")

from assimilax.datasets import ostia_sst  # noqa: E402
from assimilax.demos import sst  # noqa: E402
from assimilax.demos.sst._data import check_windows  # noqa: E402
from assimilax.demos.sst._methods import check_prior  # noqa: E402
from assimilax.priors import EOFBasis, Standardised  # noqa: E402


def test_dataset_without_lat_or_lon_is_named():
    ds = ostia_sst()
    with pytest.raises(ValueError, match="no `lat` coordinate"):
        sst.anomalies(ds.rename(lat="latitude"), sst.DataConfig())
    with pytest.raises(ValueError, match="no `sst` variable"):
        sst.anomalies(ds.rename(sst="temperature"), sst.DataConfig())


def test_all_nan_observations_are_named():
    obs = np.ones((3, 4, 5))
    obs[1] = np.nan
    with pytest.raises(ValueError, match="Window 1 of the test block has all-NaN"):
        check_windows({"obs": obs}, "test")
    basis = EOFBasis.fit(np.random.default_rng(0).normal(size=(6, 4, 5)), rank=2)
    with pytest.raises(eqx.EquinoxRuntimeError, match="no valid point is observed"):
        basis.reconstruct(np.full((4, 5), np.nan), np.zeros((4, 5), bool))


def test_prior_of_another_grid_is_named():
    # A network standardised on a (32, 144) grid, given a (32, 432) field.
    network = Standardised(lambda x: x, jnp.zeros((32, 144)), jnp.ones((32, 144)))
    with pytest.raises(ValueError, match=r"does not accept the field's shape"):
        check_prior(network, (32, 432))
    check_prior(network, (32, 144))


TINY = dataclasses.replace(
    sst.QUICK,
    data=sst.DataConfig(lon_stride=12),
    eof_ranks=(2, 4),
    oi_steps=5,
    pretrain_steps=10,
    weights=(1.0,),
    fine_tune_steps=2,
    batch_size=2,
)


# About 40 s (compiling every method's program once): run by CI's slow part.
@pytest.mark.slow
def test_small_end_to_end_run(tmp_path):
    # On the validation months: the test months stay unseen outside the demo.
    results = sst.run(TINY, seed=0, block="valid", verbose=False)
    for (method, fraction), error in results["rmse"].items():
        assert error.shape == (6,) and np.all(np.isfinite(error)), (method, fraction)
    clim = results["rmse"]["climatology", 0.5].mean()
    # Anomalies have a std of 0.66 K: half the ocean observed with 0.2 K noise
    # does far better than zero anomaly, whatever the (tiny) training budgets.
    for method in ("EOF (DINEOF)", "OI, learnt B"):
        assert results["rmse"][method, 0.5].mean() < 0.8 * clim, method
    table = sst.table(results)
    assert all(method in table for method in sst.METHODS)
    ds = sst.to_dataset(results)
    path = tmp_path / "sst.nc"
    ds.to_netcdf(path)
    back = xr.open_dataset(path)
    assert back["reconstruction"].dims == ("method", "clouds", "time", "lat", "lon")
    assert back["reconstruction"].attrs["units"] == "K"
    assert back["reconstruction"].attrs["standard_name"] == "sea_surface_temperature"
    assert "Open Government Licence" in back.attrs["licence"]
    # Reconstructions are in kelvin, NaN over land only.
    ocean = results["data"]["ocean"][7:-7]
    values = back["reconstruction"].values
    assert np.all(np.isfinite(values[..., ocean]))
    assert np.all(np.isnan(values[..., ~ocean]))
    assert 285 < np.nanmin(values) and np.nanmax(values) < 310
    # The observations hide about half the ocean at 50 % clouds.
    observed = np.isfinite(back["observations"].sel(clouds=0.5).values[..., ocean])
    assert abs(observed.mean() - 0.5) < 0.01
    # The figure: truth, observations, then each method with its error.
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 12))
    sst._plot(ds, figure)
    axes = figure.axes
    assert len(axes) == 2 * (2 + len(sst.METHODS))
    titles = [a.get_title() for a in axes]
    assert "truth" in titles and all(m in titles for m in sst.METHODS)
    shown = axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(np.ma.filled(shown, np.nan), ds["truth"].values[0])
