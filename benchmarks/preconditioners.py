"""Preconditioners of `Implicit`'s backward solve on three 4DVar problems.

Run ``python benchmarks/preconditioners.py`` (Heat 1D n = 64, Lorenz-96 n = 40,
Heat 2D 32x32; a few minutes on 2 cores) or with ``--quick`` (smaller problems;
about a minute). A Markdown table goes to stdout and everything to
``benchmarks/results/preconditioners.json``.

**Set-up.** Strong-constraint 4DVar in *direct control* (the control is the
initial state, the background term ``0.5 |x - xb|²_B⁻¹``), with a correlated
`DiffusionBackground`, so that ``B⁻¹`` makes the Hessian ill-conditioned:

- *Heat 1D* (issue 16's case): n = 64 periodic points, every 4th observed at 5
  times, noise 0.05, ``B``: std 0.3, length scale 8 points.
- *Lorenz-96*: n = 40, every 2nd variable observed at 5 times 0.1 apart, noise
  1, ``B``: std 1, length scale 2 (on the ring of variables).
- *Heat 2D*: 32x32 periodic grid, 40% of points observed (random mask) at 5
  times, noise 0.05, ``B``: std 0.3, length scale 4 points.

The inner problem is solved once with `LBFGS` (``rtol=1e-9``). For each
preconditioner the backward solve alone, `Implicit.backward` (``lx.CG`` with the
default ``rtol = atol = 1e-6``) for the cotangent of the analysis error, is
compiled ahead of time and timed in interleaved rounds (median; see
`_common.interleaved_timings`). Rows: no preconditioner; `LBFGSPreconditioner()`
(plain and memory-preconditioned CG raced in lockstep, the first to converge
kept: never more iterations than plain CG, two Hessian-vector products per
iteration); the L-BFGS memory unchecked (``checked=False``, what
`LBFGSPreconditioner` did before issue 16);
`BackgroundPreconditioner()` (``B``), unchecked and raced; and, on the small
problems, an `OperatorPreconditioner` holding the exact inverse Hessian (dense, computed
beforehand: a reference, not a method). ``rel. diff`` is the hypergradient's
relative difference from the unpreconditioned one.
"""

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import jax


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.bilevel import (  # noqa: E402
    LBFGSPreconditioner,
    NoPreconditioner,
    OperatorPreconditioner,
)
from assimilax.costs import BackgroundPreconditioner, StrongConstraint4DVar  # noqa: E402
from assimilax.dynamics import Heat1D, Heat2D, Lorenz96  # noqa: E402
from assimilax.observations import (  # noqa: E402
    Mask,
    Observations,
    ScalarNoise,
    Stations,
)
from assimilax.priors import DiffusionBackground  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402


