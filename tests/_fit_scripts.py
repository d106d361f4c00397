"""A small bilevel problem for the `fit` tests, runnable as a script (resume test).

python tests/_fit_scripts.py CHECKPOINT_DIR OUTPUT.npy [--resume] [--sleep S]
    [--steps N]

With the environment variable ``ASSIMILAX_TEST_SLOW_CHECKPOINTS=SECONDS`` every
file-system step of a checkpoint write is stretched by that long (a test-only
hook, patched into this process: the library is unchanged), so that a SIGKILL
at a random moment usually lands inside a write.
"""

import os
import sys
import time
from pathlib import Path

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


SLOW_CHECKPOINTS = "ASSIMILAX_TEST_SLOW_CHECKPOINTS"


def slow_checkpoint_writes(seconds: float) -> None:
    """Stretch each file-system step of `save_checkpoint` by `seconds`: a file is
    left half written for that long before it is written whole, a folder loses
    its files one by one before it is removed, and each rename waits before and
    after. Patches the private helpers of `assimilax.learning._checkpoint`."""
    from assimilax.learning import _checkpoint

    write, replace, remove = (
        _checkpoint._write,
        _checkpoint._replace,
        _checkpoint._remove,
    )

    def slow_write(path, data):
        with open(path, "wb") as file:
            file.write(data[: len(data) // 2])
            file.flush()
            time.sleep(seconds)
        write(path, data)

    def slow_replace(source, target):
        time.sleep(seconds)
        replace(source, target)
        time.sleep(seconds)

    def slow_remove(path):
        for child in sorted(Path(path).glob("*")):
            child.unlink(missing_ok=True)
            time.sleep(seconds)
        remove(path)

    _checkpoint._write = slow_write
    _checkpoint._replace = slow_replace
    _checkpoint._remove = slow_remove


if __name__ == "__main__":
    args = sys.argv[1:]
    pause = float(args[args.index("--sleep") + 1]) if "--sleep" in args else 0.0
    steps = int(args[args.index("--steps") + 1]) if "--steps" in args else 12
    if os.environ.get(SLOW_CHECKPOINTS):
        slow_checkpoint_writes(float(os.environ[SLOW_CHECKPOINTS]))
    result = run(args[0], resume="--resume" in args, pause=pause, steps=steps)
    np.save(args[1], np.asarray(result.params["log_weight"]))
