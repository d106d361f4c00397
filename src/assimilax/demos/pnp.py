"""Demo: a plug-and-play prior in 4DVar, pretrained, zero-shot, then fine-tuned
(``assimilax demo pnp``).

**Setting.** 2D heat (`Heat2D`, 32x32 periodic unit square, ``kappa = 0.01``)
whose states are sums of Gaussian blobs (1 + Poisson(3) per field, amplitude
U(0.5, 1.5), radius U(0.04, 0.07)). Each window observes a fixed random 15% of
the grid at ``t = 0`` and ``0.05`` with noise std 0.05; strong-constraint 4DVar
estimates the initial state from the climatological background (mean and
per-point variance of the historical fields).

**Steps.**

1. *Pretrain* a `ConvDenoiser2D` on 3000 historical fields with
   `Denoising(noise_std=0.5)` (`pretrain_prior`, float32).
2. *Tikhonov baseline, tuned by the bilevel loop*: the weight of a curvature
   penalty `Tikhonov(order=2)` learnt by `fit` (`Implicit`) on 16 training
   windows.
3. *Zero-shot*: the pretrained network in `EnergyPrior(network, weight)`, its
   weight picked from a grid on the training windows; each solve starts from
   the window's Tikhonov analysis (the learned energy is non-convex: from the
   flat background a strong prior holds the analysis there).
4. *Fine-tuned*: the network's weights and the prior weight trained end to end
   through the 4DVar argmin by `fit` (`Implicit`, warm starts; Adam at 3e-4 on
   the network and 0.05 on ``log weight``), on the same training windows,
   against their truths.

All three, and no prior, are scored on 32 held-out windows (other truths, other
noise): the RMSE of the analysed initial state. Prints the table and the
fine-tuning's failed solves, writes ``pnp_heat2d.nc`` (per-window RMSEs, the
analyses of one held-out window, the fine-tuning history) and
``pnp_heat2d.png``. The network runs in float32 inside the float64 problems
(`Precision`). Everything is generated: no data to download.

Measured (seed 0, held-out RMSE, zero-shot -> fine-tuned; no solve failed, in
training or on the test windows): 0.0826 -> 0.0749 on 32 windows (4.5 min on
two shared CPU cores), ``--quick`` 0.0732 -> 0.0673 on 8 (1-1.5 min).
"""

import pathlib
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import optimistix as optx
import xarray as xr

from .. import bilevel as ax
from .._progress import TqdmProgress
from ..bilevel import AbstractProblem
from ..costs import StrongConstraint4DVar
from ..dynamics import Heat2D
from ..learning import Denoising, fit, pretrain_prior, Sequential
from ..observations import Mask, Observations, ScalarNoise
from ..priors import (
    ConvDenoiser2D,
    DiagonalBackground,
    EnergyPrior,
    Precision,
    Tikhonov,
)
from ._plots import save_figure


NAME = "pnp_heat2d"
N, KAPPA, NOISE, OBSERVED = 32, 0.01, 0.05, 0.15
OBS_TIMES = np.asarray([0.0, 0.05])
MODEL = Heat2D(shape=(N, N), kappa=KAPPA)

# The problems without a learned prior are quadratic: one Gauss-Newton step with
# a tight CG solve is their minimiser.
GAUSS_NEWTON = ax.GaussNewton(
    residuals=lambda control, problem: problem.residuals(control),
    linear_solver=lx.CG(rtol=1e-10, atol=1e-10, max_steps=500),
    max_steps=3,
    rtol=1e-8,
)
# With the learned prior (evaluated in float32, `Precision`): LBFGS to a
# relative gradient norm of 1e-4. Float32 round-off in the prior's gradient
# leaves a floor near 1e-5 (measured: at rtol=1e-5 one training window in eight
# stalls at 2.3e-5 for 500 steps, the others take 84-219 steps); at 1e-4 every
# window converges in 40-60 steps, to analyses equal to 4 digits of RMSE.
LBFGS = ax.LBFGS(rtol=1e-4, max_steps=500)
# The backward solve of fine-tuning: CG to a relative residual of 1e-4 in the
# 2-norm (`Implicit` scales the right-hand side to norm one, so `atol` is
# relative). Not lineax's default per-entry test ``|r_i| <= atol + rtol |b_i|``,
# which near-zero entries of the cotangent make far stricter than `rtol` says:
# with ``rtol=1e-2`` it ran to 1e-5 and hit its 200 steps on 2 windows in 8.
# Measured: 40-60 steps, hypergradients within 7e-5 of a dense solve's.
BACKWARD = lx.CG(rtol=0.0, atol=1e-4, norm=optx.two_norm, max_steps=200)
# Fine-tuning steps (Adam): at the network's rate, 3e-4, ``log w`` moved by
# 1e-3 in 4 steps; it has its own, 0.05. Chosen on validation windows (not the
# test ones): RMSE zero-shot -> fine-tuned 0.0633 -> 0.0607 (quick), 0.0622 ->
# 0.0570 (full); with 1e-5 on the network 0.0625 and 0.0634.
NETWORK_LEARNING_RATE, WEIGHT_LEARNING_RATE = 3e-4, 0.05


