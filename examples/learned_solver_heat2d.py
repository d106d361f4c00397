"""A learned-gradient solver (4DVarNet) trained jointly with a learned prior on 2D
heat, against L-BFGS on the same cost, on held-out windows.

The setting of the plug-and-play demo (`assimilax.demos.pnp`): `Heat2D` on a 32x32
periodic grid, states made of Gaussian blobs, 15% of the grid observed at ``t = 0``
and ``0.05`` with noise 0.05, strong-constraint 4DVar of the initial state from the
climatological background. The prior is 4DVarNet's: ``EnergyPrior(phi, w)`` with
``phi`` a `ConvAutoencoder2D`, pretrained on historical fields. The solver is a
`LearnedGradientDescent` with a 2D `ConvLSTMModulator` and ``K`` steps. Both are then
trained together through `argmin` (`train_learned_solver`, `Unrolled()`) on training
windows, against their truths; and, for comparison, the solver alone on the
fixed cost of the pretrained prior. The gradient step is chosen on the training
windows; validation windows report the training's gain.

On held-out windows (other truths, other noise), with the trained cost, the table
gives the learned solver's analysis RMSE after its ``K`` steps, and the L-BFGS
iterations (from the same first guess, on the same cost) needed to reach that
RMSE, with the wall time of each (compiled once, then timed), and the converged
L-BFGS analysis.

    python examples/learned_solver_heat2d.py [--quick] [--seed 0]

About 5 minutes on two CPU cores; ``--quick`` about 2 (smaller sizes, same code).
"""

import argparse
import time

import equinox as eqx
import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from assimilax import bilevel as ax  # noqa: E402
from assimilax.costs import ControlVariable, StrongConstraint4DVar  # noqa: E402
from assimilax.demos.pnp import (  # noqa: E402
    blob_fields,
    make_windows,
    MODEL,
    N,
    NOISE,
    OBS_TIMES,
    OBSERVED,
)
from assimilax.learning import (  # noqa: E402
    Autoencoding,
    ConvLSTMModulator,
    LearnedGradientDescent,
    pretrain_prior,
    train_learned_solver,
)
from assimilax.observations import Mask, Observations, ScalarNoise  # noqa: E402
from assimilax.priors import (  # noqa: E402
    ConvAutoencoder2D,
    DiagonalBackground,
    EnergyPrior,
    Precision,
)


K = 10  # the learned solver's steps
SIZES = dict(historical=1000, pretrain=600, train=32, val=8, test=32, steps=40)
QUICK = dict(historical=300, pretrain=150, train=8, val=4, test=8, steps=6)
BATCH = 4
LEARNING_RATES = (0.02, 0.03, 0.05, 0.07)
LBFGS_CURVE = 100  # L-BFGS iterations recorded on the held-out windows


def cost(x0, problem):
    return problem.cost(x0)


def rmse(x, windows):
    """RMSE of each analysed initial state against its truth, ``(w,)``."""
    return jnp.sqrt(jnp.mean((x - windows["truth0"]) ** 2, axis=(1, 2)))


def analysis_error(x0, params, window):
    """The outer loss: mean-square error of the analysed initial state."""
    del params
    return jnp.mean((x0 - window["truth0"]) ** 2)


def problem_fn(operator, background):
    """``(params, window) -> problem``: strong-constraint 4DVar of the window's
    initial state in control-variable form (``x0 = xb + std * v``), with the
    learnable energy prior ``params``."""

    def problem(params, window):
        prior = EnergyPrior(params["network"], jnp.exp(params["log_weight"]))
        observations = Observations(
            window["obs"], None, OBS_TIMES, operator, ScalarNoise(NOISE)
        )
        return StrongConstraint4DVar(
            MODEL,
            observations,
            background,
            t0=0.0,
            priors=(prior,),
            control=ControlVariable(),
        )

    return problem


