"""Hypergradient strategies side by side, against closed forms and optimistix.

Run ``python benchmarks/hypergradients.py`` (full, a few minutes) or with
``--quick`` (smaller problems, fewer rounds, no forward/backward split of the
times; under three minutes). Markdown tables go to stdout
and everything to ``benchmarks/results/hypergradients.json``. Memory against the
number of inner steps is the other benchmark, ``hypergradient_memory.py``.

The problem is Tikhonov denoising (``_tikhonov.py``) of a 1D signal and a 2D
image, differentiated w.r.t. the scalar weight λ, with its exact hypergradient in
float64. Every assimilax strategy and several `optimistix.minimise`
configurations are compiled, then timed in interleaved rounds (see
`_common.interleaved_timings`).

*What is matched.* The inner gradient-descent solvers of both libraries take the
same step ``1/L`` with ``L = 1 + 4·ndim·λ ≥ λ_max(Hessian)`` and stop by the same
rule: assimilax at ``‖∇f(x_k)‖₂ ≤ rtol‖∇f(x₀)‖₂``; optimistix's Cauchy test on
``‖x_k − x_{k−1}‖₂ = ‖∇f(x_{k−1})‖₂ / L`` is given ``rtol=0`` and
``atol = rtol‖∇f(x₀)‖₂ / L``, the same test one step later. Quasi-Newton solvers have
no exactly equivalent tests; their tolerances are chosen to reach a comparable
inner residual, and every row reports the residual it reached (``inner grad``), its
steps and the error of ``x*``. Backward linear solves all use ``lx.CG`` with the
same ``rtol = atol``, and unrolled loops run ``max_steps = steps needed + 5%``.

Target (from the project issue): `Implicit` no slower than optimistix's fastest
accurate configuration at equal or smaller error.
"""

import dataclasses
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import optimistix as optx  # noqa: E402

import assimilax as ax  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    compile_ahead,
    finish_payload,
    fmt_mib,
    fmt_ms,
    fmt_sci,
    interleaved_timings,
    markdown_table,
    script_main,
    start_payload,
)
from _error_sweeps import error_sweeps  # noqa: E402
from _tikhonov import make_problem, Problem  # noqa: E402