def blob_fields(rng: np.random.Generator, num: int) -> np.ndarray:
    """``num`` fields of shape ``(N, N)``: sums of periodic Gaussian blobs."""
    grid = np.arange(N) / N
    x, y = np.meshgrid(grid, grid, indexing="ij")
    out = np.zeros((num, N, N))
    for field in out:
        for _ in range(rng.poisson(3) + 1):
            cx, cy = rng.random(2)
            amplitude, radius = rng.uniform(0.5, 1.5), rng.uniform(0.04, 0.07)
            dx = (x - cx + 0.5) % 1 - 0.5
            dy = (y - cy + 0.5) % 1 - 0.5
            field += amplitude * np.exp(-(dx**2 + dy**2) / (2 * radius**2))
    return out


def make_windows(truths: np.ndarray, operator: Mask, seed: int) -> dict:
    """Windows ``{"truth0": (w, N, N), "obs": (w, 2, N, N)}``: noisy observations
    of each truth's trajectory at `OBS_TIMES`."""
    keys = jax.random.split(jax.random.key(seed), len(truths))

    def one(x0, key):
        clean = jax.vmap(operator)(MODEL.integrate(x0, jnp.asarray(OBS_TIMES)))
        return clean + NOISE * jax.random.normal(key, clean.shape, clean.dtype)

    truth0 = jnp.asarray(truths)
    return {"truth0": truth0, "obs": jax.vmap(one)(truth0, keys)}


class Setting(eqx.Module):
    """What every window's problem shares: the observed points and ``B``."""

    operator: Mask
    background: DiagonalBackground

    def problem(self, window: dict, priors: tuple) -> StrongConstraint4DVar:
        """Strong-constraint 4DVar of the initial state of one window."""
        observations = Observations(
            window["obs"], None, OBS_TIMES, self.operator, ScalarNoise(NOISE)
        )
        return StrongConstraint4DVar(
            MODEL, observations, self.background, t0=0.0, priors=priors
        )


class StartedAt(AbstractProblem):
    """A problem whose inner solve starts from `start` (`fit` calls
    `first_guess`), here the window's Tikhonov analysis."""

    problem: StrongConstraint4DVar
    start: jax.Array

    def cost(self, x0):
        return self.problem.cost(x0)

    def first_guess(self):
        return self.start


def _cost(x0, problem):
    return problem.cost(x0)


@eqx.filter_jit
def analyse(setting: Setting, windows: dict, priors: tuple, starts, solver):
    """Analyses of all windows (``(w, N, N)``) and whether each solve converged.

    One window after another (`lax.map`): a `vmap` would step every window
    until the slowest had converged (L-BFGS with the learned prior takes 50 to
    500 steps), and XLA's CPU backend runs batched convolutions slowly; on two
    CPU cores it takes 3-4x as long.
    """

    def one(args):
        window, start = args
        problem = setting.problem(window, priors)
        start = problem.first_guess() if start is None else start
        sol = ax.argmin(_cost, start, problem, solver=solver, throw=False)
        return sol.value, sol.stats.converged

    return jax.lax.map(one, (windows, starts))


def rmse_per_window(analyses, windows) -> np.ndarray:
    """RMSE of each analysed initial state against its truth, ``(w,)``."""
    error = np.asarray(analyses) - np.asarray(windows["truth0"])
    return np.sqrt(np.mean(error**2, axis=(1, 2)))


def analysis_error(x0, params, window):
    """The outer loss: mean-square error of the analysed initial state."""
    return jnp.mean((x0 - window["truth0"]) ** 2)


def tune_tikhonov(setting: Setting, train: dict, steps: int):
    """The weight of `Tikhonov(order=2)` learnt by `fit` (from 10, in log)."""

    def problem_fn(params, window):
        prior = Tikhonov(jnp.exp(params["log_weight"]), order=2)
        return setting.problem(window, (prior,))

    result = fit(
        problem_fn,
        analysis_error,
        {"log_weight": jnp.asarray(np.log(10.0))},
        train,
        optimiser=optax.adam(0.2),
        solver=GAUSS_NEWTON,
        hypergradient=ax.Implicit(),
        steps=steps,
        batch_size=len(train["truth0"]),
    )
    return float(jnp.exp(result.params["log_weight"])), result


