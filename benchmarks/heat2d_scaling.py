"""One strong-constraint 4DVar inner solve on the 2D heat equation, and its scaling.

Run ``python benchmarks/heat2d_scaling.py`` (grids 64², 128², 256²; about a
minute) or with ``--quick`` (32², 64², 128²; seconds). A Markdown table goes to
stdout and everything to ``benchmarks/results/heat2d_scaling.json``.

**Set-up**, the same physical problem at every resolution: periodic unit square,
``kappa = 0.01``, a 20-step window of 0.005, observations every 5 steps (5 times,
``t0`` included) through a gappy `Mask`, noise ``sigma = 0.05``. Two observing
networks: ``fixed`` (the default) observes the same physical points at every
resolution (40% of the nodes of a 32x32 lattice, at the grid point on each: the
model is refined, the network is not); ``dense`` observes 40% of the points of
each grid, so finer grids carry more observations. The background is the truth
plus a draw from its own ``B`` (`DiffusionBackground`, std 0.3, correlation
length 1/8 of the domain, so ``side / 8`` grid points), and the solve runs in
the control variable ``x = xb + B^{1/2} v`` (`ControlVariable`: Hessian
``I + ...``, well conditioned) with `LBFGS(rtol=1e-6)`: ``|grad| <= 1e-6 |grad(x0)|``.

**Measured:** the wall time of one solve (compiled; median of repeats), its
LBFGS step count, the time of one `value_and_grad` of the cost (interleaved
rounds), and the analysis and background RMSE against the truth. Exponents are
least-squares slopes of ``log time`` against ``log(grid points)``.

Target (issue 3, acceptance 4): time linear in the number of grid points. The
heat flow and ``B^{1/2}`` are FFTs, O(N log N) per evaluation. With the
``fixed`` network the conditioning of the problem does not change with the grid,
nor (nearly) does the step count. With the ``dense`` one, finer grids hold more
observations per correlation area, the observation term of the Hessian grows
(its largest eigenvalue roughly like N) and LBFGS needs more steps (about
``sqrt`` of the condition number): the table reports the per-evaluation exponent
and the step counts separately for that reason.
"""

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jax


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.costs import ControlVariable, StrongConstraint4DVar  # noqa: E402
from assimilax.dynamics import Heat2D  # noqa: E402
from assimilax.observations import Mask, Observations, ScalarNoise  # noqa: E402
from assimilax.priors import DiffusionBackground  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    compile_ahead,
    fmt_ms,
    interleaved_timings,
    machine_info,
    markdown_table,
    write_json,
)


RESULTS_PATH = Path(__file__).resolve().parent / "results" / "heat2d_scaling.json"
KAPPA, DT, STEPS, OBSERVE_EVERY = 0.01, 0.005, 20, 5
NOISE, B_STD, FRACTION_OBSERVED = 0.05, 0.3, 0.4
RTOL = 1e-6
LATTICE = 32  # the fixed observing network lives on this lattice (sides divide by it)


def _truth0(side: int) -> np.ndarray:
    # A band-limited field, sampled from the same function at every resolution.
    x, y = np.meshgrid(np.arange(side) / side, np.arange(side) / side, indexing="ij")
    return (
        np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y)
        + 0.5 * np.cos(2 * np.pi * (x + 2 * y))
        + 0.3 * np.sin(6 * np.pi * x)
    )


def _mask(
    side: int, network: str, rng: np.random.Generator, lattice: int = LATTICE
) -> np.ndarray:
    if network == "dense":
        return rng.random((side, side)) < FRACTION_OBSERVED
    if side % lattice:
        raise ValueError(f"--sides must be multiples of {lattice} with --network fixed")
    stations = rng.random((lattice, lattice)) < FRACTION_OBSERVED
    mask = np.zeros((side, side), bool)
    stride = side // lattice
    mask[::stride, ::stride] = stations  # the grid point at each station
    return mask


def make_problem(
    side: int, network: str = "fixed", seed: int = 0, lattice: int = LATTICE
):
    """The window's problem on a ``side x side`` grid, and the true initial state."""
    key_b, key_obs = jax.random.split(jax.random.key(seed))
    truth0 = jnp.asarray(_truth0(side))
    model = Heat2D(shape=(side, side), kappa=KAPPA)
    # The background error is a draw from B itself: xb = truth + S w, w ~ N(0, I).
    perturbation = DiffusionBackground(jnp.zeros_like(truth0), B_STD, side / 8)
    xb = truth0 + perturbation.to_state(jax.random.normal(key_b, truth0.shape))
    background = DiffusionBackground(xb, B_STD, side / 8)
    rng = np.random.default_rng(seed)
    operator = Mask(jnp.asarray(_mask(side, network, rng, lattice)))
    obs_times = DT * np.arange(0, STEPS + 1, OBSERVE_EVERY)
    truth = model.integrate(truth0, jnp.asarray(obs_times))
    values = truth + NOISE * jax.random.normal(key_obs, truth.shape)
    obs = Observations(
        values, None, jnp.asarray(obs_times), operator, ScalarNoise(NOISE)
    )
    problem = StrongConstraint4DVar(
        model, obs, background, t0=0.0, control=ControlVariable()
    )
    return problem, truth0


def _cost(control, problem):
    return problem.cost(control)


def _solve(problem):
    return ax.argmin(
        _cost,
        problem.first_guess(),
        problem,
        solver=ax.LBFGS(rtol=RTOL, max_steps=2000),
    )