RESULTS_PATH = Path(__file__).resolve().parent / "results" / "hypergradients.json"
# A hypergradient with relative error below this counts as accurate; the fastest
# accurate optimistix configuration is the reference for the time target.
ACCURATE = 1e-6
# "Equal or smaller error": within this factor of the reference's error, or below
# the floor; differences that small are set by the inner tolerance (both libraries
# stop near a 1e-10 relative gradient), not by the hypergradient method.
EQUAL_ERROR_FACTOR = 2.0
ERROR_FLOOR = 1e-8
_PSD = frozenset({lx.symmetric_tag, lx.positive_semidefinite_tag})


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and options of one benchmark run."""

    n_1d: int = 1024
    shape_2d: tuple[int, int] = (128, 128)
    lam_1d: float = 5.0
    lam_2d: float = 2.0
    inner_rtol: float = 1e-10
    linear_rtol: float = 1e-10
    rounds: int = 21
    truncation: tuple[int, ...] = (50, 200)
    problems: tuple[str, ...] = ("1d", "2d")
    # Optional subset of method names (None: all); used by the smoke test.
    methods: tuple[str, ...] | None = None
    bfgs_max_size: int = 2048  # optx.BFGS stores a dense size x size matrix
    # FiniteDifference perturbs every floating leaf of (fn, args), closed-over data
    # included, so it runs 2 (size + 1) inner solves here: only on small problems.
    fd_max_size: int = 2048
    # Methods slower than budget_s / rounds per call get fewer rounds (at least 3).
    budget_s: float = 30.0
    # Also compile and time the forward pass alone (the fwd / bwd columns).
    time_forward: bool = True
    # Error against inner steps, truncation k and CG tolerance (`_error_sweeps`),
    # on this problem (None: no sweeps).
    sweep_problem: str | None = "1d"
    sweep_steps: tuple[int, ...] = (25, 50, 100, 200, 400, 800)
    sweep_k: tuple[int, ...] = (1, 5, 25, 125, 400)
    sweep_rtol: tuple[float, ...] = (1e-2, 1e-4, 1e-6, 1e-8, 1e-10)


FULL = Config()
QUICK = Config(
    n_1d=256,
    shape_2d=(48, 48),
    rounds=5,
    truncation=(50,),
    budget_s=5.0,
    time_forward=False,
)


def _problem(kind: str, cfg: Config) -> Problem:
    """The 1D (``kind="1d"``) or 2D problem at the sizes of `cfg`."""
    if kind == "1d":
        return make_problem((cfg.n_1d,), cfg.lam_1d)
    return make_problem(cfg.shape_2d, cfg.lam_2d)


# --------------------------------------------------------------------------------------
# The methods


@dataclasses.dataclass
class Method:
    """One way of computing ``(L(λ), dL/dλ)``.

    `solve(lam) -> (x*, steps)` is the differentiable solve; `mode` says how the
    derivative is taken: ``"reverse"`` (`jax.value_and_grad`), ``"forward"``
    (`jax.jacfwd`) or ``"stateful"`` (`assimilax.value_and_hypergrad`, given by
    `stateful`).
    """

    name: str
    library: str
    strategy: str
    solve: Callable[[Any], tuple[Any, Any]]
    mode: str = "reverse"
    stateful: Callable[[Any], tuple[Any, Any]] | None = None


def _ax_method(name: str, problem: Problem, solver, strategy) -> Method:
    """An assimilax row: `solver` with `strategy` (forward mode: `jax.jacfwd`)."""
    mode = "forward" if isinstance(strategy, ax.ForwardMode) else "reverse"
    solve = _ax_solve(problem, solver, strategy)
    return Method(name, "assimilax", type(strategy).__name__, solve, mode=mode)


def _ax_solve(problem, solver, strategy):
    def solve(lam):
        sol = ax.argmin(
            problem.fn, problem.y, lam, solver=solver, hypergradient=strategy
        )
        return sol.value, sol.stats.num_steps

    return solve


def _optx_solve(problem, solver, adjoint, max_steps):
    def solve(lam):
        sol = optx.minimise(
            problem.fn,
            solver,
            problem.y,
            lam,
            max_steps=max_steps,
            adjoint=adjoint,
            tags=_PSD,
        )
        return sol.value, sol.stats["num_steps"]

    return solve


def steps_needed(problem: Problem, cfg: Config) -> int:
    """Gradient-descent steps to reach the inner tolerance (one while-loop run)."""
    solver = ax.GradientDescent(
        learning_rate=1.0 / problem.lipschitz, max_steps=10**6, rtol=cfg.inner_rtol
    )
    steps = jax.jit(_ax_solve(problem, solver, ax.Implicit()))(problem.lam)[1]
    return int(steps)


def neumann_terms(problem: Problem, tol: float) -> int:
    """Neumann terms for relative error `tol`: ``(1 − λ_min/λ_max)^k ≤ tol``.

    ``λ_min ≥ 1`` (the identity term) and ``λ_max ≤ L``.
    """
    return math.ceil(math.log(tol) / math.log1p(-1.0 / problem.lipschitz))


def build_methods(problem: Problem, cfg: Config) -> tuple[list[Method], dict]:
    """Every configuration for `problem`, and a record of what was matched."""
    needed = steps_needed(problem, cfg)
    max_steps = needed + max(5, needed // 20)
    lr = 1.0 / problem.lipschitz
    gd = ax.GradientDescent(learning_rate=lr, max_steps=max_steps, rtol=cfg.inner_rtol)
    cg = lx.CG(rtol=cfg.linear_rtol, atol=cfg.linear_rtol)
    implicit = ax.Implicit(linear_solver=cg)
    checkpoint = math.ceil(math.sqrt(max_steps))
    terms = neumann_terms(problem, cfg.linear_rtol)
    methods = [
        _ax_method("GD + Unrolled", problem, gd, ax.Unrolled()),
        _ax_method(
            f"GD + Unrolled(checkpoint_every={checkpoint})",
            problem,
            gd,
            ax.Unrolled(checkpoint_every=checkpoint),
        ),
    ]
    for k in cfg.truncation:
        if k <= max_steps:
            methods.append(
                _ax_method(f"GD + Truncated(k={k})", problem, gd, ax.Truncated(k=k))
            )
    methods += [
        _ax_method("GD + ForwardMode (jacfwd)", problem, gd, ax.ForwardMode()),
        _ax_method("GD + Implicit(CG)", problem, gd, implicit),
        _ax_method(
            f"GD + Implicit(Neumann({terms}))",
            problem,
            gd,
            ax.Implicit(linear_solver=ax.bilevel.Neumann(num_terms=terms)),
        ),
        Method(
            "GD + Implicit(CG), value_and_hypergrad",
            "assimilax",
            "Implicit",
            _ax_solve(problem, gd, implicit),
            mode="stateful",
            stateful=_stateful(problem, gd, implicit),
        ),
    ]
    if problem.y.size <= cfg.fd_max_size:
        methods.append(
            _ax_method("GD + FiniteDifference", problem, gd, ax.FiniteDifference())
        )
    methods += _assimilax_quasi_newton(problem, cfg, implicit, max_steps)
    methods += _optimistix_methods(problem, cfg, max_steps, cg)
    if cfg.methods is not None:
        methods = [m for m in methods if m.name in cfg.methods]
    matched = {
        "inner_rule": (
            "GD step 1/L, L = 1 + 4*ndim*lam; stop at |grad|_2 <= rtol |grad(x0)|_2 "
            "(optimistix: rtol=0, atol = rtol |grad(x0)|_2 / L on |x_k - x_(k-1)|_2)"
        ),
        "inner_rtol": cfg.inner_rtol,
        "gd_steps_needed": needed,
        "max_steps": max_steps,
        "linear_solver": f"lx.CG(rtol={cfg.linear_rtol}, atol={cfg.linear_rtol})",
        "neumann_terms": terms,
        "unrolled_checkpoint_every": checkpoint,
        "finite_difference": (
            "included"
            if problem.y.size <= cfg.fd_max_size
            else f"skipped: it would run 2 x {problem.y.size + 1} inner solves"
        ),
    }
    return methods, matched


def _stateful(problem, solver, strategy):
    def value_and_grad(lam):
        loss, grad, state, info = ax.value_and_hypergrad(
            lambda x, _: problem.outer(x),
            problem.fn,
            problem.y,
            lam,
            solver=solver,
            hypergradient=strategy,
        )
        return loss, grad, state.x, info.inner.num_steps

    return value_and_grad


def _assimilax_quasi_newton(problem, cfg, implicit, max_steps):
    """Rows for assimilax's L-BFGS where the running checkout has one."""
    lbfgs_cls = getattr(ax, "LBFGS", None)
    if lbfgs_cls is None:
        return []
    try:
        lbfgs = lbfgs_cls(max_steps=max_steps, rtol=cfg.inner_rtol)
    except TypeError as error:  # an unexpected signature: report, do not guess
        print(f"(skipping assimilax LBFGS: {error})")
        return []
    rows = [
        _ax_method("LBFGS + Implicit(CG)", problem, lbfgs, implicit),
        _ax_method("LBFGS + ForwardMode (jacfwd)", problem, lbfgs, ax.ForwardMode()),
    ]
    if lbfgs.reverse_differentiable:
        rows.append(_ax_method("LBFGS + Unrolled", problem, lbfgs, ax.Unrolled()))
    return rows


