"""Pretraining of learned priors on historical states (plug-and-play)."""

import abc
import functools as ft
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import xarray as xr
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._custom_types import Scalar
from .._dims import TIME
from .._progress import AbstractProgress, check_progress, NoProgress
from ..priors import Standardised
from ._supervised import (
    AbstractBatchLoss,
    check_optimiser,
    check_steps,
    train_supervised,
)


SAMPLE = "sample"


class AbstractPretrainingObjective(eqx.Module):
    """What a network learns from historical states in `pretrain_prior`.

    Concrete objectives implement `loss`: a mean squared error over a batch of
    *standardised* states (zero mean, unit variance per variable), so a loss of 1
    is the size of the climatological variability.
    """

    @abc.abstractmethod
    def loss(
        self,
        network: Callable,
        states: Float[Array, " batch *state"],
        key: PRNGKeyArray,
    ) -> Scalar:
        """The objective on a batch of standardised states (a scalar)."""


class Autoencoding(AbstractPretrainingObjective):
    """Reconstruction: ``mean |φ(z) - z|²`` over standardised states ``z``.

    For an autoencoder ``φ`` with a bottleneck (`ConvAutoencoder1D`,
    `MLPAutoencoder`), to be used in `EnergyPrior`. Without a bottleneck ``φ``
    can learn the identity and the energy would be zero everywhere.
    """

    def loss(
        self,
        network: Callable,
        states: Float[Array, " batch *state"],
        key: PRNGKeyArray,
    ) -> Scalar:
        del key
        return jnp.mean(jnp.square(jax.vmap(network)(states) - states))


class Denoising(AbstractPretrainingObjective):
    """Denoising: ``mean |D(z + σ ε) - z|²``, ``ε ~ N(0, I)``, standardised ``z``.

    For a denoiser ``D`` (`ConvDenoiser1D`), used in `DenoiserPrior` or as ``φ``
    in `EnergyPrior` (a denoising autoencoder).

    **Arguments:**

    - `noise_std`: ``σ > 0``, in standardised units: ``σ = 0.5`` is half the
      climatological standard deviation of each variable. An untrained identity
      denoiser scores ``σ²``.
    """

    noise_std: float

    def __check_init__(self):
        if not (isinstance(self.noise_std, (int, float)) and self.noise_std > 0):
            raise ValueError(
                "Denoising(noise_std=...) must be a number > 0, got "
                f"{self.noise_std!r}."
            )

    def loss(
        self,
        network: Callable,
        states: Float[Array, " batch *state"],
        key: PRNGKeyArray,
    ) -> Scalar:
        noise = jr.normal(key, states.shape, states.dtype)
        noisy = states + jnp.asarray(self.noise_std, states.dtype) * noise
        return jnp.mean(jnp.square(jax.vmap(network)(noisy) - states))


def _samples(historical: object) -> tuple[np.ndarray, str]:
    """The data as ``(samples, *state)`` and the name of the sample dim."""
    owner = "pretrain_prior(historical=...)"
    if isinstance(historical, xr.DataArray):
        dims = [d for d in (SAMPLE, TIME) if d in historical.dims]
        if len(dims) != 1:
            what = "both" if dims else "neither"
            raise ValueError(
                f"{owner} must have exactly one sample dimension, 'time' or "
                f"'sample' (the samples), followed by the state dims; it has {what}: "
                f"dims {historical.dims}."
            )
        dim = dims[0]
        state_dims = [d for d in historical.dims if d != dim]
        data = historical.transpose(dim, *state_dims).values
    elif isinstance(historical, xr.Dataset):
        raise TypeError(
            f"{owner} must be an xarray.DataArray or an array, got a Dataset: pick "
            "a variable, e.g. ds['truth']."
        )
    else:
        dim = SAMPLE
        data = np.asarray(historical)
    if data.ndim < 2:
        raise ValueError(
            f"{owner} must have a sample axis and at least one state axis, "
            f"shape (samples, *state); got shape {data.shape}."
        )
    if not np.issubdtype(data.dtype, np.floating):
        raise TypeError(f"{owner} must be floating point, got dtype {data.dtype}.")
    bad = int(np.sum(~np.isfinite(data)))
    if bad:
        raise ValueError(
            f"{owner} contains {bad} NaN or inf values: drop or fill the missing "
            "states first (e.g. historical.dropna('time'))."
        )
    return data, dim