def _rmse(a, b) -> float:
    return float(jnp.sqrt(jnp.mean((a - b) ** 2)))


def run_size(
    side: int, network: str, *, repeats: int, rounds: int, lattice: int = LATTICE
) -> dict[str, Any]:
    problem, truth0 = make_problem(side, network, lattice=lattice)
    start = time.perf_counter()
    sol = jax.block_until_ready(_solve(problem))  # compiles, then solves
    first_s = time.perf_counter() - start
    solve_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sol = jax.block_until_ready(_solve(problem))
        solve_times.append(time.perf_counter() - start)
    # One evaluation of what LBFGS evaluates per step (plus its line search).
    params, static = eqx.partition(problem, eqx.is_array)

    def value_and_grad(control, params):
        return jax.value_and_grad(_cost)(control, eqx.combine(params, static))

    compiled = compile_ahead(value_and_grad, problem.first_guess(), params)
    timing = interleaved_timings(
        {"value_and_grad": (compiled.call, (problem.first_guess(), params))},
        rounds=rounds,
    )["value_and_grad"]
    stats = sol.stats
    return {
        "network": network,
        "side": side,
        "observed_points": int(problem.observations.operator.mask.sum()),
        "grid_points": side * side,
        "solve_median_s": float(np.median(solve_times)),
        "solve_min_s": float(np.min(solve_times)),
        "solve_first_call_s": first_s,
        "num_steps": int(stats.num_steps),
        "relative_grad_norm": float(stats.grad_norm / stats.initial_grad_norm),
        "converged": bool(stats.converged),
        "value_and_grad_median_s": timing["median_s"],
        "time_per_step_s": float(np.median(solve_times)) / max(int(stats.num_steps), 1),
        "rmse_background": _rmse(problem.background.xb, truth0),
        "rmse_analysis": _rmse(problem.to_state(sol.value), truth0),
    }


def _exponent(points, values) -> float:
    slope, _ = np.polyfit(np.log(points), np.log(values), 1)
    return float(slope)


def _exponents(sizes: list[dict[str, Any]]) -> dict[str, float]:
    points = [r["grid_points"] for r in sizes]
    keys = (
        "solve_median_s",
        "solve_min_s",
        "value_and_grad_median_s",
        "time_per_step_s",
    )
    out = {key: _exponent(points, [r[key] for r in sizes]) for key in keys}
    out["num_steps"] = _exponent(points, [r["num_steps"] for r in sizes])
    return out


def report(payload: dict[str, Any]) -> str:
    """The Markdown table of a results payload, and the fitted exponents."""
    rows = [
        [
            r["network"],
            f"{r['side']}x{r['side']}",
            r["observed_points"],
            fmt_ms(r["solve_median_s"]),
            r["num_steps"],
            f"{r['relative_grad_norm']:.1e}",
            fmt_ms(r["time_per_step_s"]),
            fmt_ms(r["value_and_grad_median_s"]),
            f"{r['rmse_background']:.3f}",
            f"{r['rmse_analysis']:.3f}",
        ]
        for r in payload["sizes"]
    ]
    headers = [
        "network",
        "grid",
        "observed",
        "solve ms",
        "LBFGS steps",
        "rel. grad",
        "ms / step",
        "value_and_grad ms",
        "RMSE bg",
        "RMSE analysis",
    ]
    lines = [markdown_table(headers, rows)]
    for net, exps in payload["exponents"].items():
        if exps is not None:
            lines.append(
                f"{net} network, exponents vs grid points (1 = linear): "
                + ", ".join(f"{k} {v:.2f}" for k, v in exps.items())
            )
    return "\n\n".join(lines)


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller grids")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    parser.add_argument("--sides", default=None, help="comma-separated grid sides")
    parser.add_argument(
        "--network",
        choices=["fixed", "dense", "both"],
        default=None,
        help="observing network (default: fixed with --quick, else both)",
    )
    parser.add_argument(
        "--lattice", type=int, default=LATTICE, help="fixed network's lattice side"
    )
    args = parser.parse_args(argv)
    default = "32,64,128" if args.quick else "64,128,256"
    sides = [int(s) for s in (args.sides or default).split(",")]
    network = args.network or ("fixed" if args.quick else "both")
    networks = ["fixed", "dense"] if network == "both" else [network]
    repeats, rounds = (2, 5) if args.quick else (5, 15)
    results, exponents = [], {}
    for net in networks:
        sizes = [
            run_size(side, net, repeats=repeats, rounds=rounds, lattice=args.lattice)
            for side in sides
        ]
        results += sizes
        exponents[net] = _exponents(sizes) if len(sizes) > 1 else None
    payload = {
        "machine": machine_info(),
        "quick": args.quick,
        "setup": {
            "kappa": KAPPA,
            "dt": DT,
            "window_steps": STEPS,
            "observe_every": OBSERVE_EVERY,
            "noise": NOISE,
            "background_std": B_STD,
            "fraction_observed": FRACTION_OBSERVED,
            "fixed_network_lattice": args.lattice,
            "networks": networks,
            "rtol": RTOL,
            "solver": "LBFGS, ControlVariable",
        },
        "sizes": results,
        "exponents": exponents,
    }
    print(report(payload))
    write_json(args.output, payload)
    return payload


if __name__ == "__main__":
    main()