def fine_tuning_optimiser() -> optax.GradientTransformation:
    """Adam at `NETWORK_LEARNING_RATE` on the network's weights and at
    `WEIGHT_LEARNING_RATE` on ``log weight``."""

    def labels(params):
        network = jax.tree_util.tree_map(lambda _: "network", params["network"])
        return {"network": network, "log_weight": "weight"}

    return optax.multi_transform(
        {
            "network": optax.adam(NETWORK_LEARNING_RATE),
            "weight": optax.adam(WEIGHT_LEARNING_RATE),
        },
        labels,
    )


def fine_tune(setting, network, weight, train, starts, steps, batch_size, key):
    """The network's weights and ``log weight`` learnt end to end through the
    4DVar argmin; each window's solve starts from its Tikhonov analysis (then
    from its last analysis: `fit`'s warm starts)."""

    def problem_fn(params, window):
        prior = EnergyPrior(params["network"], jnp.exp(params["log_weight"]))
        return StartedAt(setting.problem(window, (prior,)), window["start"])

    return fit(
        problem_fn,
        analysis_error,
        {"network": network, "log_weight": jnp.asarray(np.log(weight))},
        {**train, "start": starts},
        optimiser=fine_tuning_optimiser(),
        solver=LBFGS,
        hypergradient=ax.Implicit(linear_solver=BACKWARD),
        steps=steps,
        batch_size=batch_size,
        key=key,
        progress=TqdmProgress(),
        # One window after another: 3x faster here than a `vmap` (see `analyse`).
        batching=Sequential(),
    )