@eqx.filter_jit
def solve_all(problems, params, windows, solver):
    """Analyses ``(w, N, N)`` of all windows (one after another) by `solver`,
    and each solve's step count."""

    def one(window):
        problem = problems(params, window)
        sol = ax.argmin(
            cost, problem.first_guess(), problem, solver=solver, throw=False
        )
        return problem.to_state(sol.value), sol.stats.num_steps

    return jax.lax.map(one, windows)


@eqx.filter_jit
def lbfgs_errors(problems, params, windows, num_steps):
    """The mean RMSE over `windows` of every L-BFGS iterate, ``(num_steps + 1,)``:
    `LBFGS.step` scanned (no convergence test), from the first guess."""
    solver = ax.LBFGS(rtol=0.0, max_steps=num_steps)

    def one(window):
        problem = problems(params, window)
        x = problem.first_guess()
        state = solver.init(cost, x, problem)

        def body(carry, _):
            x, state = solver.step(cost, *carry[:1], problem, carry[1])
            return (x, state), x

        _, xs = jax.lax.scan(body, (x, state), None, length=num_steps)
        xs = jax.vmap(problem.to_state)(jnp.concatenate([x[None], xs]))
        error = xs - window["truth0"][None]
        return jnp.sqrt(jnp.mean(error**2, axis=(1, 2)))

    return jnp.mean(jax.lax.map(one, windows), axis=0)


def timed(fn, *args):
    """``(output, compile_s, run_s)``: a first call (compiles and runs), then a
    timed second call of the compiled program."""
    jax.clear_caches()  # so that the first call compiles
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    run = time.perf_counter() - start
    return out, first - run, run


