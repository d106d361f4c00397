"""Pretraining of learned priors on historical states: objectives, data, errors."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest
import xarray as xr

from assimilax import TqdmProgress
from assimilax.learning import (
    AbstractPretrainingObjective,
    Autoencoding,
    Denoising,
    pretrain_prior,
)
from assimilax.priors import (
    ConvDenoiser1D,
    EnergyPrior,
    MLPAutoencoder,
    Standardised,
)


def _affine_subspace(rng, samples, n=8, k=2):
    """States ``c + A z`` on a k-dimensional affine subspace, in physical units."""
    basis = rng.normal(size=(n, k))
    offset = 10.0 + rng.normal(size=n)
    return offset + 3.0 * rng.normal(size=(samples, k)) @ basis.T, basis, offset


def test_linear_autoencoder_learns_an_affine_subspace(getkey):
    rng = np.random.default_rng(0)
    data, basis, offset = _affine_subspace(rng, 400)
    # Time last: the sample dim is found by name, whatever its position.
    historical = xr.DataArray(data.T, dims=("x", "time"))
    net = MLPAutoencoder(8, 2, depth=0, key=getkey())  # linear: PCA at the optimum
    net, history = pretrain_prior(
        net,
        historical,
        objective=Autoencoding(),
        optimiser=optax.adam(optax.cosine_decay_schedule(1e-2, 800)),
        steps=800,
        batch_size=32,
        key=getkey(),
        validation_every=100,
    )
    assert isinstance(net, Standardised)
    assert history.attrs["initial_validation_loss"] > 0.1
    # Standardised units (1 = the data's variance): the data lie exactly on the
    # subspace, so the loss goes to zero up to the optimiser's progress (2e-23
    # when this test was written; float64 rounding is ~1e-31).
    assert float(history["validation_loss"][-1]) < 1e-15

    prior = EnergyPrior(net, 1.0)
    on = jnp.asarray(offset + basis @ np.array([2.0, -1.5]))  # a new point on it
    normal = np.linalg.svd(basis, full_matrices=True)[0][:, -1]  # orthogonal to it
    off = on + jnp.asarray(normal)
    # In physical units: ~0 on the subspace, > 0 one unit off it (0.5 |v|² = 0.5
    # for an orthogonal projection; the learned one may be oblique).
    assert float(prior.energy(on)) < 1e-12
    assert float(prior.energy(off)) > 0.1


def _smooth_fields(rng, samples, n=16):
    """Random periodic fields of wavenumbers 0-2: 5 of 16 degrees of freedom."""
    x = 2 * np.pi * np.arange(n) / n
    coefficients = rng.normal(size=(samples, 5))
    modes = np.stack([np.ones(n), np.cos(x), np.sin(x), np.cos(2 * x), np.sin(2 * x)])
    return coefficients @ modes


# A learning claim (~7 s of training): run by CI's slow part.
@pytest.mark.slow
def test_denoising_pretraining_lowers_the_validation_loss(getkey):
    data = _smooth_fields(np.random.default_rng(1), 600)
    net, history = pretrain_prior(
        ConvDenoiser1D(width=8, depth=3, key=getkey()),
        jnp.asarray(data),  # a plain array: (samples, *state)
        objective=Denoising(noise_std=0.5),
        optimiser=optax.adam(3e-3),
        steps=400,
        batch_size=32,
        key=getkey(),
        validation_fraction=0.2,
        validation_every=50,
    )
    initial = history.attrs["initial_validation_loss"]
    final = float(history["validation_loss"][-1])
    # The untrained denoiser is the identity: its loss is the noise variance
    # 0.25 (120 states x 16 values: a sampling error of ~3%).
    assert abs(initial - 0.25) < 0.02
    # 5 of 16 modes carry signal: the best linear filter reaches 0.25 * 5/16.
    assert final < 0.4 * initial
    assert history.sizes == {"step": 400}
    np.testing.assert_array_equal(history["step"], np.arange(1, 401))
    evaluated = np.isfinite(history["validation_loss"].values)
    assert evaluated.sum() == 8 and evaluated[49] and evaluated[-1]
    assert np.all(np.isfinite(history["loss"].values))
    assert history.attrs["train_samples"] == 480
    assert history.attrs["validation_samples"] == 120


def test_progress_bar_and_history(getkey, capsys):
    data = xr.DataArray(
        _smooth_fields(np.random.default_rng(2), 40), dims=("sample", "x")
    )
    net, history = pretrain_prior(
        MLPAutoencoder(16, 3, width=8, key=getkey()),
        data,
        objective=Autoencoding(),
        optimiser=optax.sgd(1e-3),
        steps=3,
        batch_size=8,
        key=getkey(),
        validation_fraction=0.0,
        progress=TqdmProgress(),
    )
    assert "pretrain_prior" in capsys.readouterr().err
    assert history.attrs["validation_samples"] == 0
    assert np.all(np.isnan(history["validation_loss"].values))
    assert net.mean.shape == (16,) and net.std.shape == (16,)


def test_objectives_are_strategy_objects():
    assert isinstance(Denoising(0.1), AbstractPretrainingObjective)
    assert isinstance(Autoencoding(), AbstractPretrainingObjective)


# Errors: one per case, each naming the field ------------------------------------


def _pretrain(historical=None, **kwargs):
    if historical is None:
        historical = xr.DataArray(np.random.default_rng(0).normal(size=(20, 4)))
        historical = historical.rename(dim_0="time", dim_1="x")
    options = dict(
        objective=Autoencoding(),
        optimiser=optax.adam(1e-3),
        steps=1,
        batch_size=4,
        key=jr.key(0),
    )
    options.update(kwargs)
    network = options.pop("network", MLPAutoencoder(4, 2, key=jr.key(1)))
    return pretrain_prior(network, historical, **options)


def test_error_without_a_sample_dim():
    data = xr.DataArray(np.ones((5, 4)), dims=("member", "x"))
    with pytest.raises(ValueError, match=r"historical=...\) must have exactly one"):
        _pretrain(data)


def test_error_with_nan_in_the_data():
    data = np.random.default_rng(0).normal(size=(20, 4))
    data[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"historical=...\) contains 1 NaN"):
        _pretrain(xr.DataArray(data, dims=("time", "x")))


def test_error_with_a_dataset():
    data = xr.Dataset({"truth": (("time", "x"), np.ones((5, 4)))})
    with pytest.raises(TypeError, match=r"historical=...\) must be an xarray"):
        _pretrain(data)


def test_error_with_a_state_without_axes():
    with pytest.raises(ValueError, match=r"historical=...\) must have a sample"):
        _pretrain(np.ones(10))


def test_error_with_constant_data():
    with pytest.raises(ValueError, match=r"historical=...\) is constant"):
        _pretrain(np.ones((10, 4)))


def test_error_batch_size_above_the_training_states():
    # 20 samples, 2 held out for validation: 18 training states.
    with pytest.raises(ValueError, match=r"batch_size=19\) exceeds the 18 training"):
        _pretrain(batch_size=19)


def test_error_steps_below_one():
    with pytest.raises(ValueError, match=r"steps=...\) must be an int >= 1"):
        _pretrain(steps=0)


def test_error_validation_fraction_out_of_range():
    with pytest.raises(ValueError, match=r"validation_fraction=...\) must be in"):
        _pretrain(validation_fraction=1.0)


def test_error_objective_given_as_a_string():
    with pytest.raises(TypeError, match=r"objective=...\) must be a pretraining"):
        _pretrain(objective="denoising")


def test_error_optimiser_not_optax():
    with pytest.raises(TypeError, match=r"optimiser=...\) must be an optax"):
        _pretrain(optimiser="adam")


def test_error_network_changes_the_shape():
    with pytest.raises(ValueError, match=r"network=...\) must map a state"):
        _pretrain(network=MLPAutoencoder(4, 2, key=jr.key(1)).encoder)


def test_error_denoising_noise_std_not_positive():
    with pytest.raises(ValueError, match=r"Denoising\(noise_std=...\) must be"):
        Denoising(noise_std=0.0)


def test_error_when_the_loss_diverges():
    with pytest.raises(FloatingPointError, match="lower the optimiser's learning"):
        _pretrain(optimiser=optax.sgd(1e200), steps=5)
