"""A learned-gradient solver (4DVarNet style) against tuned gradient descent and L-BFGS.

Windows of a 1D heat equation (n=64 on a periodic domain of length 2 pi,
kappa = 0.5), each observed at every 4th point at 5 times over [0, 0.2] with
noise 0.05; the truths are drawn from the background law ``B`` (unit std,
correlation length 4 grid points, `DiffusionBackground`). The cost is
strong-constraint 4DVar of the initial state in control-variable form
(``x0 = S v``, `ControlVariable`); every solver starts from ``v = 0`` (the
background). A `LearnedGradientSolver` of K = 8 steps (a ConvLSTM on the
normalised cost gradient, 8 channels, kernel 9) is trained by unrolling on 256
windows to bring ``x0`` close to the truth (Adam, 1000 steps of 32 windows).
On 64 held-out windows it is compared with gradient descent (the fixed step tuned
on the training windows for K steps, and the best step of a grid for longer
runs) and with L-BFGS, by the mean squared error of the analysed initial state.
Prints a table and saves a plot of error against iterations.

    python examples/learned_gradient_solver.py [--out examples/output] [--quick]
"""

import argparse
import pathlib
import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.costs import ControlVariable, StrongConstraint4DVar  # noqa: E402
from assimilax.demos._plots import save_figure  # noqa: E402
from assimilax.dynamics import Heat1D  # noqa: E402
from assimilax.learning import (  # noqa: E402
    LearnedGradientSolver,
    train_learned_gradient_solver,
)
from assimilax.observations import Observations, ScalarNoise, Stations  # noqa: E402
from assimilax.priors import DiffusionBackground  # noqa: E402


NAME = "learned_gradient_solver"
N, LENGTH, KAPPA, NOISE = 64, 2 * np.pi, 0.5, 0.05
OBS_TIMES = np.arange(0.0, 0.21, 0.05)
STATIONS = Stations.every(4, N)
MODEL = Heat1D(n=N, kappa=KAPPA, length=LENGTH)
K = 8
LONG_GD, LONG_LBFGS = 1000, 60


def background() -> DiffusionBackground:
    """``B``: unit std, correlation length 4 grid points (the truths' law too)."""
    return DiffusionBackground(jnp.zeros(N), 1.0, 4.0)


def make_windows(num: int, key) -> tuple[jax.Array, jax.Array]:
    """``(truths, observations)``: initial states drawn from ``B``, shape
    ``(num, N)``, and their noisy station values, shape ``(num, 5, N // 4)``."""
    key_truth, key_noise = jr.split(key)
    truths = jax.vmap(background().to_state)(jr.normal(key_truth, (num, N)))
    states = jax.vmap(lambda x0: MODEL.integrate(x0, jnp.asarray(OBS_TIMES)))(truths)
    clean = states[:, :, ::4]
    return truths, clean + NOISE * jr.normal(key_noise, clean.shape)


def problem(obs) -> StrongConstraint4DVar:
    """The 4DVar problem of one window (control ``v``, ``x0 = S v``)."""
    observations = Observations(obs, None, OBS_TIMES, STATIONS, ScalarNoise(NOISE))
    return StrongConstraint4DVar(
        MODEL, observations, background(), t0=0.0, control=ControlVariable()
    )


def cost(v, obs):
    """The 4DVar cost ``U(v)`` of the window observed as `obs`."""
    return problem(obs).cost(v)


def state_error(v, truth, obs):
    """Mean squared error of the analysed initial state ``S v`` to the truth."""
    return jnp.mean((problem(obs).to_state(v) - truth) ** 2)


def solver_curve(solver, num_steps: int, truths, observations) -> np.ndarray:
    """The mean error after each of `num_steps` steps of an `assimilax` solver from
    ``v = 0`` (its own `init`/`step`, as `argmin` runs them), shape
    ``(num_steps,)``."""

    def one(truth, obs):
        v0 = jnp.zeros(N)

        def advance(carry, _):
            v, state = solver.step(cost, carry[0], obs, carry[1])
            return (v, state), state_error(v, truth, obs)

        _, errors = jax.lax.scan(
            advance, (v0, solver.init(cost, v0, obs)), None, length=num_steps
        )
        return errors

    return np.asarray(jnp.mean(jax.jit(jax.vmap(one))(truths, observations), axis=0))