def _optimistix_methods(problem, cfg, max_steps, cg):
    lr = 1.0 / problem.lipschitz
    g0 = np.linalg.norm(problem.grad_np(np.asarray(problem.y)))
    # Same stopping rule as assimilax's GradientDescent (see the module docstring).
    gd = optx.GradientDescent(
        learning_rate=lr, rtol=0.0, atol=cfg.inner_rtol * g0 * lr, norm=optx.two_norm
    )
    # Quasi-Newton: Cauchy tests on |x_k − x_(k−1)| and |f_k − f_(k−1)|; these
    # tolerances give inner gradients comparable to GD's (reported per row).
    # (In float64 they stall near 1e-9 relative gradient whatever the tolerance,
    # as their Armijo line search compares objective values at rounding level.)
    qn_tol = cfg.inner_rtol * 1e-2
    solvers = {
        "optx.GradientDescent": gd,
        "optx.LBFGS": optx.LBFGS(rtol=qn_tol, atol=qn_tol),
        "optx.NonlinearCG": optx.NonlinearCG(rtol=qn_tol, atol=qn_tol),
    }
    if problem.y.size <= cfg.bfgs_max_size:
        solvers["optx.BFGS"] = optx.BFGS(rtol=qn_tol, atol=qn_tol)
    implicit = optx.ImplicitAdjoint(linear_solver=cg)
    rows = []
    for name, solver in solvers.items():
        # Line-search trial points count as steps in optimistix: allow more of them.
        cap = max_steps if name == "optx.GradientDescent" else 4 * max_steps
        rows.append(
            Method(
                f"{name} + ImplicitAdjoint(CG)",
                "optimistix",
                "ImplicitAdjoint",
                _optx_solve(problem, solver, implicit, cap),
            )
        )
        if name in ("optx.GradientDescent", "optx.LBFGS"):
            rows.append(
                Method(
                    f"{name} + RecursiveCheckpointAdjoint",
                    "optimistix",
                    "RecursiveCheckpointAdjoint",
                    _optx_solve(
                        problem, solver, optx.RecursiveCheckpointAdjoint(), cap
                    ),
                )
            )
    return rows


