"""L-BFGS with implicit hypergradients against Optimistix and JAXopt (issue 15, goal 2).

Run ``python benchmarks/peers.py`` (full sizes, about 8 minutes on 2 cores, most
of it compiling) or with ``--quick`` (heat and Tikhonov 1D at small sizes, no zoom
row; about a minute). Markdown tables go to stdout and
everything to ``benchmarks/results/peers.json`` (``--output PATH``).

**Problems** (float64; ``theta`` is what the outer gradient is taken against):

- *heat 1D 4DVar*: `Heat1D` (n = 256 periodic points, true ``kappa = 0.5``), a
  window of 40 time steps of 0.005 with every 4th point observed every 5th step
  (noise 5% of the signal's std), `DiffusionBackground` (unit std, correlation
  length n/16 points) in `ControlVariable` form; ``theta = log kappa`` (at twice
  the truth); outer loss: mean-square error of the analysed initial state.
- *logistic regression*: 2000 training samples, 500 standard-normal features (10
  informative), mean cross-entropy plus ``0.5 sum exp(theta_j) w_j^2`` (the bias
  unpenalised); ``theta`` (500 values) the per-feature log weight decays;
  outer loss: cross-entropy on 1000 validation samples.
- *Tikhonov 1D and 2D*: the denoising problems of ``_tikhonov.py`` (n = 1024 and
  128x128), ``theta = lambda``.

**Methods**, each the whole ``jax.value_and_grad`` of the outer loss through the
inner solve:

- assimilax `LBFGS` (its default line search) + `Implicit(lx.CG)`;
- assimilax `LBFGS(linesearch=optax.scale_by_zoom_linesearch(20, "one"))` (the
  default before issue 15) + `Implicit(lx.CG)`;
- Optimistix L-BFGS (`optx.AbstractLBFGS` with `optx.LBFGS`'s descent, search and
  history) + `optx.ImplicitAdjoint(lx.CG)`;
- JAXopt ``LBFGS(implicit_diff=True, implicit_diff_solve=solve_cg)`` (its default
  zoom search), when `jaxopt` imports (optional extra ``peers``).

*Equal accuracy.* Every inner solve stops at the same gradient-norm rule,
``|grad| <= rtol |grad(x0)|`` (``rtol = 1e-8``): assimilax's own test; for JAXopt
its ``tol`` (an absolute gradient norm) set to ``rtol |grad(x0)|``; for Optimistix,
whose L-BFGS tests Cauchy differences of ``x`` and ``f`` instead, the same
L-BFGS with that gradient test as its `terminate` (its steps are unchanged).
Backward solves are CG to ``1e-10``. Each row reports the inner gradient reached
and the hypergradient's relative error against a reference: the closed form for
Tikhonov, and for heat and logistic a dense Newton solve of the inner problem
and of the implicit-function-theorem system.

*Timing.* Each program (forward = loss and inner steps; value_and_grad) is
compiled ahead of time once (``compile s``), then timed in interleaved rounds
(median; see `_common.interleaved_timings`). ``us/step`` is the forward time over
the inner steps: one L-BFGS iteration (assimilax, JAXopt) or one
objective-and-gradient evaluation (Optimistix counts each line-search trial as a
step).

Targets: assimilax `LBFGS` per step and forward (to the same accuracy) no slower
than Optimistix's; value_and_grad <= 1.0x the best of Optimistix and JAXopt.
"""

import dataclasses
import functools
import math
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import optimistix as optx  # noqa: E402
from optimistix._solver.backtracking import BacktrackingArmijo  # noqa: E402
from optimistix._solver.gauss_newton import NewtonDescent  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.costs import ControlVariable, StrongConstraint4DVar  # noqa: E402
from assimilax.dynamics import Heat1D  # noqa: E402
from assimilax.observations import Observations, ScalarNoise, Stations  # noqa: E402
from assimilax.priors import DiffusionBackground  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    compile_ahead,
    finish_payload,
    fmt_ms,
    fmt_sci,
    interleaved_timings,
    markdown_table,
    script_main,
    start_payload,
)
from _tikhonov import make_problem as make_tikhonov  # noqa: E402