RESULTS_PATH = Path(__file__).resolve().parent / "results" / "preconditioners.json"


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and options of one benchmark run."""

    heat1d_n: int = 64
    lorenz96_n: int = 40
    heat2d_side: int = 32
    inner_rtol: float = 1e-9
    cg_rtol: float = 1e-6
    # The exact inverse Hessian (dense) only up to this state size.
    exact_up_to: int = 256
    rounds: int = 9


FULL = Config()
QUICK = Config(heat1d_n=32, lorenz96_n=20, heat2d_side=12, rounds=3)


def _observations(model, x0, times, operator, std, key):
    truth = model.integrate(x0, times)
    observed = jax.vmap(operator)(truth)
    values = observed + std * jax.random.normal(key, observed.shape)
    return Observations(values, None, times, operator, ScalarNoise(std))


def heat1d(n: int):
    grid = np.arange(n) / n
    truth = jnp.asarray(
        np.sin(2 * np.pi * grid)
        + 0.5 * np.cos(6 * np.pi * grid)
        + 0.3 * np.sin(10 * np.pi * grid)
    )
    model = Heat1D(n=n, kappa=0.5 / (4 * np.pi**2))
    times = jnp.asarray(0.05 * np.arange(5))
    obs = _observations(
        model, truth, times, Stations.every(4, n), 0.05, jax.random.key(0)
    )
    xb = truth + jnp.asarray(0.3 * np.sin(4 * np.pi * grid + 1.0))
    background = DiffusionBackground(xb, 0.3, 8.0 * n / 64)
    problem = StrongConstraint4DVar(model, obs, background, t0=0.0)
    return f"Heat1D n={n}", problem, truth


def lorenz96(n: int):
    model = Lorenz96(n=n)
    start = 8.0 + 0.1 * jnp.sin(jnp.arange(n, dtype=jnp.float64))
    truth = model.integrate(start, 0.05 * jnp.arange(201.0))[-1]  # on the attractor
    times = jnp.asarray(0.1 * np.arange(5))
    obs = _observations(
        model, truth, times, Stations.every(2, n), 1.0, jax.random.key(2)
    )
    error = jnp.cos(2 * np.pi * jnp.arange(n, dtype=jnp.float64) / n)
    background = DiffusionBackground(truth + error, 1.0, 2.0)
    problem = StrongConstraint4DVar(model, obs, background, t0=0.0)
    return f"Lorenz96 n={n}", problem, truth


def heat2d(side: int):
    x, y = np.meshgrid(np.arange(side) / side, np.arange(side) / side, indexing="ij")
    truth = jnp.asarray(
        np.sin(2 * np.pi * x) * np.cos(4 * np.pi * y) + np.cos(2 * np.pi * y)
    )
    model = Heat2D(shape=(side, side), kappa=0.01)
    mask = Mask(jnp.asarray(np.random.default_rng(0).random((side, side)) < 0.4))
    times = jnp.asarray(0.005 * np.arange(0, 21, 5))
    obs = _observations(model, truth, times, mask, 0.05, jax.random.key(1))
    xb = truth + jnp.asarray(0.3 * np.sin(2 * np.pi * (x + y)))
    background = DiffusionBackground(xb, 0.3, side / 8)
    problem = StrongConstraint4DVar(model, obs, background, t0=0.0)
    return f"Heat2D {side}x{side}", problem, truth


def cost(x, problem):
    return problem.cost(x)


def _exact_inverse(problem, x):
    """The inverse Hessian at ``x`` as a dense, PSD-tagged operator."""
    flat = x.ravel()
    hessian = jax.hessian(lambda v: cost(v.reshape(x.shape), problem))(flat)
    inverse = jnp.linalg.inv(0.5 * (hessian + hessian.T))
    structure = jax.eval_shape(lambda: x)

    def make(y, args):
        del y, args

        def matvec(v):
            return (inverse @ v.ravel()).reshape(structure.shape)

        tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)
        return lx.FunctionLinearOperator(matvec, structure, tags)

    return OperatorPreconditioner(make)


def preconditioners(problem, x, cfg: Config) -> dict[str, Any]:
    rows = {
        "none": NoPreconditioner(),
        "LBFGS (raced)": LBFGSPreconditioner(),
        "LBFGS memory, unchecked": LBFGSPreconditioner(checked=False),
        "Background (B)": BackgroundPreconditioner(),
        "Background, raced": BackgroundPreconditioner(checked=True),
    }
    if x.size <= cfg.exact_up_to:
        rows["Operator: exact H⁻¹ (reference)"] = _exact_inverse(problem, x)
    return rows


def run_case(name, problem, truth, cfg: Config) -> dict[str, Any]:
    """Solve the inner problem once; compile, run and time each backward solve."""
    solver = ax.LBFGS(rtol=cfg.inner_rtol, max_steps=20_000)
    sol = ax.argmin(cost, problem.first_guess(), problem, solver=solver, throw=False)
    x = sol.value
    x_bar = x - truth  # cotangent of 0.5 |x - truth|^2
    linear = lx.CG(rtol=cfg.cg_rtol, atol=cfg.cg_rtol)
    dynamic, static = eqx.partition((problem, x, sol.state, x_bar), eqx.is_array)
    rows, calls, grads = [], {}, {}
    for label, preconditioner in preconditioners(problem, x, cfg).items():
        strategy = ax.Implicit(linear_solver=linear, preconditioner=preconditioner)

        def backward(dynamic, strategy=strategy):
            problem, x, state, x_bar = eqx.combine(dynamic, static)
            grads, _, info = strategy.backward(solver, (cost, problem), x, state, x_bar)
            background = grads[1].background
            return jnp.stack([background.std, background.length_scale]), info

        compiled = _common.compile_ahead(backward, dynamic)
        grad, info = compiled.call(dynamic)
        grads[label] = np.asarray(grad)
        calls[label] = (compiled.call, (dynamic,))
        rows.append(
            {
                "preconditioner": label,
                "num_steps": int(info.num_steps),
                "preconditioned": bool(info.preconditioned),
                "residual": float(info.residual),
                "failed": bool(info.failed),
                "compile_s": compiled.compile_s,
            }
        )
    timings = _common.interleaved_timings(calls, rounds=cfg.rounds)
    reference = grads["none"]
    for row in rows:
        label = row["preconditioner"]
        row["time_s"] = timings[label]["median_s"]
        diff = np.linalg.norm(grads[label] - reference) / np.linalg.norm(reference)
        row["rel_diff"] = float(diff)
    return {
        "problem": name,
        "state_size": int(x.size),
        "inner_steps": int(sol.stats.num_steps),
        "inner_converged": bool(sol.stats.converged),
        "rows": rows,
    }


def report(payload: dict[str, Any]) -> str:
    """The Markdown table of a results payload."""
    table = []
    for case in payload["cases"]:
        none = next(r for r in case["rows"] if r["preconditioner"] == "none")
        for row in case["rows"]:
            table.append(
                [
                    f"{case['problem']} ({case['inner_steps']} LBFGS steps)",
                    row["preconditioner"],
                    row["num_steps"],
                    "yes" if row["preconditioned"] else "no",
                    _common.fmt_ms(row["time_s"]),
                    f"{row['time_s'] / none['time_s']:.2f}",
                    _common.fmt_sci(row["rel_diff"]),
                    f"{row['compile_s']:.1f}",
                ]
            )
    headers = [
        "problem",
        "preconditioner",
        "CG iterations",
        "applied",
        "backward ms",
        "time / none",
        "rel. diff",
        "compile s",
    ]
    return "\n### Backward solve per preconditioner\n\n" + _common.markdown_table(
        headers, table
    )


def run(cfg: Config, out: Path | None = RESULTS_PATH, *, verbose: bool = True) -> dict:
    """Measure; print the table (if `verbose`) and write JSON to `out`."""
    payload = _common.start_payload(
        "preconditioners",
        "Preconditioners of the backward solve",
        cfg,
        {},
        verbose=verbose,
    )
    cases = (
        heat1d(cfg.heat1d_n),
        lorenz96(cfg.lorenz96_n),
        heat2d(cfg.heat2d_side),
    )
    payload["cases"] = [run_case(*case, cfg) for case in cases]
    if verbose:
        print(report(payload))
    return _common.finish_payload(payload, out, verbose=verbose)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smaller problems, about a minute"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    parser.add_argument(
        "--sizes", help="Heat1D n, Lorenz96 n, Heat2D side (comma-separated)"
    )
    parser.add_argument("--rounds", type=int, help="timing rounds")
    options = parser.parse_args(argv)
    cfg = QUICK if options.quick else FULL
    if options.sizes:
        n1, n96, side = (int(v) for v in options.sizes.split(","))
        cfg = dataclasses.replace(cfg, heat1d_n=n1, lorenz96_n=n96, heat2d_side=side)
    if options.rounds:
        cfg = dataclasses.replace(cfg, rounds=options.rounds)
    run(cfg, options.output)


if __name__ == "__main__":
    main()
