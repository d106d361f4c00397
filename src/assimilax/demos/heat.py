"""Demo: learn the diffusivity of a heat equation through 4DVar (``assimilax demo
heat``).

Sixteen assimilation windows of a 1D heat equation (n=128 on a periodic domain of
length 2π, true ``kappa = 0.5``), each observed at every 4th point every 5 steps
with noise 5% of the signal's std. The inner problem is strong-constraint 4DVar
of the initial state (incremental: Gauss-Newton with CG); the outer loss is the
analysis error against the truth of each window; `fit` learns ``log kappa``
from twice the truth with three hypergradient strategies, which must agree:
`Implicit` and `Unrolled` through the Gauss-Newton solve, and
`GradientFlowAdjoint` through a gradient flow of the same cost (implicit Euler:
the flow is stiff). Prints a table, saves the learning curves (loss, kappa and
solver iterations per strategy, `assimilax.plotting.fit_history`:
``heat1d_learn_kappa.png``, when matplotlib is installed) and the histories
(``heat1d_learn_kappa.nc``). Everything is generated: no data to download.

Run it in float64 (``jax.config.update("jax_enable_x64", True)``; the command
line does).
"""

import pathlib
import time

import diffrax as dfx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import optimistix as optx
import xarray as xr

from .. import bilevel as ax
from .._progress import AbstractProgress, NoProgress, TqdmProgress
from ..costs import ControlVariable, StrongConstraint4DVar
from ..dynamics import Heat1D
from ..learning import AbstractWarmStart, fit, StrategyDefault, WarmStart
from ..observations import Observations, ScalarNoise, Stations
from ..plotting import fit_history
from ..priors import DiffusionBackground
from ._plots import save_plot


NAME = "heat1d_learn_kappa"
N, LENGTH, KAPPA = 128, 2 * np.pi, 0.5
# Over the window (0.2) the slowest mode decays by e^-0.1, the 5th by e^-2.5.
OBS_TIMES = np.arange(0.0, 0.21, 0.05)
STATIONS = Stations.every(4, N)  # a quarter of the points


def background(n: int = N) -> DiffusionBackground:
    """``B``: unit std, correlation length 8 grid points (also the truths' law)."""
    return DiffusionBackground(jnp.zeros(n), 1.0, 8.0)


def make_windows(num: int = 16, seed: int = 0):
    """Truths drawn from ``B`` (so that, with the true kappa, the analysis is the
    best estimate in the mean-square sense) and their noisy observations."""
    key_truth, key_noise = jax.random.split(jax.random.key(seed))
    truth0 = jax.vmap(background().to_state)(jax.random.normal(key_truth, (num, N)))
    model = Heat1D(n=N, kappa=KAPPA, length=LENGTH)
    states = jax.vmap(lambda x0: model.integrate(x0, jnp.asarray(OBS_TIMES)))(truth0)
    clean = states[:, :, ::4]
    noise = 0.05 * float(jnp.std(truth0))
    obs = clean + noise * jax.random.normal(key_noise, clean.shape)
    return {"truth0": truth0, "obs": obs}, noise


def make_problem_fn(noise: float):
    """``(params, window) -> StrongConstraint4DVar`` with ``kappa = exp(log_kappa)``."""

    def problem_fn(params, window):
        model = Heat1D(n=N, kappa=jnp.exp(params["log_kappa"]), length=LENGTH)
        observations = Observations(
            window["obs"], None, OBS_TIMES, STATIONS, ScalarNoise(noise)
        )
        return StrongConstraint4DVar(
            model, observations, background(), t0=0.0, control=ControlVariable()
        )

    return problem_fn


def analysis_error(x0, params, window):
    """The outer loss: mean-square error of the analysed initial state."""
    return jnp.mean((x0 - window["truth0"]) ** 2)


# The problem is quadratic (linear dynamics): one Gauss-Newton step with a tight
# CG solve is its minimiser.
GAUSS_NEWTON = ax.GaussNewton(
    residuals=lambda control, problem: problem.residuals(control),
    linear_solver=lx.CG(rtol=1e-10, atol=1e-10, max_steps=400),
    max_steps=3,
    rtol=1e-8,
)


