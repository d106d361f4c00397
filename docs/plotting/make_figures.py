"""Draw the figures of docs/plotting.md from real outputs (about a minute).

Run ``python docs/plotting/make_figures.py`` from the repository root: a small
`fit` (the heat demo's, two strategies), a small `cycle` with a cycled ``B`` on
Lorenz-96 and the hypergradient-error sweeps of ``benchmarks/hypergradients.py``
on its quick 1D problem; each figure is saved next to this script.
"""

import dataclasses
import sys
from pathlib import Path

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.assimilation import CycledB, FourDVarCycling  # noqa: E402
from assimilax.demos import heat, lorenz96  # noqa: E402
from assimilax.plotting import (  # noqa: E402
    cycling_rmse,
    fit_history,
    hypergradient_error,
)
from assimilax.priors import DiagonalBackground  # noqa: E402


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))


def fit_figure():
    windows, noise = heat.make_windows(8)
    histories = {
        name: heat.learn(strategy, solver, windows, noise, steps=15).history
        for name, (strategy, solver, _) in heat.STRATEGIES.items()
        if name != "GradientFlowAdjoint"  # the slow one (a stiff flow)
    }
    history = xr.concat(
        list(histories.values()), dim=xr.DataArray(list(histories), dims="strategy")
    )
    history["kappa"] = np.exp(history["params.log_kappa"])
    return fit_history(history, ("kappa",), truth={"kappa": heat.KAPPA})


def cycling_figure():
    model, ds, first_guess = lorenz96.make_twin(100, seed=0)
    method = FourDVarCycling(
        DiagonalBackground(jnp.zeros(lorenz96.N), 1.0),
        window=2,
        shift=1,
        covariance=CycledB(additive=1e-3),
    )
    out = ax.cycle(
        model,
        ds,
        first_guess,
        method=method,
        solver=ax.LBFGS(rtol=1e-6, max_steps=1000),
        noise=ax.observations.ScalarNoise(1.0),
        burn_in=5.0,
    )
    return cycling_rmse(out)


def hypergradient_figure():
    import hypergradients as bench
    from _error_sweeps import error_sweeps

    cfg = dataclasses.replace(bench.QUICK)
    problem = bench._problem("1d", cfg)
    sweeps = error_sweeps(
        problem,
        steps=cfg.sweep_steps,
        ks=cfg.sweep_k,
        rtols=cfg.sweep_rtol,
        needed=bench.steps_needed(problem, cfg),
        linear_rtol=cfg.linear_rtol,
    )
    return hypergradient_error(sweeps)


if __name__ == "__main__":
    for name, make in (
        ("fit_history", fit_figure),
        ("cycling_rmse", cycling_figure),
        ("hypergradient_error", hypergradient_figure),
    ):
        make().savefig(HERE / f"{name}.png", dpi=80)
        print(f"wrote {HERE / name}.png")
