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
