"""Smoke tests of `benchmarks/hypergradients.py` and
`benchmarks/hypergradient_memory.py` on tiny configurations (seconds).

They check that each benchmark runs end to end under the test suite's strict
settings and writes a JSON file whose numbers are finite and plausible; the real
measurements come from running the scripts themselves.
"""

import json
import math

import numpy as np
import pytest

from scripts import load_benchmark


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_machine(payload):
    machine = payload["machine"]
    assert machine["cpu_count"] >= 1 and machine["versions"]["jax"]
    assert machine["date"] and machine["platform"]


def test_hypergradient_benchmark_tiny(tmp_path):
    bench = load_benchmark("hypergradients")
    implicit, reference = (
        "GD + Implicit(CG)",
        "optx.GradientDescent + ImplicitAdjoint(CG)",
    )
    cfg = bench.Config(
        n_1d=32,
        lam_1d=0.5,
        rounds=1,
        truncation=(),
        problems=("1d",),
        methods=("GD + Unrolled", implicit, reference),
        sweep_steps=(5, 60),
        sweep_k=(1, 10),
        sweep_rtol=(1e-1, 1e-10),
    )
    out = tmp_path / "hypergradients.json"
    bench.run(cfg, out, verbose=False)
    payload = json.loads(out.read_text())
    _check_machine(payload)

    (problem,) = payload["problems"]
    assert _finite(problem["exact_hypergrad"]) and problem["exact_hypergrad"] != 0
    rows = {row["name"]: row for row in problem["rows"]}
    assert set(rows) == set(cfg.methods)
    numeric = ("hypergrad", "rel_error", "time_s", "forward_time_s", "compile_s")
    for row in rows.values():
        assert all(_finite(row[key]) for key in numeric), row
        assert isinstance(row["temp_bytes"], int) and row["temp_bytes"] >= 0
        assert row["inner_steps"] >= 1
        # Inner solves stop at a 1e-10 relative gradient (float64), which bounds the
        # hypergradient error near 1e-9 here; 1e-6 leaves room yet catches a wrong
        # closed form or a broken strategy (errors of order one).
        assert row["rel_error"] < 1e-6, row
    assert isinstance(problem["target"]["holds"], bool)
    # The error sweeps, in the layout of `assimilax.plotting.hypergradient_error`:
    # more steps, a larger k and a tighter CG tolerance each cut the error.
    sweeps = load_benchmark("_error_sweeps").from_payload(payload["error_sweeps"])
    assert sweeps["error_steps"].dims == ("strategy", "steps")
    assert list(sweeps["k"].values) == [1, 10]
    for name in ("error_steps", "error_k", "error_rtol"):
        first, last = sweeps[name].isel({sweeps[name].dims[-1]: [0, -1]}).T.values
        assert np.all(last < first), (name, sweeps[name].values)


def test_hypergradient_memory_benchmark_tiny(tmp_path):
    bench = load_benchmark("hypergradient_memory")
    cfg = bench.Config(n=16, lam=0.5, steps=(5, 40), rounds=1)
    out = tmp_path / "hypergradient_memory.json"
    bench.run(cfg, out, verbose=False)
    payload = json.loads(out.read_text())
    _check_machine(payload)

    rows = payload["rows"]
    assert all(_finite(r["time_s"]) and _finite(r["hypergrad"]) for r in rows)
    temp = {(r["strategy"], r["steps"]): r["temp_bytes"] for r in rows}
    # Implicit runs a while loop without storing iterates: its scratch memory does
    # not depend on the step count; Unrolled stores every step and must grow.
    assert temp[("Implicit(CG)", 40)] <= 1.1 * temp[("Implicit(CG)", 5)]
    assert temp[("Unrolled", 40)] > temp[("Unrolled", 5)]
    assert payload["target"]["holds"] is True


@pytest.mark.slow  # ~15 s: four value-and-gradient programs per problem
def test_unrolled_peers_benchmark_tiny(tmp_path):
    bench = load_benchmark("unrolled_peers")
    peers = load_benchmark("peers")
    cfg = bench.Config(
        peers=peers.Config(
            heat_n=16, heat_steps=10, logistic_samples=40, logistic_features=5
        ),
        heat_steps=12,
        logistic_steps=12,
        rounds=1,
        budget_s=0.5,
    )
    out = tmp_path / "unrolled_peers.json"
    bench.run(cfg, out, verbose=False)
    payload = json.loads(out.read_text())
    _check_machine(payload)
    assert len(payload["problems"]) == 2
    for problem in payload["problems"]:
        assert len(problem["rows"]) == 4
        for row in problem["rows"]:
            assert _finite(row["run_s"]) and _finite(row["compile_s"]), row
            assert row["temp_bytes"] is None or row["temp_bytes"] > 0
            # The same descent steps in both libraries: rounding apart.
            assert row["grad_rel_diff"] < 1e-10, row
        assert set(problem["ratios"]) == {"store every step", "checkpointed"}


@pytest.mark.slow  # ~20 s: it compiles three solvers' forward and backward programs
def test_peers_benchmark_tiny(tmp_path):
    bench = load_benchmark("peers")
    cfg = bench.Config(
        tikhonov_1d=32,
        rounds=1,
        budget_s=0.5,
        problems=("tikhonov_1d",),
        compare_zoom=False,
    )
    out = tmp_path / "peers.json"
    bench.run(cfg, out, verbose=False)
    payload = json.loads(out.read_text())
    _check_machine(payload)
    (problem,) = payload["problems"]
    rows = {row["name"]: row for row in problem["rows"]}
    assert {bench.OURS, bench.OPTX} <= set(rows)
    for row in rows.values():
        numeric = ("forward_s", "value_and_grad_s", "per_step_s", "forward_compile_s")
        assert all(_finite(row[key]) for key in numeric), row
        assert row["inner_steps"] >= 1
        # Every library stops at |grad| <= 1e-8 |grad(x0)| and solves the backward
        # system by CG to 1e-10: the hypergradient is within ~1e-7 of the closed
        # form; 1e-5 catches a wrong stopping rule or a broken adjoint.
        assert row["inner_rel_grad"] <= 1e-8, row
        assert row["hypergrad_rel_error"] < 1e-5, row
    assert isinstance(problem["ratios"]["holds"]["value_and_grad"], bool)
