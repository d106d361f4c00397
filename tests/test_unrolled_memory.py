"""`Unrolled` stores carries, not data (issue 15, goal 3), in float64.

The memory is XLA's temporary buffers of the compiled hypergradient
(`memory_analysis`). Before, each step of the frozen-iterate `lax.scan` kept its
own copy of the design matrix (a `lax.cond` output), so the memory was about
``steps x data``: 100 steps of a 3200 x 50 logistic regression needed 120 MiB.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax


FEATURES, STEPS = 50, 100


def _data(samples: int):
    rng = np.random.default_rng(0)
    design = rng.normal(size=(samples, FEATURES)) / np.sqrt(FEATURES)
    labels = rng.integers(0, 2, samples).astype(np.float64)
    return jnp.asarray(design), jnp.asarray(labels)


def _logistic(w, args):
    design, labels, log_decay = args
    z = design @ w
    data = jnp.mean(jnp.logaddexp(0.0, z) - labels * z)
    return data + 0.5 * jnp.sum(jnp.exp(log_decay) * w**2)


def _hypergradient(strategy, rtol=0.0):
    solver = ax.GradientDescent(learning_rate=1.0, max_steps=STEPS, rtol=rtol)

    def loss(log_decay, design, labels):
        sol = ax.argmin(
            _logistic,
            jnp.zeros(FEATURES),
            (design, labels, log_decay),
            solver=solver,
            hypergradient=strategy,
            throw=False,
        )
        return jnp.sum(sol.value**2), sol.stats.num_steps

    return jax.jit(jax.grad(loss, has_aux=True))


def _temp_bytes(strategy, samples: int) -> int:
    design, labels = _data(samples)
    compiled = (
        _hypergradient(strategy)
        .lower(jnp.full(FEATURES, -3.0), design, labels)
        .compile()
    )
    return compiled.memory_analysis().temp_size_in_bytes


def test_memory_does_not_grow_with_the_data():
    small, large = (_temp_bytes(ax.Unrolled(), m) for m in (200, 3200))
    data = 3200 * FEATURES * 8  # the larger design matrix, 1.2 MiB
    # Stored per step it would add 100 x 1.1 MiB; a couple of working copies
    # of the data are all that may differ.
    assert large - small < 2 * data, (small, large, data)


def test_checkpointing_above_the_budget_keeps_the_gradient():
    design, labels = _data(400)
    log_decay = jnp.full(FEATURES, -3.0)
    every = ax.Unrolled()
    budget = ax.Unrolled(max_tape_mib=0.01)  # below 100 carries: checkpoints
    (grad_every, steps), (grad_budget, _) = (
        _hypergradient(s)(log_decay, design, labels) for s in (every, budget)
    )
    assert int(steps) == STEPS
    np.testing.assert_allclose(grad_budget, grad_every, rtol=1e-12, atol=1e-15)
    assert _temp_bytes(budget, 400) < _temp_bytes(every, 400)


def test_stops_at_convergence_with_the_same_gradient_as_a_fixed_count():
    # With a convergence test the loop stops early; its derivative is that of
    # the steps taken, so it equals the fixed-count run of exactly those steps.
    design, labels = _data(400)
    log_decay = jnp.full(FEATURES, -1.0)
    grad, steps = _hypergradient(ax.Unrolled(), rtol=1e-6)(log_decay, design, labels)
    assert 0 < int(steps) < STEPS

    solver = ax.GradientDescent(learning_rate=1.0, max_steps=int(steps), rtol=0.0)

    def fixed(log_decay):
        sol = ax.argmin(
            _logistic,
            jnp.zeros(FEATURES),
            (design, labels, log_decay),
            solver=solver,
            hypergradient=ax.Unrolled(),
            throw=False,
        )
        return jnp.sum(sol.value**2)

    np.testing.assert_allclose(jax.grad(fixed)(log_decay), grad, rtol=1e-12)


def test_bad_budget():
    with pytest.raises(ValueError, match="max_tape_mib"):
        ax.Unrolled(max_tape_mib=0.0)