def main(
    out: str | pathlib.Path = "assimilax-output", quick: bool = False, seed: int = 0
) -> dict:
    """Run the four methods, print the table, save ``NAME.nc`` and ``NAME.png``.

    Returns a dict: held-out RMSE per method, the learnt weights, the failed
    solves of fine-tuning (`fine_tuning_failures`), seconds.
    """
    start_time = time.perf_counter()

    def stamp() -> str:
        return f"[{time.perf_counter() - start_time:4.0f} s]"

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = dict(historical=3000, pretrain=2000, train=16, test=32, tune=30, ft=24)
    if quick:
        sizes = dict(historical=1000, pretrain=300, train=8, test=8, tune=15, ft=8)
    weights = (3000.0,) if quick else (3000.0, 10000.0)
    rng = np.random.default_rng(seed)
    historical = blob_fields(rng, sizes["historical"])
    train_truths = blob_fields(rng, sizes["train"])
    test_truths = blob_fields(rng, sizes["test"])
    operator = Mask(np.random.default_rng(seed + 1).random((N, N)) < OBSERVED)
    train = make_windows(train_truths, operator, seed + 11)
    test = make_windows(test_truths, operator, seed + 10)
    setting = Setting(
        operator,
        DiagonalBackground(
            jnp.asarray(historical.mean(0)), jnp.asarray(historical.std(0))
        ),
    )
    keys = jax.random.split(jax.random.key(seed), 3)

    print(f"{stamp()} 1. pretraining a denoiser on {sizes['historical']} past fields")
    network, pretraining = pretrain_prior(
        ConvDenoiser2D(width=16, depth=5, key=keys[0], dtype=jnp.float32),
        xr.DataArray(historical.astype(np.float32), dims=("sample", "x", "y")),
        objective=Denoising(noise_std=0.5),
        optimiser=optax.adam(optax.cosine_decay_schedule(2e-3, sizes["pretrain"])),
        steps=sizes["pretrain"],
        batch_size=16,
        key=keys[1],
        validation_every=max(sizes["pretrain"] // 10, 1),
    )
    network = Precision(network)
    print(
        "   validation loss (standardised units) "
        f"{pretraining.attrs['initial_validation_loss']:.4f} -> "
        f"{float(pretraining.validation_loss[-1]):.4f}"
    )
    print(f"{stamp()} 2. tuning the Tikhonov weight with fit (Implicit)")
    tikhonov_weight, _ = tune_tikhonov(setting, train, sizes["tune"])
    tikhonov = (Tikhonov(tikhonov_weight, order=2),)
    starts_train, _ = analyse(setting, train, tikhonov, None, GAUSS_NEWTON)
    starts_test, _ = analyse(setting, test, tikhonov, None, GAUSS_NEWTON)
    print(f"   weight {tikhonov_weight:.1f}")
    print(f"{stamp()} 3. zero-shot: choosing the prior weight on the training windows")
    scores = {}
    for weight in weights:
        prior = (EnergyPrior(network, weight),)
        xa, _ = analyse(setting, train, prior, starts_train, LBFGS)
        scores[weight] = float(np.mean(rmse_per_window(xa, train)))
        print(f"   weight {weight:g}: training RMSE {scores[weight]:.4f}")
    zero_shot_weight = min(scores, key=scores.get)
    ft_batch = max(sizes["train"] // 4, 1)
    print(f"{stamp()} 4. fine-tuning the network and its weight through the argmin")
    tuned = fine_tune(
        setting,
        network,
        zero_shot_weight,
        train,
        starts_train,
        sizes["ft"],
        ft_batch,
        keys[2],
    )
    tuned_weight = float(jnp.exp(tuned.params["log_weight"]))
    # Inner or backward solves that failed, in the steps and in the seeding
    # solves (one per training window) that start them.
    seeding_failures = int(tuned.history.attrs.get("initial_inner_failures", 0))
    step_failures = int(tuned.history["inner_failures"].sum())
    print(
        f"   training loss {float(tuned.history['loss'][0]):.5f} -> "
        f"{float(tuned.history['loss'][-1]):.5f} (batch means); solves not "
        f"converged: {step_failures} of {sizes['ft'] * ft_batch} (steps), "
        f"{seeding_failures} of {sizes['train']} (seeding)"
    )

    methods = {
        "no prior": ((), None, GAUSS_NEWTON),
        "Tikhonov (tuned by fit)": (tikhonov, None, GAUSS_NEWTON),
        "pretrained, zero-shot": (
            (EnergyPrior(network, zero_shot_weight),),
            starts_test,
            LBFGS,
        ),
        "pretrained, fine-tuned": (
            (EnergyPrior(tuned.params["network"], tuned_weight),),
            starts_test,
            LBFGS,
        ),
    }
    errors, examples, failures = {}, {}, {}
    for name, (priors, starts, solver) in methods.items():
        xa, converged = analyse(setting, test, priors, starts, solver)
        errors[name] = rmse_per_window(xa, test)
        examples[name] = np.asarray(xa[0])
        failures[name] = int(np.sum(~np.asarray(converged)))
    print(f"{stamp()} done")
    print(f"\nheld-out windows ({sizes['test']}): RMSE of the analysed initial state")
    print(f"{'prior':<26} {'RMSE':>7} {'± s.e.':>7} {'not conv.':>9}")
    for name, error in errors.items():
        se = error.std(ddof=1) / np.sqrt(error.size) if error.size > 1 else np.nan
        print(f"{name:<26} {error.mean():7.4f} {se:7.4f} {failures[name]:>9}")
    print(
        f"observation noise {NOISE}; Tikhonov weight {tikhonov_weight:.1f}; prior "
        f"weight {zero_shot_weight:g} (zero-shot) -> {tuned_weight:.1f} (fine-tuned)"
    )
    if any(failures.values()):
        print("warning: some solves did not converge (column 'not conv.')")

    names = list(methods)
    results = xr.Dataset(
        {
            "rmse": (("prior", "window"), np.stack([errors[m] for m in names])),
            "analysis": (("prior", "x", "y"), np.stack([examples[m] for m in names])),
            "truth": (("x", "y"), np.asarray(test["truth0"][0])),
            "obs": (
                ("x", "y"),
                np.where(operator.mask, np.asarray(test["obs"][0, 0]), np.nan),
            ),
            "fine_tuning_loss": (("step",), tuned.history["loss"].values),
        },
        # Not "method": `Dataset.sel(method=...)` is sel's own keyword.
        coords={"prior": names, "step": tuned.history["step"].values},
        attrs={
            "title": "plug-and-play prior in 4DVar, heat 2D",
            "tikhonov_weight": tikhonov_weight,
            "zero_shot_weight": zero_shot_weight,
            "fine_tuned_weight": tuned_weight,
            "observation_noise": NOISE,
        },
    )
    results.to_netcdf(out / f"{NAME}.nc")
    save_figure(_plot, results, out / f"{NAME}.png")
    numbers = {name: float(error.mean()) for name, error in errors.items()}
    numbers.update(
        tikhonov_weight=tikhonov_weight,
        zero_shot_weight=zero_shot_weight,
        fine_tuned_weight=tuned_weight,
        fine_tuning_failures=step_failures + seeding_failures,
        seconds=time.perf_counter() - start_time,
    )
    return numbers


def _plot(results: xr.Dataset, figure) -> None:
    panels = [("truth", results["truth"]), ("observed (t = 0)", results["obs"])]
    panels += [
        (str(p), results["analysis"].sel(prior=p)) for p in results["prior"].values
    ]
    axes = figure.subplots(1, len(panels))
    low, high = float(results["truth"].min()), float(results["truth"].max())
    for ax_, (title, field) in zip(axes, panels):
        ax_.imshow(field.values.T, origin="lower", vmin=low, vmax=high, cmap="magma")
        ax_.set_title(title, fontsize=8)
        ax_.set_xticks([])
        ax_.set_yticks([])
