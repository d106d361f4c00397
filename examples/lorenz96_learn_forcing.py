"""Learn the forcing F of Lorenz-96 through 4DVar from observations alone.

A twin experiment on the Sakov & Oke (2008) model: ``n = 40``, true ``F = 8``,
RK4 steps of 0.05. 16 windows, 2 time units apart, observe all 40 variables every
0.1 time units (2 steps) with unit noise. Each window's first 0.4 time units (4
observation times) are assimilated by strong-constraint 4DVar of the initial state
(L-BFGS; background = truth + N(0, 1), B = I); the next 0.6 (6 observation times)
are held out. The outer loss is unsupervised: the misfit of the forecast from the
analysis, run with the learnt ``F``, to the held-out observations. `fit` learns
``F`` from 6 with `Implicit` hypergradients (through the argmin, plus the
forecast's direct dependence on ``F``). Prints the learnt ``F`` and the outer loss
at the learnt and the true forcing; saves the learning curve
``lorenz96_learn_forcing.png`` and the history ``lorenz96_learn_forcing.nc``.

    python examples/lorenz96_learn_forcing.py [--out examples/output] [--quick]
"""

import argparse
import pathlib
import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jaxtyping import Array, Float  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.costs import StrongConstraint4DVar  # noqa: E402
from assimilax.dynamics import Lorenz96  # noqa: E402
from assimilax.learning import evaluate_outer_loss, fit  # noqa: E402
from assimilax.observations import Identity, Observations, ScalarNoise  # noqa: E402
from assimilax.plotting import fit_history  # noqa: E402
from assimilax.priors import DiagonalBackground  # noqa: E402


NAME = "lorenz96_learn_forcing"
N, DT, TRUE_F, START_F, NOISE = 40, 0.05, 8.0, 6.0, 1.0
ASSIMILATED = np.arange(1, 5) * 0.1  # the inner 4DVar's observation times
HELD_OUT = np.arange(5, 11) * 0.1  # the outer loss's: the forecast after it
SOLVER = ax.LBFGS(rtol=1e-8, max_steps=500)


def make_windows(num: int, seed: int = 0) -> dict:
    """`num` windows 2 time units apart on one truth on the attractor (``F = 8``).

    Returns arrays with a leading window axis: ``obs`` (num, 4, 40) and
    ``held_out`` (num, 6, 40), noisy observations at `ASSIMILATED` and
    `HELD_OUT`; ``xb`` (num, 40), the background (truth + N(0, 1)).
    """
    model = Lorenz96(n=N)
    keys = jax.random.split(jax.random.key(seed), 3)
    start = 8.0 + 0.01 * jax.random.normal(keys[0], (N,))
    on_attractor = model.integrate(start, np.arange(401.0) * DT)[-1]  # 20 units
    starts = model.integrate(on_attractor, np.arange(num) * 2.0)
    grid = np.concatenate([[0.0], ASSIMILATED, HELD_OUT])
    states = jax.vmap(lambda s: model.integrate(s, grid))(starts)[:, 1:]
    observed = states + NOISE * jax.random.normal(keys[1], states.shape)
    return {
        "obs": observed[:, : ASSIMILATED.size],
        "held_out": observed[:, ASSIMILATED.size :],
        "xb": starts + jax.random.normal(keys[2], starts.shape),
    }


def problem_fn(params: dict, window: dict) -> StrongConstraint4DVar:
    """Strong-constraint 4DVar of the initial state over the assimilated part."""
    observations = Observations(
        window["obs"], None, ASSIMILATED, Identity(), ScalarNoise(NOISE)
    )
    background = DiagonalBackground(window["xb"], 1.0)
    model = Lorenz96(n=N, F=params["F"])
    return StrongConstraint4DVar(model, observations, background, t0=0.0)


def held_out_misfit(
    x0: Float[Array, " 40"], params: dict, window: dict
) -> Float[Array, ""]:
    """The outer loss: mean-square misfit of the forecast from the analysed `x0`,
    run with ``params["F"]``, to the held-out observations."""
    times = np.concatenate([[0.0], HELD_OUT])
    forecast = Lorenz96(n=N, F=params["F"]).integrate(x0, times)[1:]
    return jnp.mean((forecast - window["held_out"]) ** 2)


def learn(windows: dict, steps: int, progress: ax.AbstractProgress = ax.NoProgress()):
    """`fit` of ``F`` from `START_F`, all windows in each batch."""
    return fit(
        problem_fn,
        held_out_misfit,
        {"F": jnp.asarray(START_F)},
        windows,
        optimiser=optax.adam(0.2, b1=0.5),
        solver=SOLVER,
        hypergradient=ax.Implicit(),
        steps=steps,
        batch_size=jax.tree.leaves(windows)[0].shape[0],
        progress=progress,
    )


def main(out="examples/output", quick=False, seed=0):
    """Learn ``F``, print a summary, save ``NAME.png`` and ``NAME.nc``.

    Returns a dict: the learnt ``F`` and its relative error, the outer loss at the
    learnt and the true ``F``, the inner-solve failures and the seconds taken.
    """
    start = time.perf_counter()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    windows = make_windows(16 if quick else 32, seed)
    steps = 40
    progress = ax.NoProgress() if quick else ax.TqdmProgress()
    result = learn(windows, steps, progress=progress)
    forcing = float(result.params["F"])
    numbers = {
        "F": forcing,
        "relative_error": forcing / TRUE_F - 1,
        "inner_failures": int(result.history["inner_failures"].sum()),
    }
    # The outer loss at the learnt and the true forcing, from cold solves.
    for name, params in (("learnt", result.params), ("true", {"F": TRUE_F})):
        losses = evaluate_outer_loss(
            problem_fn, held_out_misfit, params, windows, solver=SOLVER
        )
        numbers[f"loss_{name}"] = float(losses.mean())
    numbers["seconds"] = time.perf_counter() - start
    print(f"{'':<10} {'start':>8} {'learnt':>9} {'true':>8} {'error':>8}")
    print(
        f"{'F':<10} {START_F:8.4f} {forcing:9.4f} {TRUE_F:8.4f}"
        f" {numbers['relative_error']:8.2%}"
    )
    print(
        f"held-out misfit: {numbers['loss_learnt']:.5f} at the learnt, "
        f"{numbers['loss_true']:.5f} at the true forcing (noise variance {NOISE**2})"
    )
    print(
        f"{jax.tree.leaves(windows)[0].shape[0]} windows, {steps} outer steps, "
        f"{numbers['inner_failures']} inner failures, {numbers['seconds']:.1f} s"
    )
    history = result.history
    history.attrs = {"true_F": TRUE_F, "title": "Lorenz-96 forcing learnt by fit"}
    history.to_netcdf(out / f"{NAME}.nc")
    figure = fit_history(
        history, ["params.F"], truth={"params.F": TRUE_F}, title=history.attrs["title"]
    )
    figure.savefig(out / f"{NAME}.png", dpi=100)
    return numbers


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.quick, args.seed)
