"""`fit`'s own time per outer step, beyond the batch's solves (issue 15, goal 4).

Run ``python benchmarks/fit_overhead.py`` (or ``--quick``: fewer steps). A
Markdown table goes to stdout and everything to
``benchmarks/results/fit_overhead.json``.

The problem is a ridge regression per window (``0.5 |x - y|² + 0.5 w |x|²``,
n = 64, `LBFGS`), so that the solves are short and the overhead shows: the
batch of 4 windows of 32, `Implicit` with warm starts, `optax.adam`. A `fit` of
`steps` steps is run (after a first run that compiles), and its median step
time (the history's `wall_s`) is compared with the median time of the same
compiled step program called directly on the same inputs, in interleaved
rounds. The difference is `fit`'s overhead per step: choosing the batch,
gathering its windows and warm starts, reading the record back, bookkeeping,
progress. Target: at most 2 ms.
"""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.learning import fit  # noqa: E402
from assimilax.learning._step import StepConfig, train_step  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, start_payload, write_json  # noqa: E402


HERE = Path(__file__).resolve().parent
TARGET_MS = 2.0


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int
    rounds: int
    n: int = 64
    windows: int = 32
    batch_size: int = 4


FULL, QUICK = Config(steps=200, rounds=5), Config(steps=60, rounds=3)


class Ridge(ax.AbstractProblem):
    y: jax.Array
    log_weight: jax.Array

    def cost(self, x):
        return 0.5 * jnp.sum((x - self.y) ** 2) + 0.5 * jnp.exp(
            self.log_weight
        ) * jnp.sum(x**2)

    def first_guess(self):
        return jnp.zeros_like(self.y)


def problem_fn(params, window):
    return Ridge(window["y"], params["log_weight"])


def outer_loss(x, params, window):
    return jnp.mean((x - window["truth"]) ** 2)


SOLVER = ax.LBFGS(rtol=1e-8)


def _windows(cfg: Config):
    key_truth, key_noise = jax.random.split(jax.random.key(0))
    truth = jax.random.normal(key_truth, (cfg.windows, cfg.n))
    return {"truth": truth, "y": truth + jax.random.normal(key_noise, truth.shape)}


def _fit(cfg: Config, windows):
    return fit(
        problem_fn,
        outer_loss,
        {"log_weight": jnp.asarray(0.0)},
        windows,
        optimiser=optax.adam(1e-2),
        solver=SOLVER,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
    )


def _step_alone(cfg: Config, windows) -> list[float]:
    """Times of the compiled step program alone, on one fixed batch."""
    config = StepConfig(problem_fn, outer_loss, optax.adam(1e-2), SOLVER, ax.Implicit())
    params = {"log_weight": jnp.asarray(0.0)}
    trainable, static = eqx.partition(params, eqx.is_inexact_array)
    opt_state = config.optimiser.init(trainable)
    batch = jax.tree.map(lambda a: a[: cfg.batch_size], windows)
    states = None
    _, _, states, _ = jax.block_until_ready(
        train_step(config, trainable, static, opt_state, batch, states)
    )
    from assimilax.learning._step import initial_states

    states, _ = initial_states(config, params, batch)
    times = []
    for _ in range(cfg.steps):
        start = time.perf_counter()
        trainable, opt_state, states, record = train_step(
            config, trainable, static, opt_state, batch, states
        )
        jax.block_until_ready(record)
        times.append(time.perf_counter() - start)
    return times


def run(cfg: Config) -> dict:
    windows = _windows(cfg)
    _fit(cfg, windows)  # compiles
    _step_alone(cfg, windows)  # compiles
    fit_ms, step_ms = [], []
    for _ in range(cfg.rounds):
        history = _fit(cfg, windows).history
        fit_ms.append(1e3 * float(np.median(history["wall_s"].values[1:])))
        step_ms.append(1e3 * float(np.median(_step_alone(cfg, windows))))
    fit_median, step_median = float(np.median(fit_ms)), float(np.median(step_ms))
    return {
        "fit_step_ms": fit_median,
        "program_ms": step_median,
        "overhead_ms": fit_median - step_median,
        "rounds_fit_ms": fit_ms,
        "rounds_program_ms": step_ms,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument(
        "--output", default=str(HERE / "results" / "fit_overhead.json"), type=Path
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    payload = start_payload(
        "fit_overhead",
        "fit: time per outer step beyond its compiled step",
        cfg,
        {"overhead_ms": TARGET_MS},
        verbose=True,
    )
    result = run(cfg)
    print(
        markdown_table(
            ["fit ms / step", "step program ms", "overhead ms", "target ms"],
            [
                [
                    f"{result['fit_step_ms']:.2f}",
                    f"{result['program_ms']:.2f}",
                    f"{result['overhead_ms']:.2f}",
                    f"<= {TARGET_MS}",
                ]
            ],
        )
    )
    payload.update(result=result, meets_target=result["overhead_ms"] <= TARGET_MS)
    write_json(args.output, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
