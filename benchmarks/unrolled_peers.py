"""`Unrolled` against Optimistix's `RecursiveCheckpointAdjoint` (issue 15, goal 3).

Run ``python benchmarks/unrolled_peers.py`` (full sizes, a few minutes on 2
cores) or with ``--quick`` (small sizes, well under a minute). A Markdown table
goes to stdout and everything to ``benchmarks/results/unrolled_peers.json``.

**Problems** (float64): the heat-1D 4DVar (n = 256, 40 time steps, ``theta = log
kappa``) and the logistic regression (2000 samples x 500 features, per-feature
log weight decays ``theta``) of ``peers.py``.

**Methods**: the same iteration, plain gradient descent with step ``1/L`` (``L``
from 50 power iterations on the Hessian at the start, times 1.05) for exactly
`steps` updates (no convergence test: ``rtol = 0`` for assimilax, ``rtol = atol =
0`` for Optimistix, both ``throw=False``; Optimistix's ``max_steps`` is ``steps +
1``, since its first step only evaluates the start), differentiated in reverse
mode:

- assimilax ``GradientDescent + Unrolled()``: every step's carry stored (the
  automatic choice below 256 MiB);
- Optimistix ``GradientDescent`` + ``RecursiveCheckpointAdjoint(checkpoints=
  steps)``: every step stored too (equal memory);
- assimilax ``Unrolled(checkpoint_every=c)`` and Optimistix
  ``RecursiveCheckpointAdjoint()`` with Equinox's default number of checkpoints
  (``c`` chosen so that both store that many).

Each row: compile time, the median run time of the jitted value-and-gradient of
the outer loss (interleaved rounds), XLA's temporary memory, and the gradient's
relative difference from assimilax's (same iteration, so rounding only).
Targets: assimilax's time <= 1.0x Optimistix's at equal memory, and memory that
does not grow with the data (compare the logistic data, 7.6 MiB, with the rows).
"""

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optimistix as optx  # noqa: E402

import assimilax as ax  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    compile_ahead,
    finish_payload,
    fmt_mib,
    fmt_ms,
    fmt_sci,
    interleaved_timings,
    markdown_table,
    script_main,
    start_payload,
)
from peers import Config as PeersConfig, heat, logistic, Problem  # noqa: E402