def _statistics(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = data.mean(axis=0)
    std = data.std(axis=0)
    # A variable constant in the record (a Dirichlet boundary) gets the largest
    # std instead of a division by zero: its standardised value stays ~0.
    floor = 1e-6 * std.max()
    if not std.max() > 0:
        raise ValueError(
            "pretrain_prior(historical=...) is constant: every state is the same."
        )
    return mean, np.where(std > floor, std, std.max())


def _check_options(owner, objective, optimiser, steps, batch_size, fraction, every):
    if not isinstance(objective, AbstractPretrainingObjective):
        raise TypeError(
            f"{owner}(objective=...) must be a pretraining objective such as "
            f"Denoising(noise_std=0.5) or Autoencoding(); got {objective!r}."
        )
    check_optimiser(owner, optimiser)
    check_steps(owner, steps)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"{owner}(batch_size=...) must be an int >= 1, got {batch_size!r}."
        )
    if not (isinstance(fraction, (int, float)) and 0 <= fraction < 1):
        raise ValueError(
            f"{owner}(validation_fraction=...) must be in [0, 1), got {fraction!r}."
        )
    if not isinstance(every, int) or every < 1:
        raise ValueError(
            f"{owner}(validation_every=...) must be an int >= 1, got {every!r}."
        )


class _PretrainingLoss(AbstractBatchLoss):
    """`objective` on `batch_size` training states drawn without replacement by
    the step's key (the key also draws the objective's noise)."""

    objective: AbstractPretrainingObjective
    batch_size: int = eqx.field(static=True)

    def __call__(self, net, train, key):
        batch_key, noise_key = jr.split(key)
        batch = jr.choice(batch_key, train.shape[0], (self.batch_size,), replace=False)
        return self.objective.loss(net, train[batch], noise_key)


# Module level: a fixed validation set and noise key, compiled once per objective
# and shapes (not per call of `pretrain_prior`).
@eqx.filter_jit
def _validation_loss(objective, net, *, states, key):
    return objective.loss(net, states, key)


def _no_validation(net, *, dtype):
    del net
    return jnp.asarray(jnp.nan, dtype)


