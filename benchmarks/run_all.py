"""Run every benchmark, each in its own subprocess; summarise; update the docs page.

    python benchmarks/run_all.py --quick     # small sizes: under 10 minutes, 2 cores
    python benchmarks/run_all.py             # full sizes: lorenz96 alone ~10 min
    python benchmarks/run_all.py --quick --only fourdvar_cost,heat2d_scaling

The benchmarks (`BENCHMARKS`; adding one is one more entry):

- ``hypergradients``: every hypergradient strategy against closed forms and
  optimistix: error, time, compile time, memory.
- ``hypergradient_memory``: *memory vs inner steps*: `Unrolled`, checkpointed
  `Unrolled` and `Implicit` compiled for 100 to 5000 inner steps, XLA temporary
  memory and time.
- ``fourdvar_cost``: `value_and_grad` of the 4DVar cost over one forward run.
- ``heat2d_scaling``: one 4DVar solve on Heat 2D, time against grid points.
- ``lorenz96``: cycled 3DVar/4DVar against DAPPER's numbers, and DAPPER's own
  code when it is importable (else our side alone; the report says so).
- ``preconditioners``: `Implicit`'s backward CG iterations and time per
  preconditioner (none, L-BFGS memory raced or unchecked, ``B``, exact inverse)
  on Heat 1D, Lorenz-96 and Heat 2D 4DVar in direct control.
- ``compilation``: compile and run time of a first and a second identical
  `fit` and `cycle` in one process, and of the demos in new processes with a
  cold and a warm persistent compilation cache.
- ``fit_overhead``: `fit`'s time per outer step beyond its compiled step.
- ``peers``: `LBFGS` + `Implicit` against Optimistix's and JAXopt's L-BFGS
  with implicit differentiation (heat 4DVar, logistic regression, Tikhonov
  1D/2D): inner steps, time per step, forward and value_and_grad time, compile
  time, hypergradient error, ratios to the best peer.
- ``unrolled_peers``: `Unrolled` against Optimistix's `RecursiveCheckpointAdjoint`
  (heat 4DVar, logistic regression), every step stored and checkpointed: compile
  and run time, memory, ratios at equal memory.
- ``sharding``: throughput of `fit` with its batch split over 1, 2 and 4 devices
  (optional: skipped where its script is absent).

Each runs as ``python SCRIPT [--quick] --output NAME.json`` (or the script's own
output flag) in its own process,
so a failure stops nothing else; its stdout (Markdown tables) is kept beside the
JSON as ``NAME.md``. Full runs write to ``benchmarks/results/``, ``--quick`` ones
to ``benchmarks/results/quick/`` (full-size results are never overwritten by
quick ones). Then the runner draws a PNG per benchmark (``docs/benchmarks/``,
``quick/`` below it), writes ``summary.json`` and ``summary.md`` (date, machine,
status and wall time of each benchmark, every table) to the results folder, and
rewrites the results part of ``docs/benchmarks.md`` from both folders. The exit
code is 1 if any benchmark failed.
"""

import argparse
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


sys.path.insert(0, str(Path(__file__).resolve().parent))
import _plots  # noqa: E402
import _report  # noqa: E402
from _common import machine_info, write_json  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
STDERR_TAIL = 30  # lines of a failed benchmark's stderr kept in the summary


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A script run as ``python script [--quick] output_flag NAME.json``.

    It writes its results to that JSON and prints Markdown tables to stdout;
    `plot(payload, png)` draws them. A missing `optional` script is skipped, a
    missing required one fails.
    """

    name: str
    script: Path
    output_flag: str = "--output"
    plot: Callable[[dict[str, Any], Path], None] | None = None
    optional: bool = False


BENCHMARKS = (
    Benchmark(
        "hypergradients", HERE / "hypergradients.py", "--out", _plots.hypergradients
    ),
    Benchmark(
        "hypergradient_memory",
        HERE / "hypergradient_memory.py",
        plot=_plots.hypergradient_memory,
    ),
    Benchmark("fourdvar_cost", HERE / "fourdvar_cost.py", plot=_plots.fourdvar_cost),
    Benchmark("heat2d_scaling", HERE / "heat2d_scaling.py", plot=_plots.heat2d_scaling),
    Benchmark("lorenz96", HERE / "lorenz96.py", plot=_plots.lorenz96),
    Benchmark(
        "preconditioners", HERE / "preconditioners.py", plot=_plots.preconditioners
    ),
    Benchmark("compilation", HERE / "compilation.py"),
    Benchmark("fit_overhead", HERE / "fit_overhead.py"),
    Benchmark("peers", HERE / "peers.py"),
    Benchmark("unrolled_peers", HERE / "unrolled_peers.py"),
    Benchmark("sharding", HERE / "sharding.py", optional=True),
)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where results, plots and the docs page live (``quick/`` below for --quick)."""

    results: Path = HERE / "results"
    plots: Path = ROOT / "docs" / "benchmarks"
    page: Path | None = ROOT / "docs" / "benchmarks.md"

    def folders(self, quick: bool) -> tuple[Path, Path]:
        sub = "quick" if quick else ""
        return self.results / sub, self.plots / sub


def _shown(path: Path) -> str:
    return os.path.relpath(path, ROOT)


