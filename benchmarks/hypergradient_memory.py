"""Memory of the hypergradient strategies against the number of inner steps.

Run ``python benchmarks/hypergradient_memory.py`` (n = 1024; about a minute) or
with ``--quick`` (n = 256; seconds). A Markdown table goes to stdout and
everything to ``benchmarks/results/hypergradient_memory.json``.

The problem is the 1D Tikhonov denoising of ``_tikhonov.py`` (differentiated
w.r.t. the weight λ). `Unrolled`, `Unrolled(checkpoint_every=√T)` and `Implicit`
are compiled for T = 100, 1000 and 5000 gradient-descent steps (``rtol=0``: all T
steps run), and XLA's temporary-buffer size is read from each compiled program;
the programs are also timed in interleaved rounds (see
`_common.interleaved_timings`).

Target (from the project issue): `Implicit` memory flat (≤ 1.1x) from 100 to
5000 steps.
"""

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402

import assimilax as ax  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from _tikhonov import make_problem  # noqa: E402


RESULTS_PATH = Path(__file__).resolve().parent / "results" / "hypergradient_memory.json"
# `Implicit`'s temporary memory at the most steps over that at the fewest.
FLAT = 1.1


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and options of one benchmark run."""

    n: int = 1024
    lam: float = 5.0
    linear_rtol: float = 1e-10
    steps: tuple[int, ...] = (100, 1000, 5000)
    rounds: int = 3


FULL = Config()
QUICK = Config(n=256, rounds=2)


def measure(cfg: Config) -> dict[str, Any]:
    """Temporary memory and time of each strategy at each step count."""
    problem = make_problem((cfg.n,), cfg.lam)
    lam = jnp.asarray(problem.lam)
    lr = 1.0 / problem.lipschitz
    cg = lx.CG(rtol=cfg.linear_rtol, atol=cfg.linear_rtol)
    rows, calls = [], {}
    for steps in cfg.steps:
        # rtol=0: the test never holds, every step runs; throw=False accepts that.
        gd = ax.GradientDescent(learning_rate=lr, max_steps=steps, rtol=0.0)
        checkpoint = math.ceil(math.sqrt(steps))
        strategies = {
            "Implicit(CG)": ax.Implicit(linear_solver=cg),
            "Unrolled": ax.Unrolled(),
            "Unrolled(checkpoint_every=√T)": ax.Unrolled(checkpoint_every=checkpoint),
        }
        for label, strategy in strategies.items():

            def loss(lam, strategy=strategy, gd=gd):
                sol = ax.argmin(
                    problem.fn,
                    problem.y,
                    lam,
                    solver=gd,
                    hypergradient=strategy,
                    throw=False,
                )
                return problem.outer(sol.value)

            compiled = _common.compile_ahead(jax.value_and_grad(loss), lam)
            _, grad = compiled.call(lam)
            key = f"{label} T={steps}"
            calls[key] = (compiled.call, (lam,))
            rows.append(
                {
                    "strategy": label,
                    "checkpoint_every": checkpoint if "checkpoint" in label else None,
                    "steps": steps,
                    "temp_bytes": compiled.temp_bytes,
                    "compile_s": compiled.compile_s,
                    "hypergrad": float(grad),
                    "key": key,
                }
            )
    timings = _common.interleaved_timings(calls, rounds=cfg.rounds, min_round_s=0.0)
    for row in rows:
        row["time_s"] = timings[row.pop("key")]["median_s"]
    return {"problem": problem.name, "rows": rows, "target": memory_target(rows, cfg)}


def memory_target(rows: list[dict], cfg: Config) -> dict[str, Any]:
    """`Implicit` temp memory at the largest T <= `FLAT` x that at the smallest T."""
    implicit = {
        r["steps"]: r["temp_bytes"] for r in rows if r["strategy"] == "Implicit(CG)"
    }
    lo, hi = implicit[min(cfg.steps)], implicit[max(cfg.steps)]
    if lo is None or hi is None:
        return {"holds": None, "reason": "backend reports no memory statistics"}
    ratio = hi / max(lo, 1)
    return {
        "holds": bool(ratio <= FLAT),
        "ratio": ratio,
        "bytes_low": lo,
        "bytes_high": hi,
    }


def print_result(result: dict[str, Any], cfg: Config) -> None:
    print(f"\n### Temp memory vs inner steps ({result['problem']}, GD rtol=0)\n")
    labels = list(dict.fromkeys(r["strategy"] for r in result["rows"]))
    table = []
    for steps in cfg.steps:
        by = {r["strategy"]: r for r in result["rows"] if r["steps"] == steps}
        cells: list[Any] = [steps]
        for label in labels:
            cells += [
                _common.fmt_mib(by[label]["temp_bytes"]),
                _common.fmt_ms(by[label]["time_s"]),
            ]
        table.append(cells)
    headers = ["steps T"]
    for label in labels:
        headers += [f"{label} MiB", f"{label} ms"]
    print(_common.markdown_table(headers, table))
    t = result["target"]
    if t.get("holds") is None:
        print(f"\nTarget Implicit memory flat: {t}")
        return
    verdict = "HOLDS" if t["holds"] else "FAILS"
    print(
        f"\nTarget Implicit temp memory at T={max(cfg.steps)} <= {FLAT}x T="
        f"{min(cfg.steps)}: {verdict} (ratio {t['ratio']:.3f}, "
        f"{_common.fmt_mib(t['bytes_low'])} -> {_common.fmt_mib(t['bytes_high'])} MiB)"
    )


def run(cfg: Config, out: Path | None = RESULTS_PATH, *, verbose: bool = True) -> dict:
    """Measure; print the table (if `verbose`) and write JSON to `out`."""
    payload = _common.start_payload(
        "hypergradient_memory",
        "Hypergradient memory benchmark",
        cfg,
        {"flat": FLAT},
        verbose=verbose,
    )
    payload.update(measure(cfg))
    if verbose:
        print_result(payload, cfg)
    return _common.finish_payload(payload, out, verbose=verbose)


def main(argv: list[str] | None = None) -> None:
    _common.script_main(
        argv, __doc__, run, FULL, QUICK, RESULTS_PATH, quick_help="n = 256, seconds"
    )


if __name__ == "__main__":
    main()
