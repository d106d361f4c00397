"""The supervised training loop shared by `pretrain_prior`, `train_lista` and
`train_learned_gradient_solver`.

Each trainer says what one step's loss is (an `AbstractBatchLoss`) and what each
step receives (its batch indices, or a key that draws them); this module runs the
optimiser steps, the progress meter, the optional validation and the loss history.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
from jaxtyping import Array, PyTree

from .._custom_types import Scalar
from .._progress import AbstractProgress
from .._promotion import optax_promotion


# How often the progress meter is given the batch loss: reading it waits for the
# step, so not at every step.
_SHOW_LOSS_EVERY = 50


class AbstractBatchLoss(eqx.Module):
    """The loss of one training step, ``loss(model, data, step_input) -> scalar``.

    `data` is the whole training set (a pytree of arrays, the same at every
    step) and `step_input` the step's own input: its batch indices, or a key to
    draw them. A loss is an Equinox module, hashed by its structure, so that
    trainers called again with an equal loss reuse the compiled step.
    """

    @abc.abstractmethod
    def __call__(self, model: PyTree, data: PyTree, step_input: PyTree) -> Scalar:
        """The scalar loss of `model` on the step's batch of `data`."""


# Module level, and configured only by its arguments (the loss module and the
# optimiser, whose functions are static and hashed by identity): a trainer called
# again with the same loss, optimiser and shapes reuses the compiled step.
@eqx.filter_jit
def _train_step(model, opt_state, data, step_input, loss, optimiser):
    value, grads = eqx.filter_value_and_grad(loss)(model, data, step_input)
    params = eqx.filter(model, eqx.is_inexact_array)
    # Optax mixes Python floats with its int32 step counters (``decay**count``,
    # Adam's bias correction): standard promotion while it is traced, whatever the
    # user's setting. The weights keep their dtype (`apply_updates` casts).
    with optax_promotion():
        updates, opt_state = optimiser.update(grads, opt_state, params)
    return eqx.apply_updates(model, updates), opt_state, value


def check_optimiser(owner: str, optimiser: object) -> None:
    """Raise `TypeError` unless `optimiser` is an optax transformation."""
    if not isinstance(optimiser, optax.GradientTransformation):
        raise TypeError(
            f"{owner}(optimiser=...) must be an optax GradientTransformation, e.g. "
            f"optax.adam(1e-3); got {optimiser!r}."
        )


def check_steps(owner: str, steps: object) -> None:
    """Raise `ValueError` unless `steps` is an int >= 1."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{owner}(steps=...) must be an int >= 1, got {steps!r}.")


def train_supervised(
    owner: str,
    model: PyTree,
    loss: AbstractBatchLoss,
    data: PyTree,
    step_inputs: PyTree,
    *,
    optimiser: optax.GradientTransformation,
    progress: AbstractProgress,
    validate: Callable[[PyTree], Array] | None = None,
    validate_every: int = 1,
) -> tuple[PyTree, np.ndarray, np.ndarray | None]:
    """Take one `optimiser` step on `loss` per row of `step_inputs`.

    **Arguments:**

    - `owner`: the public trainer's name, for the progress meter and errors.
    - `model`: the Equinox module to train (its inexact arrays).
    - `loss`: the step's loss, ``loss(model, data, step_input)``.
    - `data`: the training set, passed whole to every step.
    - `step_inputs`: a pytree whose leaves have a leading axis of one row per
      step (batch indices or keys); its length is the number of steps.
    - `optimiser`, `progress`: as the trainer was given them.
    - `validate`: ``validate(model) -> scalar``, run on the host after every
      `validate_every`-th step and after the last one; `None`: no validation.

    **Returns:** ``(model, losses, validation)``: the trained model, the batch
    loss before each step (NumPy, shape ``(steps,)``), and the validation losses
    after each step (NaN where not evaluated; `None` without `validate`).

    **Raises:** `FloatingPointError` if a batch loss is NaN or inf.
    """
    steps = len(jtu.tree_leaves(step_inputs)[0])
    with optax_promotion():
        opt_state = optimiser.init(eqx.filter(model, eqx.is_inexact_array))
    bar = progress.open(total=steps, desc=owner)
    losses, validation = [], {}
    try:
        for i in range(steps):
            step_input = jtu.tree_map(lambda a: a[i], step_inputs)
            model, opt_state, value = _train_step(
                model, opt_state, data, step_input, loss, optimiser
            )
            losses.append(value)
            last = i + 1 == steps
            if validate is not None and (last or (i + 1) % validate_every == 0):
                validation[i] = validate(model)
            shown = i % _SHOW_LOSS_EVERY == 0 or last
            bar.update(1, **({"loss": float(value)} if shown else {}))
    finally:
        bar.close()
    losses = np.asarray(jnp.stack(losses))
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise FloatingPointError(
            f"{owner}: the loss became {losses[bad[0]]} at step {bad[0] + 1}; lower "
            "the optimiser's learning rate."
        )
    if validate is None:
        return model, losses, None
    values = {i: np.asarray(v) for i, v in validation.items()}
    history = np.full(steps, np.nan, np.result_type(*values.values()))
    for i, value in values.items():
        history[i] = value
    return model, losses, history
