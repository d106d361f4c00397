"""The OSTIA loader, the cloud-mask generator and the EOF (DINEOF) reconstruction."""

import sys

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from assimilax.observations import cloud_mask
from assimilax.priors import EOFBasis


# ------------------------------------------------------------------ the loader


def test_ostia_dataset_has_cf_attributes_and_no_nan_over_the_ocean():
    pytest.importorskip("iris_sample_data")
    from assimilax.datasets import ostia_sst

    ds = ostia_sst()
    assert ds["sst"].dims == ("time", "lat", "lon")
    assert ds["sst"].shape == (54, 18, 432)
    assert ds["sst"].attrs["units"] == "K"
    assert ds["sst"].attrs["standard_name"] == "sea_surface_temperature"
    assert ds["lat"].attrs["units"] == "degrees_north"
    assert ds["lon"].attrs["units"] == "degrees_east"
    assert ds["lat"].attrs["standard_name"] == "latitude"
    assert "Open Government Licence" in ds.attrs["licence"]
    assert "Met Office" in ds.attrs["attribution"]
    # The band is 5S-5N, monthly from 2006-04 to 2010-09.
    assert -5.01 < float(ds["lat"].min()) and float(ds["lat"].max()) < 5.0
    assert str(ds["time"].values[0])[:7] == "2006-04"
    assert str(ds["time"].values[-1])[:7] == "2010-09"
    ocean = ds["ocean"].values
    sst = ds["sst"].values
    assert not np.isnan(sst[:, ocean]).any()
    assert np.isnan(sst[:, ~ocean]).all()
    assert 0.7 < ocean.mean() < 0.8
    # Tropical sea-surface temperatures, in kelvin.
    assert 285 < np.nanmin(sst) and np.nanmax(sst) < 310


def test_missing_extra_is_named(monkeypatch):
    from assimilax.datasets import ostia_sst

    # A `None` entry in `sys.modules` makes the import fail, as when the package
    # is not installed.
    monkeypatch.setitem(sys.modules, "iris_sample_data", None)
    with pytest.raises(ImportError, match=r"pip install 'assimilax\[data\]'"):
        ostia_sst()


# ------------------------------------------------------------------ cloud masks


def _neighbour_agreement(mask):
    mask = np.asarray(mask)
    along = mask[:, 1:] == mask[:, :-1]
    across = mask[1:] == mask[:-1]
    return np.concatenate([along.ravel(), across.ravel()]).mean()


@pytest.mark.parametrize("fraction", [0.5, 0.7, 0.9])
def test_cloud_mask_covers_the_fraction_of_valid_points(fraction):
    valid = np.ones((18, 96), bool)
    valid[5:9, 20:40] = False  # "land"
    mask = np.asarray(cloud_mask(jr.key(0), (18, 96), fraction, 4.0, valid=valid))
    assert mask.dtype == bool
    assert not mask[~valid].any()
    assert mask[valid].sum() == round(fraction * valid.sum())


def test_cloud_mask_is_spatially_correlated():
    # An independent mask of density p agrees with its neighbours with probability
    # p² + (1 - p)²: 0.5 at p = 0.5. Blobs of 6 grid points agree far more often,
    # and more for longer length scales.
    shape = (18, 432)
    agreements = [
        np.mean([_neighbour_agreement(cloud_mask(k, shape, 0.5, scale)) for k in keys])
        for scale, keys in (
            (2.0, jr.split(jr.key(1), 4)),
            (6.0, jr.split(jr.key(2), 4)),
        )
    ]
    independent = _neighbour_agreement(jr.uniform(jr.key(3), shape) < 0.5)
    assert abs(independent - 0.5) < 0.02
    assert agreements[0] > 0.8 and agreements[1] > agreements[0] + 0.05
    # Different keys, different clouds.
    a, b = (np.asarray(cloud_mask(k, shape, 0.5, 6.0)) for k in jr.split(jr.key(4)))
    assert 0.3 < (a == b).mean() < 0.7


