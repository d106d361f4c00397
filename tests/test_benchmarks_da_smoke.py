"""Smoke tests of the data-assimilation benchmarks on tiny configurations.

They check that the scripts run end to end and write finite numbers, not the
timings themselves (CI machines are too noisy for that); the gradient check and
the convergence of the inner solve are real assertions.
"""

import json
import math

import pytest

from scripts import load_benchmark


def _finite_numbers(tree):
    # Every number in the JSON (NaN/inf would have been written as null).
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _finite_numbers(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _finite_numbers(value)
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield tree


# The benchmarks' scripts at tiny sizes (~30 s in all): run by CI's slow part,
# with the other benchmark smoke tests that need more than a few seconds.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fourdvar_cost():
    return load_benchmark("fourdvar_cost")


@pytest.fixture(scope="module")
def heat2d_scaling():
    return load_benchmark("heat2d_scaling")


def test_fourdvar_cost_tiny(fourdvar_cost, tmp_path):
    output = tmp_path / "fourdvar_cost.json"
    fourdvar_cost.main(
        ["--quick", "--sizes", "16,8,8", "--skip-traced", "--output", str(output)]
    )
    data = json.loads(output.read_text())
    assert {"date", "versions", "platform"} <= set(data["machine"])
    assert len(data["cases"]) == 3
    for case in data["cases"]:
        for timing in case["timings"].values():
            assert timing["median_s"] > 0 and math.isfinite(timing["ratio_to_forward"])
        # value_and_grad against a central difference (step 1e-5: O(h^2) error
        # ~1e-10 relative, far below the 1e-6 allowed).
        assert case["gradient_check_rel_error"] < 1e-6
    assert "value_and_grad, traced times" not in data["cases"][2]["timings"]
    assert all(math.isfinite(v) for v in _finite_numbers(data))


def test_heat2d_scaling_tiny(heat2d_scaling, tmp_path):
    output = tmp_path / "heat2d_scaling.json"
    heat2d_scaling.main(
        ["--quick", "--sides", "8,16", "--lattice", "8", "--output", str(output)]
    )
    data = json.loads(output.read_text())
    assert [r["side"] for r in data["sizes"]] == [8, 16]
    for size in data["sizes"]:
        assert size["converged"] and size["relative_grad_norm"] <= 1e-6
        # 27 observations (noise 0.05, 5 times) bring the analysis closer to
        # the truth than the background (error std 0.3); at the 32x32 lattice
        # of the real run the error drops about 8-fold.
        assert size["rmse_analysis"] < 0.8 * size["rmse_background"]
    assert set(data["exponents"]["fixed"]) >= {"solve_median_s", "num_steps"}
    assert all(math.isfinite(v) for v in _finite_numbers(data))


def test_lorenz96_cycled_rows_tiny(monkeypatch):
    # The cycled-B rows of the Lorenz-96 benchmark on a short twin: the settings
    # chosen are the best training ones, and the table shows them in their column.
    lorenz96 = load_benchmark("lorenz96")
    monkeypatch.setattr(lorenz96, "BURN_IN", 1.0)
    monkeypatch.setattr(lorenz96, "CYCLED_SETTINGS", [(1.0, 1e-3), (1.05, 1e-2)])
    train = lorenz96.make_twin(20, 4, seed=1)
    settings, history, wall = lorenz96.tune_cycled(train, 2, 0.1 * train.climatology)
    scores = {tuple(s[:2]): s[2] for s in history["scores"]}
    assert list(settings) == history["chosen"] == list(min(scores, key=scores.get))
    assert wall > 0 and all(math.isfinite(v) for v in scores.values())
    row = {"method": "4DVar SDA L=2, cycled B", "dapper_documented": 0.39}
    row["cycled"] = {
        "rmse.a": scores[settings],
        "converged": 1.0,
        "mean inner steps": 9.0,
        "wall_s": 1.0,
    }
    line = lorenz96.markdown_table([row], with_dapper=False).splitlines()[-1]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:5] == [
        "4DVar SDA L=2, cycled B",
        "0.39",
        "",
        "",
        f"{scores[settings]:.3f}",
    ]


# About 70 s on two cores, mostly compiling seven backward solves: slow-marked
# (CI runs the slow tests) to keep the default suite short.
def test_preconditioners_tiny(tmp_path):
    preconditioners = load_benchmark("preconditioners")
    output = tmp_path / "preconditioners.json"
    preconditioners.main(
        ["--quick", "--sizes", "16,8,6", "--rounds", "1", "--output", str(output)]
    )
    data = json.loads(output.read_text())
    assert [c["state_size"] for c in data["cases"]] == [16, 8, 36]
    for case in data["cases"]:
        assert case["inner_converged"]
        rows = {r["preconditioner"]: r for r in case["rows"]}
        assert not any(r["failed"] for r in rows.values())
        assert not rows["none"]["preconditioned"]
        assert rows["Background (B)"]["preconditioned"]
        # The race never takes more iterations than plain CG.
        assert rows["LBFGS (raced)"]["num_steps"] <= rows["none"]["num_steps"]
        # With the exact inverse the first step solves (a second may run while
        # lineax's step test catches up).
        assert rows["Operator: exact H⁻¹ (reference)"]["num_steps"] <= 2
        # CG to 1e-6 relative on Hessians of condition <= ~1e3 at these sizes.
        assert max(r["rel_diff"] for r in rows.values()) < 1e-3
    assert all(math.isfinite(v) for v in _finite_numbers(data))
