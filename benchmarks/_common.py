"""Helpers shared by the benchmarks: compilation statistics, timing, tables, JSON.

The machines these run on are shared and noisy, so timings are taken in *interleaved
rounds* (every method once per round, rounds repeated) and summarised by the median:
a burst of load then hits all methods alike instead of whichever ran at the time.
"""

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np


def machine_info() -> dict[str, Any]:
    """Date, machine and library versions, for the header of a results file."""
    versions = {}
    for name in ("jax", "jaxlib", "equinox", "lineax", "optimistix", "assimilax"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),
        "versions": versions,
    }


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else the architecture."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if "model name" in line]
    return names[0] if names else platform.machine()


@dataclasses.dataclass
class Compiled:
    """A function compiled ahead of time, with what XLA says about it."""

    call: Callable[..., Any]
    compile_s: float
    temp_bytes: int | None


def compile_ahead(fn: Callable[..., Any], *args: Any) -> Compiled:
    """Trace, lower and compile ``jax.jit(fn)`` for `args`; time it; read its memory.

    `temp_bytes` is XLA's ``temp_size_in_bytes``: the scratch buffers the program
    needs beyond its inputs and outputs, i.e. the peak working memory of one call
    (``None`` where the backend does not report it).
    """
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    try:
        stats = compiled.memory_analysis()
    except (NotImplementedError, RuntimeError):  # some backends do not implement it
        stats = None
    temp = None if stats is None else getattr(stats, "temp_size_in_bytes", None)
    return Compiled(compiled, compile_s, None if temp is None else int(temp))


def _call_blocking(call: Callable[..., Any], args: Sequence[Any]) -> None:
    jax.block_until_ready(call(*args))


def interleaved_timings(
    calls: dict[str, tuple[Callable[..., Any], Sequence[Any]]],
    *,
    rounds: int,
    min_round_s: float = 0.02,
    budget_s: float | None = None,
) -> dict[str, dict[str, float]]:
    """Median wall time per call of each compiled function, over interleaved rounds.

    Each function is warmed up (two calls), then in every round each is called
    ``n`` times in a row, ``n`` chosen once so that a round of it lasts at least
    `min_round_s` (timer resolution and Python overhead stay negligible); the
    round's time per call is recorded. A function whose `rounds` would take longer
    than `budget_s` joins only the first ``max(3, budget_s / once)`` rounds.
    Returns ``{name: {"median_s", "min_s", "max_s", "calls_per_round",
    "rounds"}}``.
    """
    per_round, num_rounds = {}, {}
    for name, (call, args) in calls.items():
        _call_blocking(call, args)
        start = time.perf_counter()
        _call_blocking(call, args)
        once = max(time.perf_counter() - start, 1e-7)
        per_round[name] = max(1, math.ceil(min_round_s / once))
        num_rounds[name] = rounds
        if budget_s is not None and once * rounds > budget_s:
            num_rounds[name] = min(rounds, max(3, int(budget_s / once)))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for index in range(rounds):
        for name, (call, args) in calls.items():
            if index >= num_rounds[name]:
                continue
            n = per_round[name]
            start = time.perf_counter()
            for _ in range(n):
                _call_blocking(call, args)
            samples[name].append((time.perf_counter() - start) / n)
    return {
        name: {
            "median_s": float(np.median(values)),
            "min_s": float(np.min(values)),
            "max_s": float(np.max(values)),
            "calls_per_round": per_round[name],
            "rounds": len(values),
        }
        for name, values in samples.items()
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (cells converted with `str`)."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_sci(value: float | None, digits: int = 1) -> str:
    """``1.2e-08``-style, or ``-`` for a missing value."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}e}"


def fmt_ms(seconds: float | None) -> str:
    """Seconds as milliseconds with three significant figures."""
    if seconds is None:
        return "-"
    return f"{1e3 * seconds:.3g}"


def fmt_mib(num_bytes: int | None) -> str:
    """Bytes as MiB (three significant figures), or ``-``."""
    if num_bytes is None:
        return "-"
    return f"{num_bytes / 2**20:.3g}"


def _jsonable(value: Any) -> Any:
    # NaN and inf are not JSON: write them as null so that any reader can parse it.
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, jax.Array)):
        value = np.asarray(value).item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` as indented JSON, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")


def start_payload(
    name: str, title: str, cfg: Any, thresholds: dict[str, Any], *, verbose: bool
) -> dict[str, Any]:
    """The head of a results file (benchmark, machine, config, thresholds); with
    `verbose`, prints ``## title (date, machine, ...)`` first."""
    payload = {
        "benchmark": name,
        "machine": machine_info(),
        "config": dataclasses.asdict(cfg),
        "thresholds": thresholds,
    }
    if verbose:
        info = payload["machine"]
        precision = "float64" if info["x64"] else "float32"
        print(
            f"## {title} ({info['date']}, {info['platform']}, {info['cpu_usable']}/"
            f"{info['cpu_count']} CPUs, jax {info['versions']['jax']}, "
            f"{info['backend']}, {precision})"
        )
    return payload


def finish_payload(
    payload: dict[str, Any], out: Path | None, *, verbose: bool
) -> dict[str, Any]:
    """Write `payload` to `out` (unless `None`) and return it."""
    if out is not None:
        write_json(out, payload)
        if verbose:
            print(f"wrote {out}", file=sys.stderr)
    return payload


def script_main(
    argv: Sequence[str] | None,
    doc: str,
    run: Callable[[Any, Path], Any],
    full: Any,
    quick: Any,
    results_path: Path,
    *,
    quick_help: str,
    output_flag: str = "--output",
) -> None:
    """The command line of a benchmark script: ``[--quick] [OUTPUT_FLAG PATH]``,
    then ``run(quick or full config, path)``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument(
        output_flag,
        dest="output",
        type=Path,
        default=results_path,
        help="JSON output path",
    )
    options = parser.parse_args(argv)
    run(quick if options.quick else full, options.output)
