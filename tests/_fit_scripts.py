"""A small bilevel problem for the `fit` tests, runnable as a script (resume test).

python tests/_fit_scripts.py CHECKPOINT_DIR OUTPUT.npy [--resume] [--sleep S]
"""

import sys
import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.learning import Checkpoints, fit, NoCheckpoints  # noqa: E402


class Ridge(ax.AbstractProblem):
    """``0.5 |x - y|² + 0.5 exp(log_weight) |x|²``: the minimiser shrinks `y`."""

    y: jax.Array
    log_weight: jax.Array

    def cost(self, x):
        return 0.5 * jnp.sum((x - self.y) ** 2) + 0.5 * jnp.exp(
            self.log_weight
        ) * jnp.sum(x**2)

    def first_guess(self):
        return jnp.zeros_like(self.y)


def ridge_windows(num=12, n=5, seed=0):
    key_truth, key_noise = jax.random.split(jax.random.key(seed))
    truth = 0.6 * jax.random.normal(key_truth, (num, n))
    return {"truth": truth, "y": truth + jax.random.normal(key_noise, (num, n))}


def problem_fn(params, window):
    return Ridge(window["y"], params["log_weight"])


def outer_loss(x, params, window):
    return jnp.mean((x - window["truth"]) ** 2)


SOLVER = ax.LBFGS(rtol=1e-10)


def slowed(loss, seconds):
    """`loss` that sleeps on the host each call (same numbers, slower steps)."""

    def wrapped(x, params, window):
        jax.debug.callback(lambda: time.sleep(seconds))
        return loss(x, params, window)

    return wrapped


def run(checkpoint_dir=None, resume=False, pause=0.0, steps=12):
    loss = slowed(outer_loss, pause) if pause else outer_loss
    return fit(
        problem_fn,
        loss,
        {"log_weight": jnp.asarray(0.0)},
        ridge_windows(),
        optimiser=optax.adam(0.1),
        solver=SOLVER,
        steps=steps,
        batch_size=3,
        validation=0.25,
        validate_every=3,
        key=jax.random.key(1),
        checkpoints=(
            NoCheckpoints()
            if checkpoint_dir is None
            else Checkpoints(checkpoint_dir, every=1, resume=resume)
        ),
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    pause = float(args[args.index("--sleep") + 1]) if "--sleep" in args else 0.0
    result = run(args[0], resume="--resume" in args, pause=pause)
    np.save(args[1], np.asarray(result.params["log_weight"]))
