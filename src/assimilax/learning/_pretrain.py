"""Pretraining of learned priors on historical states (plug-and-play)."""

import abc
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
from .._promotion import optax_promotion
from ..priors import Standardised


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
    if not isinstance(optimiser, optax.GradientTransformation):
        raise TypeError(
            f"{owner}(optimiser=...) must be an optax GradientTransformation, e.g. "
            f"optax.adam(1e-3); got {optimiser!r}."
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{owner}(steps=...) must be an int >= 1, got {steps!r}.")
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


# Loose annotations on `historical`, `objective` and `optimiser`: the checks below
# give messages that name the field.
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
    progress: bool = False,
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
    - `progress`: show a tqdm progress bar.

    **Returns:** ``(network, history)``: the trained `Standardised` network, and
    an `xarray.Dataset` over the dim `step` (1 to `steps`) with `loss` (the
    objective on the training batch of each step, before its update) and
    `validation_loss` (on the validation states after the step's update, so its
    last value is that of the returned network); attrs `initial_validation_loss`,
    `train_samples`, `validation_samples`, `objective`.

    **Raises:** `TypeError` for a wrong `objective`, `optimiser` or `historical`
    type; `ValueError` naming the field for `historical` without one `time` or
    `sample` dim, with NaN/inf, or constant; for `steps < 1`, a `batch_size`
    above the number of training states, a `validation_fraction` outside
    ``[0, 1)`` or leaving no validation state, and a `network` that changes the
    state's shape; `FloatingPointError` if the loss becomes NaN or inf.

    **Cost:** `steps` forward and backward passes on `batch_size` states, plus
    one forward pass on the validation states per `validation_every` steps.
    """
    owner = "pretrain_prior"
    _check_options(
        owner, objective, optimiser, steps, batch_size, validation_fraction,
        validation_every,
    )  # fmt: skip
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
    if getattr(out, "shape", None) != state.shape:
        raise ValueError(
            f"{owner}(network=...) must map a state of shape {state.shape} to the "
            f"same shape, got {getattr(out, 'shape', out)}."
        )

    @eqx.filter_jit
    def step(net, opt_state, train, step_key):
        batch_key, noise_key = jr.split(step_key)
        batch = jr.choice(batch_key, train.shape[0], (batch_size,), replace=False)
        loss, grads = eqx.filter_value_and_grad(objective.loss)(
            net, train[batch], noise_key
        )
        # Optax mixes Python floats with int32 step counters (``decay**count``):
        # standard promotion while it is traced, whatever the user's setting. The
        # weights keep their dtype (`apply_updates` casts the updates).
        with optax_promotion():
            updates, opt_state = optimiser.update(
                grads, opt_state, eqx.filter(net, eqx.is_inexact_array)
            )
        return eqx.apply_updates(net, updates), opt_state, loss

    @eqx.filter_jit
    def validate(net, valid, valid_key):
        return objective.loss(net, valid, valid_key)

    train_key, valid_key = jr.split(key)
    keys = jr.split(train_key, steps)
    nan = jnp.asarray(jnp.nan, data.dtype)

    def validation(net):
        return validate(net, valid, valid_key) if n_valid else nan

    initial = validation(net)
    with optax_promotion():
        opt_state = optimiser.init(eqx.filter(net, eqx.is_inexact_array))
    indices = range(steps)
    if progress:
        from tqdm.auto import tqdm

        indices = tqdm(indices, desc=owner)
    losses, valid_losses = [], []
    for i in indices:
        net, opt_state, loss = step(net, opt_state, train, keys[i])
        last = i + 1 == steps
        valid_losses.append(
            validation(net) if last or (i + 1) % validation_every == 0 else nan
        )
        losses.append(loss)
        if progress and (i % 50 == 0 or last):
            indices.set_postfix(loss=float(loss))
    losses = np.asarray(jnp.stack(losses))
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise FloatingPointError(
            f"{owner}: the loss became {losses[bad[0]]} at step {bad[0] + 1}; lower "
            "the optimiser's learning rate."
        )
    history = xr.Dataset(
        {
            "loss": ("step", losses, {"long_name": "training batch loss"}),
            "validation_loss": (
                "step",
                np.asarray(jnp.stack(valid_losses)),
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