RESULTS_PATH = Path(__file__).resolve().parent / "results" / "peers.json"
OURS, BEFORE = "assimilax LBFGS", "assimilax LBFGS(zoom)"
OPTX, JAXOPT = "optimistix LBFGS", "jaxopt LBFGS"


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and options of one benchmark run."""

    heat_n: int = 256
    heat_steps: int = 40
    logistic_samples: int = 2000
    logistic_features: int = 500
    tikhonov_1d: int = 1024
    tikhonov_2d: tuple[int, int] = (128, 128)
    inner_rtol: float = 1e-8
    cg_tol: float = 1e-10
    max_steps: int = 5000
    rounds: int = 7
    budget_s: float = 20.0
    problems: tuple[str, ...] = ("heat", "logistic", "tikhonov_1d", "tikhonov_2d")
    # Also run `LBFGS` with Optax's zoom search (the default before issue 15).
    compare_zoom: bool = True


FULL = Config()
QUICK = Config(
    heat_n=64,
    heat_steps=20,
    logistic_samples=200,
    logistic_features=20,
    tikhonov_1d=128,
    tikhonov_2d=(16, 16),
    rounds=3,
    budget_s=2.0,
    problems=("heat", "tikhonov_1d"),
    compare_zoom=False,
)


# --------------------------------------------------------------------------------------
# Problems


@dataclasses.dataclass
class Problem:
    """``fn(x, theta)`` (inner), ``outer(x)``, a start and the reference answer."""

    name: str
    fn: Callable[[Any, Any], Any]
    outer: Callable[[Any], Any]
    x0: jax.Array
    theta: jax.Array
    hypergrad: np.ndarray | None  # reference dL/dtheta (None: not computed)


def heat(cfg: Config, *, reference: bool = True) -> Problem:
    n, dt = cfg.heat_n, 0.005
    times = dt * np.arange(cfg.heat_steps + 1)[::5]
    background = DiffusionBackground(jnp.zeros(n), 1.0, n / 16)
    key_truth, key_noise = jax.random.split(jax.random.key(0))
    truth = background.to_state(jax.random.normal(key_truth, (n,)))
    length = 2 * np.pi
    clean = Heat1D(n=n, kappa=0.5, length=length).integrate(truth, jnp.asarray(times))
    stations = Stations.every(4, n)
    clean = jax.vmap(stations)(clean)
    noise = 0.05 * float(jnp.std(truth))
    obs = clean + noise * jax.random.normal(key_noise, clean.shape)

    def problem(theta):
        model = Heat1D(n=n, kappa=jnp.exp(theta), length=length)
        observations = Observations(obs, None, times, stations, ScalarNoise(noise))
        return StrongConstraint4DVar(
            model, observations, background, t0=0.0, control=ControlVariable()
        )

    def fn(v, theta):
        return problem(theta).cost(v)

    def outer(v):
        return jnp.mean((problem(0.0).to_state(v) - truth) ** 2)

    theta = jnp.asarray(np.log(1.0))
    name = f"heat 1D 4DVar, n={n}, {cfg.heat_steps} steps"
    if not reference:
        return Problem(name, fn, outer, jnp.zeros(n), theta, None)
    return _with_reference(name, fn, outer, jnp.zeros(n), theta)


def logistic(cfg: Config, *, reference: bool = True) -> Problem:
    rng = np.random.default_rng(0)
    features = cfg.logistic_features
    w_true = np.zeros(features)
    w_true[:10] = 2.0 * rng.normal(size=min(10, features))
    data = {}
    for split, num in (("train", cfg.logistic_samples), ("val", 1000)):
        x = rng.normal(size=(num, features))
        p = 1 / (1 + np.exp(-(x @ w_true + 0.25)))
        data[split] = (jnp.asarray(x), jnp.asarray((rng.random(num) < p) * 1.0))

    def cross_entropy(w, split):
        x, y = data[split]
        logits = x @ w[:-1] + w[-1]
        softplus = jax.nn.softplus
        return jnp.mean(y * softplus(-logits) + (1 - y) * softplus(logits))

    def fn(w, theta):
        return cross_entropy(w, "train") + 0.5 * jnp.sum(jnp.exp(theta) * w[:-1] ** 2)

    def outer(w):
        return cross_entropy(w, "val")

    theta = jnp.full(features, np.log(1e-2))
    name = f"logistic, {cfg.logistic_samples} x {features}"
    if not reference:
        return Problem(name, fn, outer, jnp.zeros(features + 1), theta, None)
    return _with_reference(name, fn, outer, jnp.zeros(features + 1), theta)


def tikhonov(shape: tuple[int, ...], lam: float) -> Problem:
    p = make_tikhonov(shape, lam)
    name = f"Tikhonov {p.name}"
    return Problem(name, p.fn, p.outer, p.y, jnp.asarray(lam), np.asarray(p.hypergrad))


def _with_reference(name, fn, outer, x0, theta) -> Problem:
    """The reference hypergradient by dense linear algebra (states of <= ~1000):
    L-BFGS to 1e-10, three Newton steps, then the implicit-function theorem
    ``dL/dtheta = -(d/dtheta grad_x U)^T H^{-1} grad L`` solved densely."""
    sol = ax.argmin(
        fn, x0, theta, solver=ax.LBFGS(rtol=1e-10, max_steps=20000), throw=False
    )
    x = sol.value
    hessian = jax.jit(jax.hessian(fn))
    grad = jax.jit(jax.grad(fn))
    for _ in range(3):
        x = x - jnp.linalg.solve(hessian(x, theta), grad(x, theta))
    mixed = jax.jacfwd(jax.grad(fn), argnums=1)(x, theta).reshape(x.size, -1)
    w = jnp.linalg.solve(hessian(x, theta), jax.grad(outer)(x))
    hypergrad = -(mixed.T @ w).reshape(jnp.shape(theta))
    return Problem(name, fn, outer, x0, theta, np.asarray(hypergrad))


def make_problems(cfg: Config) -> list[Problem]:
    builders = {
        "heat": lambda: heat(cfg),
        "logistic": lambda: logistic(cfg),
        "tikhonov_1d": lambda: tikhonov((cfg.tikhonov_1d,), 5.0),
        "tikhonov_2d": lambda: tikhonov(cfg.tikhonov_2d, 2.0),
    }
    return [builders[name]() for name in cfg.problems]


# --------------------------------------------------------------------------------------
# Solvers: each method is ``solve(theta) -> (x*, inner steps)``, differentiable.


class GradientNormLBFGS(optx.AbstractLBFGS):
    """Optimistix's L-BFGS (`optx.LBFGS`'s descent, search and history) stopped by
    the gradient-norm test ``|grad| <= gtol`` instead of its Cauchy test, so that
    it stops where the other libraries do."""

    gtol: Any
    rtol: float = 0.0
    atol: float = 0.0
    norm: Callable = optx.two_norm
    use_inverse: bool = True
    descent: NewtonDescent = NewtonDescent()
    search: BacktrackingArmijo = BacktrackingArmijo()
    history_length: int = 10
    verbose: Callable = lambda **kwargs: None

    def terminate(self, fn, y, args, options, state, tags):
        done = jnp.logical_not(state.first_step) & (
            optx.two_norm(state.f_info.grad) <= self.gtol
        )
        return done, state.result


def _gtol(problem: Problem, cfg: Config, theta):
    g0 = jax.grad(problem.fn)(problem.x0, jax.lax.stop_gradient(theta))
    return jax.lax.stop_gradient(cfg.inner_rtol * optx.two_norm(g0))


def methods(problem: Problem, cfg: Config) -> dict[str, Callable]:
    cg = lx.CG(rtol=cfg.cg_tol, atol=cfg.cg_tol, max_steps=10 * problem.x0.size)
    zoom = optax.scale_by_zoom_linesearch(20, initial_guess_strategy="one")

    def assimilax_solve(solver):
        def solve(theta):
            sol = ax.argmin(
                problem.fn,
                problem.x0,
                theta,
                solver=solver,
                hypergradient=ax.Implicit(linear_solver=cg),
            )
            return sol.value, sol.stats.num_steps

        return solve

    def optimistix_solve(theta):
        solver = GradientNormLBFGS(gtol=_gtol(problem, cfg, theta))
        sol = optx.minimise(
            problem.fn,
            solver,
            problem.x0,
            theta,
            max_steps=cfg.max_steps,
            adjoint=optx.ImplicitAdjoint(linear_solver=cg),
            tags=frozenset({lx.symmetric_tag, lx.positive_semidefinite_tag}),
        )
        return sol.value, sol.stats["num_steps"]

    out = {
        OURS: assimilax_solve(ax.LBFGS(rtol=cfg.inner_rtol, max_steps=cfg.max_steps)),
    }
    if cfg.compare_zoom:
        out[BEFORE] = assimilax_solve(
            ax.LBFGS(rtol=cfg.inner_rtol, max_steps=cfg.max_steps, linesearch=zoom)
        )
    out[OPTX] = optimistix_solve
    jaxopt = import_jaxopt()
    if isinstance(jaxopt, Exception):
        return out

    def jaxopt_solve(theta):
        solve_cg = functools.partial(
            jaxopt.linear_solve.solve_cg, tol=cfg.cg_tol, atol=cfg.cg_tol
        )
        solver = jaxopt.LBFGS(
            fun=problem.fn,
            tol=_gtol(problem, cfg, theta),
            maxiter=cfg.max_steps,
            implicit_diff=True,
            implicit_diff_solve=solve_cg,
        )
        result = solver.run(problem.x0, theta)
        return result.params, result.state.iter_num

    out[JAXOPT] = jaxopt_solve
    return out


def import_jaxopt():
    """The `jaxopt` module, or the exception importing it raised."""
    try:
        with warnings.catch_warnings():  # "JAXopt is no longer maintained"
            warnings.simplefilter("ignore", DeprecationWarning)
            import jaxopt
    except Exception as error:  # noqa: BLE001 - reported in the output, not hidden
        return error
    return jaxopt


# --------------------------------------------------------------------------------------
# Measuring and reporting


def measure(problem: Problem, cfg: Config) -> dict[str, Any]:
    """Compile, check and time every method on `problem`."""
    theta = problem.theta
    g0 = float(jnp.linalg.norm(jax.grad(problem.fn)(problem.x0, theta)))
    rows, calls = [], {}
    for name, solve in methods(problem, cfg).items():

        def forward(theta, solve=solve):
            x, steps = solve(theta)
            return problem.outer(x), x, steps

        def value_and_grad(theta, solve=solve):
            def loss(theta):
                x, steps = solve(theta)
                return problem.outer(x), steps

            (value, steps), grad = jax.value_and_grad(loss, has_aux=True)(theta)
            return value, grad, steps

        fwd = compile_ahead(forward, theta)
        vg = compile_ahead(value_and_grad, theta)
        _, x, steps = jax.block_until_ready(fwd.call(theta))
        _, grad, _ = jax.block_until_ready(vg.call(theta))
        error = np.linalg.norm(np.asarray(grad) - problem.hypergrad)
        rows.append(
            {
                "name": name,
                "inner_steps": int(steps),
                "inner_rel_grad": float(
                    jnp.linalg.norm(jax.grad(problem.fn)(x, theta)) / g0
                ),
                "hypergrad_rel_error": float(error / np.linalg.norm(problem.hypergrad)),
                "forward_compile_s": fwd.compile_s,
                "value_and_grad_compile_s": vg.compile_s,
            }
        )
        calls[name + " [forward]"] = (fwd.call, (theta,))
        calls[name] = (vg.call, (theta,))
    timings = interleaved_timings(calls, rounds=cfg.rounds, budget_s=cfg.budget_s)
    for row in rows:
        row["forward_s"] = timings[row["name"] + " [forward]"]["median_s"]
        row["value_and_grad_s"] = timings[row["name"]]["median_s"]
        row["per_step_s"] = row["forward_s"] / max(row["inner_steps"], 1)
    return {"problem": problem.name, "rows": rows, "ratios": ratios(rows)}


def ratios(rows: list[dict]) -> dict[str, Any]:
    """assimilax `LBFGS` against the peers: per step and forward against Optimistix,
    value_and_grad against the best peer (and the zoom-search LBFGS: before/after)."""
    by = {row["name"]: row for row in rows}
    ours, peers = by[OURS], [by[n] for n in (OPTX, JAXOPT) if n in by]
    best = min(peers, key=lambda r: r["value_and_grad_s"])

    def ratio(key, other):
        return ours[key] / other[key]

    out = {
        "per_step_vs_optimistix": ratio("per_step_s", by[OPTX]),
        "forward_vs_optimistix": ratio("forward_s", by[OPTX]),
        "value_and_grad_vs_best_peer": ratio("value_and_grad_s", best),
        "best_peer": best["name"],
    }
    if BEFORE in by:
        out["per_step_vs_zoom"] = ratio("per_step_s", by[BEFORE])
        out["value_and_grad_vs_zoom"] = ratio("value_and_grad_s", by[BEFORE])
    if JAXOPT in by:
        out["per_step_vs_jaxopt"] = ratio("per_step_s", by[JAXOPT])
        out["forward_vs_jaxopt"] = ratio("forward_s", by[JAXOPT])
    out["holds"] = {
        "per_step": out["per_step_vs_optimistix"] <= 1.0,
        "forward": out["forward_vs_optimistix"] <= 1.0,
        "value_and_grad": out["value_and_grad_vs_best_peer"] <= 1.0,
    }
    return out


def _ratio(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def print_result(result: dict[str, Any]) -> None:
    print(f"\n### {result['problem']}\n")
    headers = [
        "method",
        "inner steps",
        "us/step",
        "forward ms",
        "value_and_grad ms",
        "compile s (fwd, v&g)",
        "inner grad",
        "hypergrad error",
    ]
    rows = [
        [
            r["name"],
            r["inner_steps"],
            f"{1e6 * r['per_step_s']:.3g}",
            fmt_ms(r["forward_s"]),
            fmt_ms(r["value_and_grad_s"]),
            f"{r['forward_compile_s']:.1f}, {r['value_and_grad_compile_s']:.1f}",
            fmt_sci(r["inner_rel_grad"]),
            fmt_sci(r["hypergrad_rel_error"]),
        ]
        for r in result["rows"]
    ]
    print(markdown_table(headers, rows))
    q = result["ratios"]
    print(
        f"\n{OURS}: per step {_ratio(q['per_step_vs_optimistix'])} Optimistix's"
        f" ({_ratio(q.get('per_step_vs_jaxopt'))} JAXopt's), forward "
        f"{_ratio(q['forward_vs_optimistix'])} Optimistix's, value_and_grad "
        f"{_ratio(q['value_and_grad_vs_best_peer'])} the best peer "
        f"({q['best_peer']})"
        + (
            f"; against the zoom search: per step {_ratio(q['per_step_vs_zoom'])}, "
            f"value_and_grad {_ratio(q['value_and_grad_vs_zoom'])}."
            if "per_step_vs_zoom" in q
            else "."
        )
    )


def run(cfg: Config, out: Path | None = RESULTS_PATH, *, verbose: bool = True) -> dict:
    """Measure every problem; print tables (if `verbose`), write JSON to `out`."""
    payload = start_payload(
        "peers",
        "L-BFGS + implicit hypergradient against Optimistix and JAXopt",
        cfg,
        {"ratio": 1.0},
        verbose=verbose,
    )
    jaxopt = import_jaxopt()
    payload["jaxopt"] = (
        f"not run: {type(jaxopt).__name__}: {jaxopt}"
        if isinstance(jaxopt, Exception)
        else "imported"
    )
    if verbose and isinstance(jaxopt, Exception):
        print(f"\nJAXopt {payload['jaxopt']} (pip install 'assimilax[peers]').")
    payload["problems"] = []
    for problem in make_problems(cfg):
        result = measure(problem, cfg)
        payload["problems"].append(result)
        if verbose:
            print_result(result)
    return finish_payload(payload, out, verbose=verbose)


def main(argv: list[str] | None = None) -> None:
    script_main(
        argv,
        __doc__,
        run,
        FULL,
        QUICK,
        RESULTS_PATH,
        quick_help="small sizes, well under a minute",
    )


if __name__ == "__main__":
    main()