# Loose annotations on `historical`, `objective`, `optimiser` and `progress`: the
# checks below give messages that name the field.
def pretrain_prior(
    network: Callable,
    historical: xr.DataArray | ArrayLike | object,
    *,
    objective: AbstractPretrainingObjective | object,
    optimiser: optax.GradientTransformation | object,
    steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    validation_fraction: float = 0.1,
    validation_every: int = 1,
    progress: AbstractProgress = NoProgress(),
) -> tuple[Standardised, xr.Dataset]:
    """Train a prior's network on historical states, in standardised units.

    The states are standardised per variable with the mean and standard deviation
    of the training part of the record; the network learns on ``z = (x - mean) /
    std`` and is returned wrapped in `Standardised`, which maps states in physical
    units (what a variational problem gives its priors) to physical units. Use the
    result zero-shot: ``EnergyPrior(net, weight)`` or ``DenoiserPrior(net, weight,
    centre=net.mean)``; its weights stay learnable for end-to-end fine-tuning.

    Each step draws `batch_size` training states without replacement and takes
    one `optimiser` step on `objective`. The last `validation_fraction` of the
    record (a contiguous block: neighbouring states of a model run are
    correlated, so a random split would leak) is held out for validation, with a
    noise draw that is fixed for the whole run.

    **Arguments:**

    - `network`: a callable Equinox module, state to state of the same shape
      (`ConvAutoencoder1D`, `ConvDenoiser1D`, `MLPAutoencoder`...). A
      `Standardised` network keeps its statistics: its inner network is trained
      further.
    - `historical`: past states, e.g. a long model run: an `xarray.DataArray`
      with one sample dim, `time` or `sample`, and the state dims (in their
      order), or an array of shape ``(samples, *state)``.
    - `objective`: `Denoising(noise_std)` or `Autoencoding()`.
    - `optimiser`: an optax `GradientTransformation`, e.g. ``optax.adam(1e-3)``.
    - `steps`: optimiser steps (>= 1).
    - `batch_size`: states per step, at most the number of training states.
    - `key`: a PRNG key (batches and noise).
    - `validation_fraction`: in ``[0, 1)`` (default 0.1; 0: no validation).
    - `validation_every`: evaluate the validation loss every this many steps
      (default 1; NaN in the history in between).
    - `progress`: a progress meter, `NoProgress()` (default) or
      `TqdmProgress()` (a bar with the batch loss).

    **Returns:** ``(network, history)``: the trained `Standardised` network, and
    an `xarray.Dataset` over the dim `step` (1 to `steps`) with `loss` (the
    objective on the training batch of each step, before its update) and
    `validation_loss` (on the validation states after the step's update, so its
    last value is that of the returned network); attrs `initial_validation_loss`,
    `train_samples`, `validation_samples`, `objective`.

    **Raises:** `TypeError` for a wrong `objective`, `optimiser`, `progress` or
    `historical` type; `ValueError` naming the field for `historical` without
    one `time` or `sample` dim, with NaN/inf, or constant; for `steps < 1`, a
    `batch_size` above the number of training states, a `validation_fraction`
    outside ``[0, 1)`` or leaving no validation state, and a `network` that
    changes the state's shape; `FloatingPointError` if the loss becomes NaN or
    inf.

    **Cost:** `steps` forward and backward passes on `batch_size` states, plus
    one forward pass on the validation states per `validation_every` steps.
    """
    owner = "pretrain_prior"
    _check_options(
        owner, objective, optimiser, steps, batch_size, validation_fraction,
        validation_every,
    )  # fmt: skip
    check_progress(owner, progress)
    data, _ = _samples(historical)
    n_valid = math.ceil(validation_fraction * data.shape[0])
    n_train = data.shape[0] - n_valid
    if validation_fraction > 0 and (n_valid < 1 or n_train < 1):
        raise ValueError(
            f"{owner}(validation_fraction={validation_fraction}) leaves "
            f"{n_train} training and {n_valid} validation states out of "
            f"{data.shape[0]}."
        )
    if batch_size > n_train:
        raise ValueError(
            f"{owner}(batch_size={batch_size}) exceeds the {n_train} training "
            f"states ({data.shape[0]} samples in `historical`, {n_valid} held out "
            "for validation)."
        )
    if isinstance(network, Standardised):
        mean, std = np.asarray(network.mean), np.asarray(network.std)
        net = network.network
    else:
        if not callable(network):
            raise TypeError(f"{owner}(network=...) must be callable, got {network!r}.")
        mean, std = _statistics(data[:n_train])
        net = network
    data = jnp.asarray((data - mean) / std)
    train, valid = data[:n_train], data[n_train:]
    state = jax.ShapeDtypeStruct(data.shape[1:], data.dtype)
    out = eqx.filter_eval_shape(net, state)
    # `getattr`, not an interface: `net` is the user's own callable, and its output
    # may be anything (a tuple, a scalar, a pytree); this check is what turns a
    # wrong output into a message naming `network`.
    if getattr(out, "shape", None) != state.shape:
        raise ValueError(
            f"{owner}(network=...) must map a state of shape {state.shape} to the "
            f"same shape, got {getattr(out, 'shape', out)}."
        )

    train_key, valid_key = jr.split(key)
    keys = jr.split(train_key, steps)
    if n_valid:
        validate = ft.partial(_validation_loss, objective, states=valid, key=valid_key)
    else:
        validate = ft.partial(_no_validation, dtype=data.dtype)
    initial = validate(net)
    net, losses, valid_losses = train_supervised(
        owner,
        net,
        _PretrainingLoss(objective, batch_size),
        train,
        keys,
        optimiser=optimiser,
        progress=progress,
        validate=validate,
        validate_every=validation_every,
    )
    history = xr.Dataset(
        {
            "loss": ("step", losses, {"long_name": "training batch loss"}),
            "validation_loss": (
                "step",
                valid_losses,
                {"long_name": "validation loss"},
            ),
        },
        coords={"step": ("step", np.arange(1, steps + 1), {"long_name": "step"})},
        attrs={
            "initial_validation_loss": float(initial),
            "train_samples": n_train,
            "validation_samples": n_valid,
            "objective": repr(objective),
        },
    )
    return Standardised(net, mean, std), history