RESULTS_PATH = Path(__file__).resolve().parent / "results" / "unrolled_peers.json"


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and options of one benchmark run."""

    peers: PeersConfig = PeersConfig()
    heat_steps: int = 200
    logistic_steps: int = 245
    rounds: int = 7
    budget_s: float = 20.0


FULL = Config()
QUICK = Config(
    peers=PeersConfig(
        heat_n=64, heat_steps=20, logistic_samples=200, logistic_features=20
    ),
    heat_steps=50,
    logistic_steps=50,
    rounds=3,
    budget_s=2.0,
)


def _step_size(problem: Problem) -> float:
    """``1 / (1.05 L)``, ``L`` the largest Hessian eigenvalue at the start."""
    hvp = jax.jit(
        lambda v: jax.jvp(
            lambda x: jax.grad(problem.fn)(x, problem.theta), (problem.x0,), (v,)
        )[1]
    )
    v = jax.random.normal(jax.random.key(0), problem.x0.shape, problem.x0.dtype)
    for _ in range(50):
        v = hvp(v)
        v = v / jnp.linalg.norm(v)
    lipschitz = float(jnp.vdot(v, hvp(v)))
    return 1.0 / (1.05 * lipschitz)


def methods(problem: Problem, steps: int, learning_rate: float) -> dict[str, Any]:
    """``name -> loss(theta)``: the outer loss through `steps` descent steps."""
    checkpoints = math.floor(-1.5 + math.sqrt(2 * steps + 0.25)) + 1  # Equinox's
    every = math.ceil(steps / checkpoints)
    ours = ax.GradientDescent(learning_rate=learning_rate, max_steps=steps, rtol=0.0)
    theirs = optx.GradientDescent(learning_rate=learning_rate, rtol=0.0, atol=0.0)

    def assimilax_loss(strategy):
        def loss(theta):
            sol = ax.argmin(
                problem.fn,
                problem.x0,
                theta,
                solver=ours,
                hypergradient=strategy,
                throw=False,
            )
            return problem.outer(sol.value)

        return loss

    def optimistix_loss(adjoint):
        def loss(theta):
            sol = optx.minimise(
                problem.fn,
                theirs,
                problem.x0,
                args=theta,
                max_steps=steps + 1,
                adjoint=adjoint,
                throw=False,
            )
            return problem.outer(sol.value)

        return loss

    return {
        "assimilax Unrolled()": assimilax_loss(ax.Unrolled()),
        f"optimistix RecursiveCheckpointAdjoint({steps + 1})": optimistix_loss(
            optx.RecursiveCheckpointAdjoint(checkpoints=steps + 1)
        ),
        f"assimilax Unrolled(checkpoint_every={every})": assimilax_loss(
            ax.Unrolled(checkpoint_every=every)
        ),
        f"optimistix RecursiveCheckpointAdjoint() [{checkpoints}]": optimistix_loss(
            optx.RecursiveCheckpointAdjoint()
        ),
    }


def measure(problem: Problem, steps: int, cfg: Config) -> dict[str, Any]:
    learning_rate = _step_size(problem)
    compiled = {
        name: compile_ahead(jax.value_and_grad(loss), problem.theta)
        for name, loss in methods(problem, steps, learning_rate).items()
    }
    timings = interleaved_timings(
        {name: (c.call, (problem.theta,)) for name, c in compiled.items()},
        rounds=cfg.rounds,
        budget_s=cfg.budget_s,
    )
    grads = {name: np.asarray(c.call(problem.theta)[1]) for name, c in compiled.items()}
    reference = grads["assimilax Unrolled()"]
    rows = [
        {
            "method": name,
            "compile_s": c.compile_s,
            "run_s": timings[name]["median_s"],
            "temp_bytes": c.temp_bytes,
            "grad_rel_diff": float(
                np.linalg.norm(grads[name] - reference) / np.linalg.norm(reference)
            ),
        }
        for name, c in compiled.items()
    ]
    ratios = {
        "store every step": rows[0]["run_s"] / rows[1]["run_s"],
        "checkpointed": rows[2]["run_s"] / rows[3]["run_s"],
    }
    return {
        "problem": problem.name,
        "steps": steps,
        "learning_rate": learning_rate,
        "rows": rows,
        "ratios": ratios,
    }


def print_result(result: dict[str, Any]) -> None:
    print(f"\n### {result['problem']}, {result['steps']} descent steps\n")
    rows = [
        [
            r["method"],
            f"{r['compile_s']:.2f}",
            fmt_ms(r["run_s"]),
            fmt_mib(r["temp_bytes"]),
            fmt_sci(r["grad_rel_diff"]),
        ]
        for r in result["rows"]
    ]
    headers = ["method", "compile s", "run ms", "temp MiB", "grad rel. diff"]
    print(markdown_table(headers, rows))
    print(
        "\nassimilax / optimistix time at equal memory: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in result["ratios"].items())
    )


def run(cfg: Config, out: Path | None = RESULTS_PATH, *, verbose: bool = True) -> dict:
    """Measure both problems; print tables (if `verbose`), write JSON to `out`."""
    payload = start_payload(
        "unrolled_peers",
        "Unrolled against Optimistix's RecursiveCheckpointAdjoint",
        cfg,
        {"ratio": 1.0},
        verbose=verbose,
    )
    payload["problems"] = []
    for build, steps in (
        (heat, cfg.heat_steps),
        (logistic, cfg.logistic_steps),
    ):
        result = measure(build(cfg.peers, reference=False), steps, cfg)
        payload["problems"].append(result)
        if verbose:
            print_result(result)
    return finish_payload(payload, out, verbose=verbose)


def main(argv: list[str] | None = None) -> None:
    script_main(argv, __doc__, run, FULL, QUICK, RESULTS_PATH, quick_help="small sizes")


if __name__ == "__main__":
    main()
