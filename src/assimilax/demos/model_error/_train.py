"""How each correction is learnt: jointly through 4DVar (ours), in two steps from
analyses, or supervised on the truth (the upper bound)."""

import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ... import bilevel as ax
from ..._promotion import optax_promotion
from ...dynamics import LinearCorrection
from ...learning import fit
from ._models import analyses, Experiment


def adam_fit(loss_fn, params, steps: int, learning_rate: float):
    """Full-batch `optax.adam` on ``loss_fn(params)``; returns the parameters,
    the losses and the compile and run seconds."""
    optimiser = optax.adam(learning_rate)
    trainable, static = eqx.partition(params, eqx.is_inexact_array)

    @eqx.filter_jit
    def step(trainable, opt_state):
        loss, grads = eqx.filter_value_and_grad(
            lambda t: loss_fn(eqx.combine(t, static))
        )(trainable)
        with optax_promotion():
            updates, opt_state = optimiser.update(grads, opt_state, trainable)
        return eqx.apply_updates(trainable, updates), opt_state, loss

    opt_state = optimiser.init(trainable)
    # The first step compiles: timed apart from the others.
    tick = time.perf_counter()
    trainable, opt_state, loss = jax.block_until_ready(step(trainable, opt_state))
    first_s = time.perf_counter() - tick
    losses, tick = [loss], time.perf_counter()
    for _ in range(steps - 1):
        trainable, opt_state, loss = step(trainable, opt_state)
        losses.append(loss)
    losses = np.asarray(jax.block_until_ready(losses))
    timing = {"first_step_s": first_s, "run_s": time.perf_counter() - tick}
    return eqx.combine(trainable, static), losses, timing


def train_truth(correction, slow, coupling, *, steps: int, learning_rate: float):
    """Supervised: ``correction(X) ≈ -(h c / b) sum_j Y`` on true states (the
    unresolved tendency of the slow variables; the upper bound)."""
    slow, coupling = jnp.asarray(slow), jnp.asarray(coupling)

    def loss(c):
        return jnp.mean((c(slow) - coupling) ** 2)

    return adam_fit(loss, correction, steps, learning_rate)


def train_two_step(
    experiment: Experiment,
    correction,
    windows: dict,
    solver,
    *,
    steps: int,
    learning_rate: float,
):
    """Two steps: 4DVar analyses of every window with the uncorrected model, then
    the correction fitted offline so that the corrected forecast from one
    window's analysis matches the next window's analysis (consecutive windows)."""
    tick = time.perf_counter()
    xa = analyses(experiment, LinearCorrection(), windows, solver)
    da_s = time.perf_counter() - tick
    times = np.array([0.0, experiment.window * experiment.obs_interval])
    start, end = xa[:-1], xa[1:]

    def loss(c):
        model = experiment.model(c)
        forecast = jax.vmap(lambda x: model.integrate(x, times)[-1])(start)
        return jnp.mean((forecast - end) ** 2)

    params, losses, timing = adam_fit(loss, correction, steps, learning_rate)
    return params, losses, {**timing, "assimilation_s": da_s}


def train_joint(
    experiment: Experiment,
    correction,
    windows: dict,
    *,
    solver,
    steps: int,
    batch_size: int,
    learning_rate: float | optax.Schedule,
    hypergradient=ax.Implicit(warm_start=True),
    **options,
):
    """Ours: `fit` through the 4DVar windows (outer loss: the next window's
    observations); returns `fit`'s result and seconds.

    **Raises:** `ValueError` (from `CorrectedDynamics`, naming `correction`)
    when `correction` does not map a state to a state of the same shape.
    """
    experiment.model(correction)  # checks the correction's shape eagerly
    tick = time.perf_counter()
    result = fit(
        experiment.problem_fn,
        experiment.outer_loss,
        correction,
        windows,
        optimiser=optax.adam(learning_rate),
        solver=solver,
        hypergradient=hypergradient,
        steps=steps,
        batch_size=batch_size,
        **options,
    )
    return result, {"total_s": time.perf_counter() - tick}
