"""`value_and_grad` of the strong-constraint 4DVar cost against one forward run.

Run ``python benchmarks/fourdvar_cost.py`` (about a minute) or with ``--quick``
(fewer rounds, a few seconds). A Markdown table goes to stdout and everything to
``benchmarks/results/fourdvar_cost.json``.

For each model the three programs below are compiled ahead of time (float64, the
problem passed as an *argument*, as `assimilax.argmin` passes it) and timed in
interleaved rounds (median; see `_common.interleaved_timings`):

- *forward*: ``dynamics.integrate(x0, problem.times)``, the window's trajectory;
- *cost*: ``problem.cost(x0)``: the same integration plus the background and
  observation terms;
- *value_and_grad*: ``jax.value_and_grad(problem.cost)(x0)``, the cost and its
  adjoint, what every inner iteration of 4DVar evaluates.

Target (issue 3, acceptance 3): ``value_and_grad / forward <= 3``. The adjoint of
a linear or Runge-Kutta step costs about as much as the step itself, so ~2-3x is
what reverse mode can give. For Lorenz-96 a further row times the cost with the
window's times *traced* (passed as an array argument): `FixedStepRK4` then falls
back to diffrax's checkpointed while loop, whose adjoint recomputes the forward
pass; that is what a problem storing its grid as an array field cost before the
grid became static.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

import jax


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from assimilax.costs import StrongConstraint4DVar  # noqa: E402
from assimilax.dynamics import Heat1D, Heat2D, Lorenz96  # noqa: E402
from assimilax.observations import (  # noqa: E402
    Identity,
    Mask,
    Observations,
    ScalarNoise,
    Stations,
)
from assimilax.priors import DiagonalBackground, DiffusionBackground  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    compile_ahead,
    fmt_ms,
    interleaved_timings,
    machine_info,
    markdown_table,
    write_json,
)


RESULTS_PATH = Path(__file__).resolve().parent / "results" / "fourdvar_cost.json"
TARGET_RATIO = 3.0


def _observations(model, x0, times, operator, observe_every, std, key):
    """Noisy observations of the truth every `observe_every` model times."""
    times = np.asarray(times)[::observe_every]
    truth = model.integrate(x0, jnp.asarray(times))
    observed = jax.vmap(operator)(truth)
    values = observed + std * jax.random.normal(key, observed.shape)
    return Observations(values, None, jnp.asarray(times), operator, ScalarNoise(std))


def heat1d_problem(n: int = 128, steps: int = 20) -> tuple[str, Any, Any]:
    """Heat 1D: a quarter of the points observed every 5 steps (acceptance 2)."""
    grid = np.arange(n) / n
    x0 = jnp.asarray(np.sin(2 * np.pi * grid) + 0.5 * np.cos(6 * np.pi * grid))
    model = Heat1D(n=n, kappa=0.5 / (4 * np.pi**2))
    times = 0.01 * np.arange(steps + 1)
    obs = _observations(
        model, x0, times, Stations.every(4, n), 5, 0.05, jax.random.key(0)
    )
    background = DiffusionBackground(x0 + 0.3 * jnp.sin(4 * np.pi * grid), 0.3, 8.0)
    problem = StrongConstraint4DVar(model, obs, background, t0=0.0)
    return f"Heat1D n={n}, {steps} steps", problem, x0


def heat2d_problem(side: int = 64, steps: int = 20) -> tuple[str, Any, Any]:
    """Heat 2D: a gappy mask (40% observed) every 5 steps."""
    x, y = np.meshgrid(np.arange(side) / side, np.arange(side) / side, indexing="ij")
    x0 = jnp.asarray(
        np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y) + np.cos(2 * np.pi * y)
    )
    model = Heat2D(shape=(side, side), kappa=0.01)
    rng = np.random.default_rng(0)
    operator = Mask(jnp.asarray(rng.random((side, side)) < 0.4))
    times = 0.005 * np.arange(steps + 1)
    obs = _observations(model, x0, times, operator, 5, 0.05, jax.random.key(1))
    background = DiffusionBackground(x0 + 0.2, 0.3, side / 8)
    problem = StrongConstraint4DVar(model, obs, background, t0=0.0)
    return f"Heat2D {side}x{side}, {steps} steps", problem, x0


def lorenz96_problem(n: int = 40, steps: int = 20) -> tuple[str, Any, Any]:
    """Lorenz-96 (Sakov & Oke 2008): all variables observed every 4 steps of 0.05."""
    model = Lorenz96(n=n)
    spin_up = model.integrate(
        8.0 + 0.1 * jnp.sin(jnp.arange(n, dtype=jnp.float64)), 0.05 * jnp.arange(201.0)
    )
    x0 = spin_up[-1]  # near the attractor
    times = 0.05 * np.arange(steps + 1)
    obs = _observations(model, x0, times, Identity(), 4, 1.0, jax.random.key(2))
    background = DiagonalBackground(x0 + 0.5, 1.0)
    problem = StrongConstraint4DVar(model, obs, background, t0=0.0)
    return f"Lorenz96 n={n}, {steps} steps", problem, x0


def _programs(problem, x0, traced_times: bool) -> dict[str, Any]:
    """Compiled programs keyed by name, each with its arguments."""
    params, static = eqx.partition(problem, eqx.is_array)

    def forward(x, params):
        p = eqx.combine(params, static)
        return p.dynamics.integrate(x, p.times)

    def cost(x, params):
        return eqx.combine(params, static).cost(x)

    programs = {
        "forward": (forward, (x0, params)),
        "cost": (cost, (x0, params)),
        "value_and_grad": (jax.value_and_grad(cost), (x0, params)),
    }
    if traced_times:

        def traced_cost(x, params, times):
            # The pre-fix form: the grid arrives as a traced array.
            p = eqx.combine(params, static)
            states = p.dynamics.integrate(x, times)[p.observation_index]
            residual = p.control.background_residual(x, p.background)
            return 0.5 * jnp.sum(residual**2) + p.observations.misfit(states)

        args = (x0, params, problem.times)
        programs["value_and_grad, traced times"] = (
            jax.value_and_grad(traced_cost),
            args,
        )
    return programs


def run_case(name, problem, x0, *, rounds, traced_times=False) -> dict[str, Any]:
    compiled, results = {}, {}
    for label, (fn, args) in _programs(problem, x0, traced_times).items():
        compiled[label] = (compile_ahead(fn, *args), args)
    timings = interleaved_timings(
        {label: (c.call, args) for label, (c, args) in compiled.items()},
        rounds=rounds,
    )
    forward = timings["forward"]["median_s"]
    for label, timing in timings.items():
        results[label] = {
            **timing,
            "ratio_to_forward": timing["median_s"] / forward,
            "compile_s": compiled[label][0].compile_s,
            "temp_bytes": compiled[label][0].temp_bytes,
        }
    # The gradient agrees with a central difference along one direction (sanity:
    # a benchmark of a wrong gradient would be meaningless).
    cost = compiled["cost"][0].call
    vg = compiled["value_and_grad"][0].call
    params = compiled["cost"][1][1]
    direction = jnp.cos(jnp.arange(x0.size, dtype=x0.dtype)).reshape(x0.shape)
    h = 1e-5
    fd = (cost(x0 + h * direction, params) - cost(x0 - h * direction, params)) / (2 * h)
    directional = jnp.vdot(vg(x0, params)[1], direction)
    return {
        "case": name,
        "state_size": int(x0.size),
        "window_times": len(problem.time_grid),
        "timings": results,
        "gradient_check_rel_error": float(abs(directional - fd) / abs(fd)),
    }


def report(payload: dict[str, Any]) -> str:
    """The Markdown table of a results payload and the worst ratio vs the target."""
    rows = [
        [
            case["case"],
            label,
            fmt_ms(t["median_s"]),
            f"{t['ratio_to_forward']:.2f}",
            f"{t['compile_s']:.2f}",
        ]
        for case in payload["cases"]
        for label, t in case["timings"].items()
    ]
    headers = ["case", "program", "median ms", "ratio to forward", "compile s"]
    return (
        markdown_table(headers, rows)
        + f"\n\nworst value_and_grad / forward: {payload['worst_ratio']:.2f} "
        + f"(target <= {payload['target_ratio']})"
    )


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds (seconds)")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    parser.add_argument(
        "--sizes",
        default="128,64,40",
        help="Heat1D n, Heat2D side, Lorenz96 n (comma-separated)",
    )
    parser.add_argument(
        "--skip-traced",
        action="store_true",
        help="leave out the Lorenz-96 traced-times row (its compile is slow)",
    )
    args = parser.parse_args(argv)
    n1, side, n96 = (int(s) for s in args.sizes.split(","))
    rounds = 5 if args.quick else 25
    cases = [
        (heat1d_problem(n1), False),
        (heat2d_problem(side), False),
        (lorenz96_problem(n96), not args.skip_traced),
    ]
    results = []
    for (name, problem, x0), traced in cases:
        results.append(run_case(name, problem, x0, rounds=rounds, traced_times=traced))
    worst = max(c["timings"]["value_and_grad"]["ratio_to_forward"] for c in results)
    payload = {
        "machine": machine_info(),
        "quick": args.quick,
        "rounds": rounds,
        "target_ratio": TARGET_RATIO,
        "worst_ratio": worst,
        "meets_target": worst <= TARGET_RATIO,
        "cases": results,
    }
    print(report(payload))
    write_json(args.output, payload)
    return payload


if __name__ == "__main__":
    main()
