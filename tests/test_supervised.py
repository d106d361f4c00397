"""The supervised trainers share one loop: its step compiles once for repeated
calls with the same configuration, and a progress meter is an object."""

import logging

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

from assimilax import NoProgress
from assimilax.learning import (
    Autoencoding,
    LearnedGradientSolver,
    LISTA,
    pretrain_prior,
    train_learned_gradient_solver,
    train_lista,
)
from assimilax.priors import MLPAutoencoder


def _step_compilations(train, caplog, calls=2):
    """The compilations of the training step while `train()` runs `calls` times."""
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles(True):
        for _ in range(calls):
            train()
    return [m for m in caplog.messages if m.startswith("Compiling jit(_train_step)")]


def _quadratic(x, b):
    return 0.5 * jnp.sum(x**2) - b @ x


def _trainers():
    rng = np.random.default_rng(0)
    optimiser = optax.adam(1e-3)
    states = rng.normal(size=(40, 6))
    D = jnp.asarray(rng.normal(size=(5, 8)))
    y, z = jnp.asarray(rng.normal(size=(32, 5))), jnp.asarray(rng.normal(size=(32, 8)))
    b = jnp.asarray(rng.normal(size=(16, 6)))
    return {
        "pretrain_prior": lambda progress=NoProgress(): pretrain_prior(
            MLPAutoencoder(6, 2, width=8, key=jr.key(0)),
            states,
            objective=Autoencoding(),
            optimiser=optimiser,
            steps=3,
            batch_size=8,
            key=jr.key(1),
            progress=progress,
        ),
        "train_lista": lambda progress=NoProgress(): train_lista(
            LISTA.from_dictionary(D, 0.1, 3),
            y,
            z,
            optimiser=optimiser,
            steps=3,
            batch_size=8,
            key=jr.key(2),
            progress=progress,
        ),
        "train_learned_gradient_solver": lambda progress=NoProgress(): (
            train_learned_gradient_solver(
                LearnedGradientSolver(2, learning_rate=0.5, key=jr.key(3)),
                _quadratic,
                jnp.zeros((16, 6)),
                b,
                b,
                optimiser=optimiser,
                steps=3,
                batch_size=4,
                key=jr.key(4),
                progress=progress,
            )
        ),
    }


@pytest.mark.parametrize("name", sorted(_trainers()))
def test_a_repeat_call_does_not_compile_the_step_again(name, caplog):
    compiles = _step_compilations(_trainers()[name], caplog)
    assert len(compiles) == 1, compiles


@pytest.mark.parametrize("name", sorted(_trainers()))
def test_progress_must_be_a_meter(name):
    with pytest.raises(TypeError, match="progress"):
        _trainers()[name](progress=True)