def test_cloud_mask_bad_input():
    with pytest.raises(ValueError, match="fraction of 1 hides every point"):
        cloud_mask(jr.key(0), (4, 4), 1.0, 2.0)
    with pytest.raises(ValueError, match="length_scale"):
        cloud_mask(jr.key(0), (4, 4), 0.5, 0.0)
    with pytest.raises(ValueError, match=r"valid=...\) has shape"):
        cloud_mask(jr.key(0), (4, 4), 0.5, 2.0, valid=np.ones((3, 4), bool))
    assert not np.asarray(cloud_mask(jr.key(0), (4, 4), 0.0, 2.0)).any()


# ------------------------------------------------------------ EOF reconstruction


def _low_rank_history(rank=4, time=40, shape=(10, 30), seed=0):
    rng = np.random.default_rng(seed)
    modes = rng.normal(size=(rank, *shape))
    scales = np.linspace(5.0, 1.0, rank)
    history = 3.0 + np.einsum(
        "tk,k...->t...", rng.normal(size=(time, rank)) * scales, modes
    )
    return history, modes, rng


def test_eof_reconstruction_recovers_a_low_rank_field_exactly():
    history, modes, rng = _low_rank_history()
    valid = np.ones(history.shape[1:], bool)
    valid[:2, :5] = False  # never valid ("land"): NaN in the history
    history[:, ~valid] = np.nan
    basis = EOFBasis.fit(history, rank=4)
    assert bool(jnp.all(basis.valid == valid))
    # A new field in the span of the history, 10 % of its points observed.
    truth = 3.0 + np.einsum("k,k...->...", rng.normal(size=4), modes)
    observed = rng.random(truth.shape) < 0.1
    assert 10 < (observed & valid).sum() < 0.15 * truth.size
    gappy = np.where(observed, truth, np.nan)
    reconstruction = np.asarray(basis.reconstruct(gappy, observed))
    np.testing.assert_allclose(reconstruction[valid], truth[valid], atol=1e-7)
    assert np.all(reconstruction[~valid] == 0.0)


def test_eof_reconstruction_is_the_least_squares_fit_of_noisy_observations():
    history, _, rng = _low_rank_history(seed=1)
    basis = EOFBasis.fit(history, rank=3)
    observed = rng.random(history.shape[1:]) < 0.3
    y = history[0] + 0.3 * rng.normal(size=observed.shape)
    reconstruction = np.asarray(basis.reconstruct(y, observed))
    # The DINEOF fixed point is the least-squares fit on the observed points.
    U = np.asarray(basis.components)[:, observed].T
    c, *_ = np.linalg.lstsq(U, (y - np.asarray(basis.mean))[observed], rcond=None)
    expected = np.asarray(basis.mean) + np.einsum("k,k...->...", c, basis.components)
    np.testing.assert_allclose(reconstruction, expected, atol=1e-6)


def test_eof_reconstruction_is_jit_and_vmap_friendly():
    history, _, rng = _low_rank_history(seed=2)
    basis = EOFBasis.fit(history, rank=4)
    observed = rng.random((3, *history.shape[1:])) < 0.2
    batch = jax.jit(jax.vmap(basis.reconstruct))(history[:3], observed)
    np.testing.assert_allclose(batch, history[:3], atol=1e-7)


def test_eof_bad_input():
    history, _, _ = _low_rank_history(time=5)
    with pytest.raises(ValueError, match="rank"):
        EOFBasis.fit(history, rank=6)
    with pytest.raises(ValueError, match=r"\(time, \*space\)"):
        EOFBasis.fit(history[0, 0], rank=1)
    bad = history.copy()
    bad[2, 3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or inf on valid points"):
        EOFBasis.fit(bad, rank=2, valid=np.ones(history.shape[1:], bool))