# --------------------------------------------------------------------------------------
# Measuring and reporting


def _value_and_grad_fn(problem: Problem, method: Method):
    """``lam -> (L, dL/dλ, x*, inner steps)``; the last two only for diagnostics."""
    if method.mode == "stateful":
        return method.stateful

    def loss(lam):
        x, steps = method.solve(lam)
        value = problem.outer(x)
        return value, (value, x, steps)

    if method.mode == "forward":

        def value_and_grad(lam):
            grad, (value, x, steps) = jax.jacfwd(loss, has_aux=True)(lam)
            return value, grad, x, steps

        return value_and_grad

    def value_and_grad(lam):
        (value, (_, x, steps)), grad = jax.value_and_grad(loss, has_aux=True)(lam)
        return value, grad, x, steps

    return value_and_grad


def _forward_fn(problem: Problem, method: Method):
    def forward(lam):
        x, steps = method.solve(lam)
        return problem.outer(x), x, steps

    return forward


def measure(problem: Problem, cfg: Config) -> dict[str, Any]:
    """Compile, check and time every method on `problem`."""
    methods, matched = build_methods(problem, cfg)
    lam = jnp.asarray(problem.lam)
    rows, calls = [], {}
    for method in methods:
        vg = compile_ahead(_value_and_grad_fn(problem, method), lam)
        value, grad, x, steps = jax.block_until_ready(vg.call(lam))
        x = np.asarray(x)
        rows.append(
            {
                "name": method.name,
                "library": method.library,
                "strategy": method.strategy,
                "hypergrad": float(grad),
                "rel_error": abs(float(grad) - problem.hypergrad)
                / abs(problem.hypergrad),
                "loss_rel_error": abs(float(value) - problem.loss) / problem.loss,
                "inner_steps": int(steps),
                "inner_rel_grad": float(
                    np.linalg.norm(problem.grad_np(x))
                    / np.linalg.norm(problem.grad_np(np.asarray(problem.y)))
                ),
                "x_rel_error": float(
                    np.linalg.norm(x - problem.x_star) / np.linalg.norm(problem.x_star)
                ),
                "compile_s": vg.compile_s,
                "temp_bytes": vg.temp_bytes,
            }
        )
        calls[method.name] = (vg.call, (lam,))
        if cfg.time_forward:
            # The forward pass alone (no derivative): splits time into fwd / bwd.
            fwd = compile_ahead(_forward_fn(problem, method), lam)
            rows[-1]["forward_compile_s"] = fwd.compile_s
            rows[-1]["forward_temp_bytes"] = fwd.temp_bytes
            calls[method.name + " [forward]"] = (fwd.call, (lam,))
    timings = interleaved_timings(calls, rounds=cfg.rounds, budget_s=cfg.budget_s)
    for row in rows:
        row["time_s"] = timings[row["name"]]["median_s"]
        row["time_min_s"] = timings[row["name"]]["min_s"]
        row["timing_rounds"] = timings[row["name"]]["rounds"]
        forward = timings.get(row["name"] + " [forward]")
        row["forward_time_s"] = None if forward is None else forward["median_s"]
        row["time_per_inner_step_s"] = (
            None
            if forward is None
            else forward["median_s"] / max(row["inner_steps"], 1)
        )
    return {
        "problem": problem.name,
        "lam": problem.lam,
        "exact_hypergrad": problem.hypergrad,
        "exact_loss": problem.loss,
        "matched": matched,
        "rows": rows,
        "linear_steps": _backward_linear_steps(problem, matched, cfg),
        "target": time_target(rows),
        "like_for_like": like_for_like(rows),
    }


def _backward_s(row: dict) -> float | None:
    # Difference of two medians: on a noisy machine it can come out slightly < 0.
    if row["forward_time_s"] is None:
        return None
    return row["time_s"] - row["forward_time_s"]


