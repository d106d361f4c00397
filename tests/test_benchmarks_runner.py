"""The benchmark runner's plumbing on fake benchmarks (seconds, no heavy runs):
one subprocess each, JSON and Markdown summaries, the docs page, failures."""

import json

import pytest

from scripts import load_benchmark, ROOT


# A fake benchmark: writes its JSON where told and prints a Markdown table.
GOOD = """
import json, sys
path = sys.argv[sys.argv.index("--output") + 1]
with open(path, "w") as file:
    json.dump({"quick": "--quick" in sys.argv, "seconds": [1.5, 2.5]}, file)
print("## Fake\\n\\n| size | ms |\\n|---|---|\\n| 8 | 1.5 |")
"""
BAD = "import sys; sys.exit('boom: the fake benchmark failed')"
HEAD = "# Benchmarks\n\nHand-written text.\n\n"


@pytest.fixture(scope="module")
def run_all():
    return load_benchmark("run_all")


def _plot(payload, png):
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(b"not really a png: " + json.dumps(payload).encode())


def _broken_plot(payload, png):
    raise RuntimeError("the plot broke")


def _setup(run_all, tmp_path):
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text(HEAD + run_all._report.PAGE_MARKER + "\nstale results\n")
    layout = run_all.Layout(tmp_path / "results", tmp_path / "docs" / "plots", page)
    benchmarks = [
        run_all.Benchmark("good", tmp_path / "good.py", plot=_plot),
        run_all.Benchmark("bad", tmp_path / "bad.py"),
        run_all.Benchmark("later", tmp_path / "later.py", optional=True),
        run_all.Benchmark("unplottable", tmp_path / "good.py", plot=_broken_plot),
    ]
    return benchmarks, layout


def test_runner_reports_failures_and_writes_summaries(run_all, tmp_path):
    benchmarks, layout = _setup(run_all, tmp_path)
    code = run_all.main(["--quick"], benchmarks, layout)
    assert code == 1
    quick = tmp_path / "results" / "quick"
    assert json.loads((quick / "good.json").read_text())["quick"] is True
    summary = json.loads((quick / "summary.json").read_text())
    statuses = {name: o["status"] for name, o in summary["benchmarks"].items()}
    assert statuses == {
        "good": "ok",
        "bad": "failed",
        "later": "skipped",
        "unplottable": "failed",
    }
    assert summary["benchmarks"]["bad"]["returncode"] == 1
    assert summary["benchmarks"]["good"]["wall_s"] > 0
    assert "jax" in summary["machine"]["versions"]
    assert (tmp_path / "docs" / "plots" / "quick" / "good.png").exists()
    markdown = (quick / "summary.md").read_text()
    assert markdown.startswith("# Benchmark results (quick)")
    assert summary["machine"]["cpu_model"] in markdown
    assert "| good | ok |" in markdown and "| later | skipped | - |" in markdown
    assert "boom: the fake benchmark failed" in markdown
    assert "the plot broke" in markdown
    # The benchmark's own heading is moved below the runner's ("## good").
    assert "## good" in markdown and "### Fake" in markdown
    assert "| 8 | 1.5 |" in markdown
    assert "../../docs/plots/quick/good.png" in markdown


def test_runner_rewrites_only_the_generated_part_of_the_page(run_all, tmp_path):
    benchmarks, layout = _setup(run_all, tmp_path)
    for _ in range(2):  # a second run replaces the first run's results
        assert run_all.main(["--quick", "--only", "good"], benchmarks, layout) == 0
    page = layout.page.read_text()
    assert page.startswith(HEAD + run_all._report.PAGE_MARKER)
    assert "stale results" not in page
    assert page.count("## Quick run") == 1 and "## Full size" in page
    assert "#### Fake" in page and "](plots/quick/good.png)" in page
    summary = json.loads((tmp_path / "results/quick/summary.json").read_text())
    assert list(summary["benchmarks"]) == ["good"]


def test_unknown_benchmark_name_is_an_error(run_all, tmp_path, capsys):
    benchmarks, layout = _setup(run_all, tmp_path)
    with pytest.raises(SystemExit):
        run_all.main(["--only", "good,nope"], benchmarks, layout)
    assert "unknown benchmark(s) ['nope']" in capsys.readouterr().err


def test_the_suite_lists_every_benchmark(run_all):
    names = [b.name for b in run_all.BENCHMARKS]
    assert names == [
        "hypergradients",
        "hypergradient_memory",
        "fourdvar_cost",
        "heat2d_scaling",
        "lorenz96",
        "preconditioners",
        "compilation",
        "fit_overhead",
        "peers",
        "unrolled_peers",
        "sharding",
    ]
    for bench in run_all.BENCHMARKS:
        assert bench.optional or bench.script.exists(), bench.name
    page = (ROOT / "docs" / "benchmarks.md").read_text()
    assert run_all._report.PAGE_MARKER in page