def _tail(text: str | bytes | None) -> str:
    if isinstance(text, bytes):  # TimeoutExpired keeps bytes even with text=True
        text = text.decode(errors="replace")
    return "\n".join((text or "").strip().splitlines()[-STDERR_TAIL:])


def run_one(bench: Benchmark, output: Path, *, quick: bool, timeout: float | None):
    """Run `bench` writing `output`; its outcome as a JSON-ready dict."""
    flags = (["--quick"] if quick else []) + [bench.output_flag]
    command = ["python", _shown(bench.script), *flags, _shown(output)]
    outcome = {
        "status": "failed",
        "wall_s": None,
        "returncode": None,
        "command": " ".join(command),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "detail": "",
    }
    if not bench.script.exists():
        outcome["detail"] = f"{_shown(bench.script)} not found"
        outcome["status"] = "skipped" if bench.optional else "failed"
        return outcome
    for stale in (output, output.with_suffix(".md")):
        stale.unlink(missing_ok=True)  # a failed run must not leave old results
    start = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, str(bench.script), *flags, str(output)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        outcome["wall_s"] = time.perf_counter() - start
        outcome["detail"] = f"timed out after {timeout} s\n{_tail(error.stderr)}"
        return outcome
    outcome["wall_s"] = time.perf_counter() - start
    outcome["returncode"] = done.returncode
    if done.returncode != 0 or not output.exists():
        outcome["detail"] = _tail(done.stderr) or f"no {output.name} written"
        return outcome
    output.with_suffix(".md").write_text(done.stdout)
    outcome["status"] = "ok"
    return outcome


def plot_one(bench: Benchmark, output: Path, png: Path, outcome: dict) -> None:
    """Draw `bench`'s plot; a plotting error fails the benchmark, nothing else."""
    png.unlink(missing_ok=True)
    if bench.plot is None or outcome["status"] != "ok":
        return
    try:
        bench.plot(json.loads(output.read_text()), png)
    except Exception:  # any error in a plot is reported, the run goes on
        outcome["status"] = "failed"
        outcome["detail"] = "plot failed:\n" + _tail(traceback.format_exc())


def _progress(index: int, total: int, name: str, message: str) -> None:
    print(f"[{index}/{total}] {name}: {message}", flush=True)


def run_benchmarks(
    benchmarks: Sequence[Benchmark],
    results: Path,
    plots: Path,
    *,
    quick: bool,
    timeout: float | None,
) -> dict[str, dict[str, Any]]:
    """Run each benchmark in turn with a progress line; the outcomes by name."""
    outcomes = {}
    for index, bench in enumerate(benchmarks, start=1):
        output = results / f"{bench.name}.json"
        _progress(index, len(benchmarks), bench.name, "running")
        outcome = run_one(bench, output, quick=quick, timeout=timeout)
        plot_one(bench, output, plots / f"{bench.name}.png", outcome)
        wall = outcome["wall_s"]
        message = outcome["status"] + ("" if wall is None else f" in {wall:.1f} s")
        if outcome["status"] != "ok" and outcome["detail"]:
            message += f": {outcome['detail'].splitlines()[-1]}"
        _progress(index, len(benchmarks), bench.name, message)
        outcomes[bench.name] = outcome
    return outcomes


def update_page(benchmarks: Sequence[Benchmark], layout: Layout) -> None:
    """Rewrite the docs page's results: full-size first, then the quick run."""
    names = [b.name for b in benchmarks]
    sections = []
    for title, quick in (("Full size", False), ("Quick run (`--quick`)", True)):
        results, plots = layout.folders(quick)
        body = _report.render_results(
            names, results, plots, layout.page.parent, level=3
        )
        sections.append((title, body or "No results yet."))
    _report.update_page(layout.page, sections)


def parse_args(argv: Sequence[str] | None, names: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(names)}")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per benchmark"
    )
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(names)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(names)}")
    args.chosen = [n for n in names if n in chosen]
    return args


def main(
    argv: Sequence[str] | None = None,
    benchmarks: Sequence[Benchmark] = BENCHMARKS,
    layout: Layout = Layout(),
) -> int:
    """Run the chosen benchmarks, write the summaries and the page; the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv, [b.name for b in benchmarks])
    results, plots = layout.folders(args.quick)
    results.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    chosen = [b for b in benchmarks if b.name in args.chosen]
    outcomes = run_benchmarks(
        chosen, results, plots, quick=args.quick, timeout=args.timeout
    )
    summary = {
        "command": " ".join(["python", _shown(Path(__file__).resolve()), *argv]),
        "quick": args.quick,
        "machine": machine_info(),
        "wall_s": time.perf_counter() - start,
        "benchmarks": outcomes,
    }
    write_json(results / "summary.json", summary)
    title = "Benchmark results (" + ("quick" if args.quick else "full size") + ")"
    names = [b.name for b in benchmarks]
    _report.write_summary(results / "summary.md", title, names, results, plots)
    if layout.page is not None:
        update_page(benchmarks, layout)
    failed = [name for name, o in outcomes.items() if o["status"] == "failed"]
    print(f"done in {summary['wall_s']:.0f} s; summary: {_shown(results)}/summary.md")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