def gd_errors(steps, num_steps: int, truths, observations) -> np.ndarray:
    """Errors of gradient descent for each step size in `steps`, shape
    ``(len(steps), num_steps)``."""

    @jax.jit
    def curves(steps):
        def per_step(lr):
            solver = ax.GradientDescent(learning_rate=lr, max_steps=num_steps)

            def one(truth, obs):
                v0 = jnp.zeros(N)

                def advance(carry, _):
                    v, state = solver.step(cost, carry[0], obs, carry[1])
                    return (v, state), state_error(v, truth, obs)

                init = (v0, solver.init(cost, v0, obs))
                return jax.lax.scan(advance, init, None, length=num_steps)[1]

            return jnp.mean(jax.vmap(one)(truths, observations), axis=0)

        return jax.lax.map(per_step, steps)

    return np.asarray(curves(jnp.asarray(steps)))


def largest_curvature(obs) -> float:
    """The largest Hessian eigenvalue of the cost (by power iteration). The cost
    is quadratic with a Hessian that does not depend on the data."""

    def hvp(u):
        return jax.jvp(lambda v: jax.grad(cost)(v, obs), (jnp.zeros(N),), (u,))[1]

    def power(u, _):
        u = hvp(u)
        return u / jnp.linalg.norm(u), None

    u, _ = jax.lax.scan(power, jr.normal(jr.key(1), (N,)), None, length=300)
    return float(u @ hvp(u))


def converged_error(truths, observations) -> float:
    """The mean error of the 4DVar minimisers (L-BFGS to a relative gradient of
    1e-10 through `argmin`; it raises if a solve does not converge)."""

    @jax.jit
    def errors(truths, observations):
        def one(truth, obs):
            solver = ax.LBFGS(rtol=1e-10, max_steps=1000)
            v = ax.argmin(cost, jnp.zeros(N), obs, solver=solver).value
            return state_error(v, truth, obs)

        return jnp.mean(jax.vmap(one)(truths, observations))

    return float(errors(truths, observations))


def first_reaching(curve: np.ndarray, level: float) -> int | None:
    """The first iteration (1-based) at which `curve` is at or below `level`."""
    hits = np.flatnonzero(curve <= level)
    return int(hits[0]) + 1 if hits.size else None


