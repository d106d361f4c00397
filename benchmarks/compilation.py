"""How much of a run is compiling, and what is reused (issue 15, goal 1).

Run ``python benchmarks/compilation.py`` (both demos, cold and warm: about 10
minutes on 2 cores) or with ``--quick`` (the in-process rows and the Lorenz-96
demo only). A Markdown table goes to stdout and everything to
``benchmarks/results/compilation.json``.

Compile time is read from JAX's own log (`_compile_log.CompileLog`): tracing,
lowering to MLIR and XLA compilation (or loading from the persistent cache),
summed; run time is the rest of the wall time.

- *In one process*: the heat demo's `fit` (8 windows, `Implicit` through
  Gauss-Newton, 5 steps) and the Lorenz-96 demo's `cycle` (cycled 4DVar, 60
  observation times), each called twice with freshly built problem functions,
  optimisers and options: the second call should compile nothing (target: at
  most 5 % of its time compiling).
- *Demos* (``assimilax demo NAME --quick`` in a new process each): cold, with
  an empty persistent compilation cache, then warm, a second process on the same
  cache. Targets: compiling at most 30 % of the cold wall time and 10 % of the
  warm one.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import assimilax as ax  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, start_payload, write_json  # noqa: E402
from _compile_log import CompileLog  # noqa: E402


HERE = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Config:
    demos: tuple[str, ...]


FULL, QUICK = Config(("lorenz96", "heat")), Config(("lorenz96",))
TARGETS = {"second_call_share": 0.05, "cold_demo_share": 0.30, "warm_demo_share": 0.10}


def _fit_once() -> Any:
    from assimilax.demos import heat

    windows, noise = heat.make_windows(8, seed=0)
    strategy, solver, warm = heat.STRATEGIES["Implicit"]
    return heat.learn(strategy, solver, windows, noise, steps=5, warm_start=warm)


def _cycle_once() -> Any:
    from assimilax.demos import lorenz96

    model, ds, first_guess = lorenz96.make_twin(60, seed=0)
    covariance = np.eye(lorenz96.N)
    return lorenz96.run_cycle(
        model, ds, first_guess, covariance, model_of_b=ax.CycledB(additive=1e-3)
    )


def in_process_rows() -> list[dict[str, Any]]:
    """First and second identical call of `fit` and of `cycle`."""
    rows = []
    for name, call in (
        ("fit (heat, 5 steps)", _fit_once),
        ("cycle (L96)", _cycle_once),
    ):
        for attempt in ("first call", "second call"):
            with CompileLog() as log:
                jax.block_until_ready(jnp.asarray(0.0))
                call()
            rows.append({"case": name, "run": attempt, **log.summary()})
    return rows


def demo_rows(names: list[str]) -> list[dict[str, Any]]:
    """Each demo cold (empty persistent cache) then warm (same cache)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            cache = Path(tmp) / f"cache-{name}"
            for attempt in ("cold cache", "warm cache"):
                done = subprocess.run(
                    [
                        sys.executable,
                        str(HERE / "_compile_log.py"),
                        "demo",
                        name,
                        "--quick",
                        "--out",
                        str(Path(tmp) / "out"),
                        "--compilation-cache",
                        str(cache),
                    ],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "MPLBACKEND": "Agg"},
                )
                lines = [
                    line
                    for line in done.stdout.splitlines()
                    if line.startswith("COMPILE-LOG ")
                ]
                if done.returncode != 0 or not lines:
                    raise RuntimeError(f"demo {name} failed:\n{done.stderr[-3000:]}")
                summary = json.loads(lines[-1].removeprefix("COMPILE-LOG "))
                summary.pop("status")
                rows.append({"case": f"demo {name} --quick", "run": attempt, **summary})
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "case",
        "run",
        "wall s",
        "trace s",
        "lower s",
        "XLA compile/load s",
        "compiling s",
        "running s",
        "compiling share",
        "programs",
        "cache hits",
    ]
    body = [
        [
            r["case"],
            r["run"],
            f"{r['wall_s']:.1f}",
            f"{r['trace_s']:.1f}",
            f"{r['lower_s']:.1f}",
            f"{r['compile_s']:.1f}",
            f"{r['compiling_s']:.1f}",
            f"{r['running_s']:.1f}",
            f"{100 * r['compile_share']:.0f} %",
            r["programs"],
            r["cache_hits"],
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def _verdicts(rows: list[dict[str, Any]]) -> dict[str, bool]:
    verdicts = {}
    for r in rows:
        key = f"{r['case']}, {r['run']}"
        if r["run"] == "second call":
            verdicts[key] = r["compile_share"] <= TARGETS["second_call_share"]
        elif r["run"] == "cold cache":
            verdicts[key] = r["compile_share"] <= TARGETS["cold_demo_share"]
        elif r["run"] == "warm cache":
            verdicts[key] = r["compile_share"] <= TARGETS["warm_demo_share"]
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="L96 demo only")
    parser.add_argument(
        "--output", default=str(HERE / "results" / "compilation.json"), type=Path
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    payload = start_payload(
        "compilation",
        "Compilation: share of the wall time, reuse",
        cfg,
        TARGETS,
        verbose=True,
    )
    rows = in_process_rows()
    rows += demo_rows(list(cfg.demos))
    print(_table(rows))
    verdicts = _verdicts(rows)
    print()
    for key, ok in verdicts.items():
        print(f"- {key}: {'meets' if ok else 'MISSES'} its target")
    payload.update(rows=rows, verdicts=verdicts)
    write_json(args.output, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