# The gradient flow of the same cost, for `GradientFlowAdjoint`. The flow is stiff:
# the Hessian's eigenvalues (in the control variable) run from 1 to about 1e4, so
# an explicit solver would need steps below ~3e-4 and tens of thousands of them;
# implicit Euler with adaptive steps (rtol 1e-4) takes ~300 from the background and
# ~40 from a warm start. By t1 = 20 the slowest mode has decayed by e^-20: x(t1) is
# the minimiser. Each implicit step's Newton system ``(I + h H) d = r`` is solved
# matrix-free by GMRES (Hessian-vector products) rather than by diffrax's default
# dense LU: jaxlib's batched CPU LU can deadlock when two of them run at once on a
# two-thread pool, which `vmap` over windows triggers. The backward pass
# differentiates the discretised solve (`RecursiveCheckpointAdjoint`):
# `BacksolveAdjoint` would integrate the stiff flow backwards in time, which is
# unstable.
GRADIENT_FLOW = ax.GradientFlow(
    t1=20.0,
    dt=0.1,
    diffrax_solver=dfx.ImplicitEuler(
        root_finder=optx.Newton(
            rtol=1e-4,
            atol=1e-4,
            linear_solver=lx.GMRES(rtol=1e-8, atol=1e-8, restart=40, max_steps=2000),
        )
    ),
)
GRADIENT_FLOW_ADJOINT = ax.GradientFlowAdjoint(
    adjoint=dfx.RecursiveCheckpointAdjoint(),
    stepsize_controller=dfx.PIDController(rtol=1e-4, atol=1e-4),
    max_steps=4096,
)


def learn(
    hypergradient: ax.AbstractHypergradient,
    solver: ax.AbstractInnerSolver,
    windows,
    noise,
    steps: int = 40,
    warm_start: AbstractWarmStart = StrategyDefault(),
    progress: AbstractProgress = NoProgress(),
):
    """`fit` of ``log kappa`` from twice the truth, all windows in each batch."""
    return fit(
        make_problem_fn(noise),
        analysis_error,
        {"log_kappa": jnp.asarray(np.log(2 * KAPPA))},
        windows,
        optimiser=optax.adam(0.05, b1=0.5),
        solver=solver,
        hypergradient=hypergradient,
        steps=steps,
        batch_size=jax.tree.leaves(windows)[0].shape[0],
        warm_start=warm_start,
        progress=progress,
    )


# Each strategy with its inner solver and warm-start choice. `GradientFlowAdjoint`
# differentiates the flow on `GRADIENT_FLOW`; the flow runs to ``t1`` whatever its
# start, and ``t1`` is long enough for it to forget the start, so it is
# warm-started from each window's last analysis (``x(t1)`` moves by
# ``exp(-H t1)`` times the start's error, ~1e-9 here); `fit` does not do that by
# default, since with a short ``t1`` the start matters.
STRATEGIES = {
    "Implicit": (ax.Implicit(), GAUSS_NEWTON, StrategyDefault()),
    "Unrolled": (ax.Unrolled(), GAUSS_NEWTON, StrategyDefault()),
    "GradientFlowAdjoint": (GRADIENT_FLOW_ADJOINT, GRADIENT_FLOW, WarmStart()),
}


def main(
    out: str | pathlib.Path = "assimilax-output", quick: bool = False, seed: int = 0
) -> dict:
    """Run both strategies, print a summary, save ``NAME.png`` and ``NAME.nc``.

    Returns a dict: the learnt kappa and its relative error per strategy, seconds.
    """
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    windows, noise = make_windows(8 if quick else 16, seed)
    steps = 15 if quick else 40
    numbers, histories = {}, {}
    print(f"{'strategy':<20} {'kappa':>8} {'rel. error':>10} {'seconds':>8}")
    progress = NoProgress() if quick else TqdmProgress()
    for name, (strategy, solver, warm_start) in STRATEGIES.items():
        start = time.perf_counter()
        result = learn(
            strategy, solver, windows, noise, steps, warm_start, progress=progress
        )
        seconds = time.perf_counter() - start
        kappa = float(jnp.exp(result.params["log_kappa"]))
        error = abs(kappa - KAPPA) / KAPPA
        numbers[name] = {"kappa": kappa, "relative_error": error, "seconds": seconds}
        histories[name] = result.history
        print(f"{name:<20} {kappa:8.4f} {error:10.2%} {seconds:8.1f}")
    print(f"true kappa {KAPPA}, start {2 * KAPPA}, {steps} outer steps")
    history = xr.concat(
        list(histories.values()), dim=xr.DataArray(list(histories), dims="strategy")
    )
    history["kappa"] = np.exp(history["params.log_kappa"])
    history.attrs = {"true_kappa": KAPPA, "title": "heat 1D: kappa learnt by fit"}
    history.to_netcdf(out / f"{NAME}.nc")
    save_plot(
        lambda: fit_history(
            history, ("kappa",), truth={"kappa": KAPPA}, title=history.attrs["title"]
        ),
        out / f"{NAME}.png",
    )
    return numbers