def main(
    out: pathlib.Path | str = "examples/output", quick: bool = False, seed: int = 0
) -> dict:
    """Run the comparison, print the table, save ``NAME.png``.

    Returns a dict with the held-out error curves (``learned``, ``gd``, ``lbfgs``:
    error after each iteration), the tuned GD step, the iterations GD and L-BFGS
    need to reach the learned solver's error, the converged 4DVar error, the
    background error, sizes and seconds.
    """
    start = time.perf_counter()
    num_train, num_test = (64, 32) if quick else (256, 64)
    steps, batch_size = (150, 16) if quick else (1000, 32)
    hidden, kernel = (4, 5) if quick else (8, 9)
    key_train, key_test, key_net, key_batches = jr.split(jr.key(seed), 4)
    train_truths, train_obs = make_windows(num_train, key_train)
    test_truths, test_obs = make_windows(num_test, key_test)

    # Gradient descent: the fixed step that is best after K steps on the training
    # windows, from a grid below the stability limit 2 / L.
    curvature = largest_curvature(train_obs[0])
    grid = np.linspace(0.05, 1.99, 98) / curvature
    tuned = grid[np.argmin(gd_errors(grid, K, train_truths, train_obs)[:, -1])]
    gd = gd_errors([tuned], K, test_truths, test_obs)[0]
    # Longer runs: the best of a few steps at each iteration count.
    coarse = np.array([0.5, 1.0, 1.5, 1.75, 1.9, 1.98]) / curvature
    gd_long = gd_errors(coarse, LONG_GD, test_truths, test_obs).min(axis=0)
    lbfgs = solver_curve(ax.LBFGS(), LONG_LBFGS, test_truths, test_obs)
    converged = converged_error(test_truths, test_obs)

    solver = LearnedGradientSolver(
        K,
        learning_rate=float(tuned),
        hidden_size=hidden,
        kernel_size=kernel,
        key=key_net,
    )
    solver, losses = train_learned_gradient_solver(
        solver,
        cost,
        jnp.zeros((num_train, N)),
        train_obs,
        train_truths,
        optimiser=optax.adam(optax.cosine_decay_schedule(1e-2, steps, alpha=0.05)),
        steps=steps,
        batch_size=batch_size,
        key=key_batches,
        loss=state_error,
    )

    @jax.jit
    def learned_curve(solver, truths, observations):
        def one(truth, obs):
            vs = solver.iterates(cost, jnp.zeros(N), obs)
            return jax.vmap(lambda v: state_error(v, truth, obs))(vs)

        return jnp.mean(jax.vmap(one)(truths, observations), axis=0)

    learned = np.asarray(learned_curve(solver, test_truths, test_obs))
    numbers = {
        "learned": learned,
        "gd": gd,
        "lbfgs": lbfgs[:K],
        "gd_step_times_L": float(tuned * curvature),
        "gd_steps_to_match": first_reaching(gd_long, learned[-1]),
        "lbfgs_steps_to_match": first_reaching(lbfgs, learned[-1]),
        "converged": converged,
        "background": float(jnp.mean(test_truths**2)),
        "train_loss_first_last": (float(losses[0]), float(losses[-1])),
        "num_train": num_train,
        "num_test": num_test,
        "train_steps": steps,
    }
    numbers["seconds"] = time.perf_counter() - start

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_figure(_plot, (numbers, gd_long, lbfgs), out / f"{NAME}.png")
    _print(numbers)
    return numbers


def _print(numbers: dict) -> None:
    print(
        f"Heat 1D 4DVar (n={N}, stations every 4th point, 5 times, noise {NOISE}): "
        f"initial-state MSE on {numbers['num_test']} held-out windows"
    )
    print(f"  {'iteration':<11}{'GD (tuned)':>12}{'L-BFGS':>12}{'learned':>12}")
    for k in range(K):
        print(
            f"  {k + 1:<11}{numbers['gd'][k]:>12.4f}{numbers['lbfgs'][k]:>12.4f}"
            f"{numbers['learned'][k]:>12.4f}"
        )
    print(
        f"  background {numbers['background']:.4f}; converged 4DVar "
        f"{numbers['converged']:.4f}; GD step {numbers['gd_step_times_L']:.3f} / L"
    )
    print(
        f"  to reach the learned solver's {K}-step error: GD "
        f"{numbers['gd_steps_to_match']} steps (best step per budget, <= {LONG_GD}),"
        f" L-BFGS {numbers['lbfgs_steps_to_match']} iterations; "
        f"{numbers['seconds']:.1f} s"
    )


def _plot(data, figure) -> None:
    numbers, gd_long, lbfgs = data
    left = figure.subplots()
    left.loglog(np.arange(1, len(gd_long) + 1), gd_long, label="GD, best step")
    left.loglog(np.arange(1, len(lbfgs) + 1), lbfgs, label="L-BFGS")
    left.loglog(np.arange(1, K + 1), numbers["learned"], "o-", label="learned")
    left.axhline(numbers["converged"], color="grey", ls="--", lw=1, label="converged")
    left.set(
        xlabel="iterations",
        ylabel="held-out MSE of the initial state",
        title="learned-gradient solver against GD and L-BFGS",
    )
    left.legend()


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output", help="output directory")
    parser.add_argument("--quick", action="store_true", help="smaller, shorter run")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main(**vars(_parse()))