_PAIR = ("GD + Implicit(CG)", "optx.GradientDescent + ImplicitAdjoint(CG)")


def like_for_like(rows: list[dict]) -> dict[str, Any] | None:
    """The same algorithm in both libraries: gradient descent + implicit CG.

    Ratios (assimilax / optimistix) of the total, forward-only and backward
    (total − forward) times, and of the time per inner step.
    """
    by = {r["name"]: r for r in rows}
    if not all(name in by for name in _PAIR):
        return None
    ours, theirs = by[_PAIR[0]], by[_PAIR[1]]

    def ratio(key):
        if ours[key] is None or theirs[key] is None or theirs[key] <= 0:
            return None
        return ours[key] / theirs[key]

    backward = [_backward_s(r) for r in (ours, theirs)]
    return {
        "pair": list(_PAIR),
        "total_ratio": ratio("time_s"),
        "forward_ratio": ratio("forward_time_s"),
        "per_step_ratio": ratio("time_per_inner_step_s"),
        "backward_s": backward,
        "compile_ratio": ratio("compile_s"),
        "inner_steps": [ours["inner_steps"], theirs["inner_steps"]],
    }


def _backward_linear_steps(problem, matched, cfg) -> int:
    """CG iterations of assimilax's backward solve (from `value_and_hypergrad`).

    optimistix runs the same `lx.CG` on the same Hessian operator and right-hand
    side (by symmetry of the transposed solve), so takes the same number.
    """
    gd = ax.GradientDescent(
        learning_rate=1.0 / problem.lipschitz,
        max_steps=matched["max_steps"],
        rtol=cfg.inner_rtol,
    )
    strategy = ax.Implicit(
        linear_solver=lx.CG(rtol=cfg.linear_rtol, atol=cfg.linear_rtol)
    )

    @jax.jit
    def info(lam):
        out = ax.value_and_hypergrad(
            lambda x, _: problem.outer(x),
            problem.fn,
            problem.y,
            lam,
            solver=gd,
            hypergradient=strategy,
        )
        return out[3].linear.num_steps

    return int(info(jnp.asarray(problem.lam)))


def time_target(rows: list[dict]) -> dict[str, Any]:
    """`Implicit` time <= optimistix's fastest accurate time, at equal or smaller error.

    Reference: the fastest optimistix row with error <= `ACCURATE`. Candidates: the
    assimilax `Implicit` rows with error <= max(`EQUAL_ERROR_FACTOR` x reference
    error, `ERROR_FLOOR`).
    """
    reference = [
        r for r in rows if r["library"] == "optimistix" and r["rel_error"] <= ACCURATE
    ]
    if not reference:
        return {"holds": None, "reason": "no accurate optimistix configuration"}
    best_optx = min(reference, key=lambda r: r["time_s"])
    bound = max(EQUAL_ERROR_FACTOR * best_optx["rel_error"], ERROR_FLOOR)
    ours = [r for r in rows if r["strategy"] == "Implicit" and r["rel_error"] <= bound]
    if not ours:
        return {
            "holds": False,
            "optimistix": best_optx["name"],
            "reason": "no Implicit row as accurate",
        }
    best = min(ours, key=lambda r: r["time_s"])
    ratio = best["time_s"] / best_optx["time_s"]
    return {
        "holds": bool(ratio <= 1.0),
        "ratio": ratio,
        "implicit": best["name"],
        "implicit_time_s": best["time_s"],
        "implicit_rel_error": best["rel_error"],
        "optimistix": best_optx["name"],
        "optimistix_time_s": best_optx["time_s"],
        "optimistix_rel_error": best_optx["rel_error"],
        "error_bound": bound,
    }


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def print_result(result: dict[str, Any]) -> None:
    m = result["matched"]
    print(f"\n### {result['problem']}, λ = {result['lam']}")
    print(
        f"\nexact dL/dλ = {result['exact_hypergrad']:.12e}; GD needs "
        f"{m['gd_steps_needed']} steps to rtol {m['inner_rtol']:g}; max_steps = "
        f"{m['max_steps']}; backward {m['linear_solver']} took "
        f"{result['linear_steps']} iterations.\nMatched: {m['inner_rule']}.\n"
    )
    headers = [
        "method",
        "rel. error",
        "ms (median)",
        "ms (min)",
        "fwd ms",
        "bwd ms",
        "compile s",
        "temp MiB",
        "inner steps",
        "inner grad",
        "x* error",
    ]
    rows = [
        [
            r["name"],
            fmt_sci(r["rel_error"]),
            fmt_ms(r["time_s"]),
            fmt_ms(r["time_min_s"]),
            fmt_ms(r["forward_time_s"]),
            fmt_ms(_backward_s(r)),
            f"{r['compile_s']:.2f}",
            fmt_mib(r["temp_bytes"]),
            r["inner_steps"],
            fmt_sci(r["inner_rel_grad"]),
            fmt_sci(r["x_rel_error"]),
        ]
        for r in result["rows"]
    ]
    print(markdown_table(headers, rows))
    pair = result["like_for_like"]
    if pair is not None:
        print(
            f"\nLike for like ({pair['pair'][0]} / {pair['pair'][1]}): total "
            f"{_fmt_ratio(pair['total_ratio'])}, forward "
            f"{_fmt_ratio(pair['forward_ratio'])}, per inner step "
            f"{_fmt_ratio(pair['per_step_ratio'])}, backward "
            f"{fmt_ms(pair['backward_s'][0])} vs {fmt_ms(pair['backward_s'][1])} ms, "
            f"compile {_fmt_ratio(pair['compile_ratio'])}, inner steps "
            f"{pair['inner_steps'][0]} vs {pair['inner_steps'][1]}."
        )
    t = result["target"]
    if t.get("holds") is None or "ratio" not in t:
        print(f"\nTarget (Implicit time <= 1.0x optimistix best): {t}")
        return
    verdict = "HOLDS" if t["holds"] else "FAILS"
    print(
        f"\nTarget Implicit time <= 1.0x optimistix best at equal or smaller error: "
        f"{verdict} ({t['implicit']}: {fmt_ms(t['implicit_time_s'])} ms, error "
        f"{fmt_sci(t['implicit_rel_error'])} vs {t['optimistix']}: "
        f"{fmt_ms(t['optimistix_time_s'])} ms, error "
        f"{fmt_sci(t['optimistix_rel_error'])}; ratio {t['ratio']:.2f})"
    )