def main(out="examples/output", quick=False, seed=0):
    """Train, compare, print the table; returns its numbers."""
    sizes = QUICK if quick else SIZES
    clock = time.perf_counter()

    def stamp(message):
        print(f"[{time.perf_counter() - clock:4.0f} s] {message}")

    rng = np.random.default_rng(seed)
    historical = blob_fields(rng, sizes["historical"])
    truths = {k: blob_fields(rng, sizes[k]) for k in ("train", "val", "test")}
    operator = Mask(np.random.default_rng(seed + 1).random((N, N)) < OBSERVED)
    windows = {
        k: make_windows(v, operator, seed + 10 + i)
        for i, (k, v) in enumerate(truths.items())
    }
    background_xb = jnp.asarray(historical.mean(0))
    background = DiagonalBackground(background_xb, jnp.asarray(historical.std(0)))
    problems = problem_fn(operator, background)
    keys = jax.random.split(jax.random.key(seed), 4)

    network, _ = pretrain_prior(
        ConvAutoencoder2D(
            width=8, latent_channels=4, depth=1, key=keys[0], dtype=jnp.float32
        ),
        historical.astype(np.float32),
        objective=Autoencoding(),
        optimiser=optax.adam(optax.cosine_decay_schedule(3e-3, sizes["pretrain"])),
        steps=sizes["pretrain"],
        batch_size=16,
        key=keys[1],
    )
    params = {"network": Precision(network), "log_weight": jnp.asarray(np.log(30.0))}
    stamp("pretrained the autoencoder")

    # The gradient term's initial step: the best of a grid for K steps of
    # gradient descent (the untrained solver) on the training windows.
    modulator = ConvLSTMModulator(2, hidden_size=8, kernel_size=3, key=keys[2])
    train_rmse = {}
    for lr in LEARNING_RATES:
        solver = LearnedGradientDescent(modulator, learning_rate=lr, max_steps=K)
        xa, _ = solve_all(problems, params, windows["train"], solver)
        train_rmse[lr] = float(jnp.mean(rmse(xa, windows["train"])))
    lr = min(train_rmse, key=train_rmse.get)
    untrained = LearnedGradientDescent(modulator, learning_rate=lr, max_steps=K)
    stamp(f"gradient step {lr} (training RMSE after {K} steps: {train_rmse})")

    # (a) 4DVarNet: the prior and the solver trained together; (b) the solver
    # alone, on the fixed cost of the pretrained prior.
    pretrained = params
    runs = {}
    for scheme, trainable in (("joint", pretrained), ("solver only", None)):
        if trainable is None:

            def scheme_problems(_, window):
                return problems(pretrained, window)
        else:
            scheme_problems = problems
        solver, trained, losses = train_learned_solver(
            untrained,
            trainable,
            scheme_problems,
            analysis_error,
            windows["train"],
            optimiser=optax.adam(optax.cosine_decay_schedule(1e-2, sizes["steps"])),
            steps=sizes["steps"],
            batch_size=BATCH,
            key=keys[3],
            hypergradient=ax.Unrolled(),
        )
        params = pretrained if trained is None else trained
        xa, _ = solve_all(problems, params, windows["val"], untrained)
        val_before = float(jnp.mean(rmse(xa, windows["val"])))
        xa, _ = solve_all(problems, params, windows["val"], solver)
        val_after = float(jnp.mean(rmse(xa, windows["val"])))
        stamp(
            f"trained ({scheme}, {sizes['steps']} steps): validation RMSE of "
            f"{K} steps, untrained solver {val_before:.4f}, trained {val_after:.4f}"
        )
        runs[scheme] = (solver, params)

    # Held-out windows: each learned solver on its cost, then L-BFGS on the same
    # cost, from the same first guess.
    test = windows["test"]
    background = float(jnp.mean(rmse(jnp.broadcast_to(background_xb, (1, N, N)), test)))
    print(f"\nheld-out windows: {sizes['test']}; background RMSE {background:.4f}")
    print("| cost (prior) | solver | iterations | RMSE | compile (s) | run (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    results = {}
    for scheme, (solver, params) in runs.items():
        rows = compare(problems, params, untrained, solver, test)
        for name, steps, error, compile_s, run_s in rows:
            print(
                f"| {scheme} | {name} | {steps} | {error:.4f} | {compile_s:.1f} | "
                f"{run_s:.2f} |"
            )
        results[scheme] = rows
    stamp("done")
    return dict(background=background, **results)


def compare(problems, params, untrained, solver, test):
    """Rows ``(solver, iterations, RMSE, compile s, run s)`` on the held-out
    windows `test`, all on the cost of `params`: gradient descent (the untrained
    solver), the learned solver, L-BFGS to the learned solver's RMSE (the first
    iteration at or below it, if any within `LBFGS_CURVE`), L-BFGS converged."""
    (xa, _), compile_s, run_s = timed(solve_all, problems, params, test, untrained)
    rows = [("gradient descent", K, float(jnp.mean(rmse(xa, test))), compile_s, run_s)]
    (xa, _), compile_s, run_s = timed(solve_all, problems, params, test, solver)
    learned = float(jnp.mean(rmse(xa, test)))
    rows.append(("learned", K, learned, compile_s, run_s))
    curve = np.asarray(lbfgs_errors(problems, params, test, LBFGS_CURVE))
    reached = np.flatnonzero(curve <= learned)
    if reached.size:
        lbfgs = ax.LBFGS(rtol=0.0, max_steps=max(int(reached[0]), 1))
        (xa, _), compile_s, run_s = timed(solve_all, problems, params, test, lbfgs)
        error = float(jnp.mean(rmse(xa, test)))
        rows.append(("L-BFGS to that RMSE", int(reached[0]), error, compile_s, run_s))
    else:
        best = f"never within {LBFGS_CURVE} (best {curve.min():.4f})"
        rows.append(
            ("L-BFGS to that RMSE", best, float("nan"), float("nan"), float("nan"))
        )
    converged = ax.LBFGS(rtol=1e-5, max_steps=500)
    (xa, steps), compile_s, run_s = timed(solve_all, problems, params, test, converged)
    error = float(jnp.mean(rmse(xa, test)))
    mean_steps = f"{float(np.mean(np.asarray(steps))):.1f} (mean)"
    rows.append(("L-BFGS converged (rtol 1e-5)", mean_steps, error, compile_s, run_s))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.out, args.quick, args.seed)