# --------------------------------------------------------------------------------------


def run(cfg: Config, out: Path | None = RESULTS_PATH, *, verbose: bool = True) -> dict:
    """Measure every problem; print tables (if `verbose`), write JSON to `out`."""
    thresholds = {
        "accurate": ACCURATE,
        "equal_error_factor": EQUAL_ERROR_FACTOR,
        "error_floor": ERROR_FLOOR,
    }
    payload = start_payload(
        "hypergradients", "Hypergradient benchmark", cfg, thresholds, verbose=verbose
    )
    payload["problems"] = []
    for kind in cfg.problems:
        result = measure(_problem(kind, cfg), cfg)
        payload["problems"].append(result)
        if verbose:
            print_result(result)
    if cfg.sweep_problem is not None:
        problem = _problem(cfg.sweep_problem, cfg)
        sweeps = error_sweeps(
            problem,
            steps=cfg.sweep_steps,
            ks=cfg.sweep_k,
            rtols=cfg.sweep_rtol,
            needed=steps_needed(problem, cfg),
            linear_rtol=cfg.linear_rtol,
        )
        payload["error_sweeps"] = sweeps.to_dict(data="list")
        if verbose:
            print_sweeps(sweeps)
    return finish_payload(payload, out, verbose=verbose)


def print_sweeps(sweeps) -> None:
    """One Markdown table per sweep: the relative error at each swept value."""
    print(f"\n### Relative error against the sweeps ({sweeps.attrs['problem']})")
    for name in sweeps.data_vars:
        da = sweeps[name]
        dim = next(d for d in da.dims if d != "strategy")
        labels = da["strategy"].values if "strategy" in da.dims else [name]
        rows = [
            [value] + [fmt_sci(float(x)) for x in np.atleast_1d(da.sel({dim: value}))]
            for value in da[dim].values
        ]
        print(f"\n{da[dim].attrs.get('long_name', dim)}\n")
        print(markdown_table([dim, *map(str, labels)], rows))


def main(argv: list[str] | None = None) -> None:
    script_main(
        argv,
        __doc__,
        run,
        FULL,
        QUICK,
        RESULTS_PATH,
        quick_help="small sizes, < 3 minutes",
        output_flag="--out",
    )


if __name__ == "__main__":
    main()
