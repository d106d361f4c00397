"""An amortised regularisation weight: a network maps a noisy signal to its own lambda.

One shared Tikhonov weight is a compromise when the noise level changes from
signal to signal. Here a small network ``g_phi`` maps two features of the noisy
signal ``y`` (the log of a robust noise estimate, ``median |D y| / (0.6745
sqrt 2)``, and the log of its standard deviation) to ``log lam(y)``, and it is
trained *through the argmin*:

    min_phi  mean_i |x*(y_i, exp g_phi(y_i)) - x_true_i|^2 / n
    x*(y, lam) = argmin_x 0.5 |x - y|^2 + 0.5 lam |D x|^2

(Gauss-Newton inner solves, `Implicit` hypergradients, `fit` over batches of
pairs).
Signals are piecewise constant (3-6 jumps) with a noise level drawn per signal,
log-uniform in [0.05, 0.5]. On held-out signals it is compared with the best
shared lam (tuned on the training pairs), with the seed's two-stage recipe (find
each training signal's best lam, then fit a regression of log lam on the same
features by least squares), and with the oracle (each held-out signal's own best
lam, which needs its clean signal). Prints the table and the gain over the
shared lam, saves ``amortised_regularisation.png``.

    python examples/amortised_regularisation.py [--out examples/output] [--quick]
"""

import argparse
import pathlib
import time

import jax


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jaxtyping import Array, Float  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.learning import fit, FitResult  # noqa: E402
from assimilax.priors import Tikhonov  # noqa: E402


NAME = "amortised_regularisation"
NOISE_RANGE = (0.05, 0.5)


def make_pairs(num: int, n: int, seed: int) -> dict:
    """``{"clean", "noisy", "noise"}``: piecewise-constant signals (3 to 6 jumps,
    N(0, 1) levels) and their noisy versions, with a noise std per signal."""
    rng = np.random.default_rng(seed)
    clean = np.empty((num, n))
    for i in range(num):
        jumps = int(rng.integers(3, 7))
        cuts = np.sort(rng.choice(np.arange(4, n - 4), size=jumps, replace=False))
        lengths = np.diff(np.concatenate([[0], cuts, [n]]))
        clean[i] = np.repeat(rng.normal(size=jumps + 1), lengths)
    noise = np.exp(rng.uniform(*np.log(NOISE_RANGE), size=num))
    noisy = clean + noise[:, None] * rng.normal(size=clean.shape)
    return {
        "clean": jnp.asarray(clean),
        "noisy": jnp.asarray(noisy),
        "noise": jnp.asarray(noise),
    }


def features(y: Float[Array, " n"]) -> Float[Array, " 2"]:
    """``(log noise estimate, log std)`` of a noisy signal.

    The noise estimate is the median absolute difference over 0.6745 sqrt 2: the
    differences of a piecewise-constant signal are pure noise except at the few
    jumps, which the median ignores.
    """
    sigma = jnp.median(jnp.abs(jnp.diff(y))) / (0.6745 * jnp.sqrt(2.0))
    return jnp.stack([jnp.log(sigma), jnp.log(jnp.std(y))])


# The features of a batch of signals, compiled once (eagerly, the median's sort
# and the small operations take a while).
batch_features = jax.jit(jax.vmap(features))


class WeightRegressor(eqx.Module):
    """``log lam = mlp((features(y) - shift) / scale)``.

    `shift` and `scale` standardise the features with training-set statistics;
    they are constants (`stop_gradient`), not learnt.
    """

    mlp: eqx.nn.MLP
    shift: Float[Array, " 2"]
    scale: Float[Array, " 2"]

    def __call__(self, y: Float[Array, " n"]) -> Float[Array, ""]:
        shift, scale = jax.lax.stop_gradient((self.shift, self.scale))
        return self.mlp((features(y) - shift) / scale)


def make_regressor(noisy: Float[Array, "num n"], key, width: int = 16):
    """A 2-16-16-1 tanh network, standardised on the features of `noisy`."""
    f = batch_features(noisy)
    mlp = eqx.nn.MLP(2, "scalar", width, 2, activation=jnp.tanh, key=key)
    return WeightRegressor(mlp, jnp.mean(f, axis=0), jnp.std(f, axis=0))


class TikhonovDenoising(ax.AbstractProblem):
    """``0.5 |x - y|^2 + 0.5 exp(log_lam) |D x|^2`` (the library's `Tikhonov`)."""

    y: Float[Array, " n"]
    log_lam: Float[Array, ""]

    def cost(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        prior = Tikhonov(jnp.exp(self.log_lam), order=1)
        return 0.5 * jnp.sum((x - self.y) ** 2) + prior.energy(x)

    def residuals(self, x: Float[Array, " n"]) -> tuple[Float[Array, "..."], ...]:
        """``r`` with ``cost = 0.5 |r|^2``, for `GaussNewton`."""
        prior = Tikhonov(jnp.exp(self.log_lam), order=1)
        return (x - self.y, *prior.residuals(x))

    def first_guess(self) -> Float[Array, " n"]:
        return self.y


def problem_fn(regressor: WeightRegressor, pair: dict) -> TikhonovDenoising:
    """Each signal's problem, with the weight the regressor gives it."""
    return TikhonovDenoising(pair["noisy"], regressor(pair["noisy"]))


def mse(x: Float[Array, " n"], params, pair: dict) -> Float[Array, ""]:
    del params
    return jnp.mean((x - pair["clean"]) ** 2)


# Residuals linear in x: one Gauss-Newton step with a tight CG solve is the
# minimiser.
SOLVER = ax.GaussNewton(
    residuals=lambda x, problem: problem.residuals(x),
    linear_solver=lx.CG(rtol=1e-12, atol=1e-12, max_steps=500),
    max_steps=5,
    rtol=1e-10,
)


def train(
    regressor: WeightRegressor,
    pairs: dict,
    *,
    steps: int,
    batch_size: int = 32,
    learning_rate: float = 1e-2,
) -> FitResult:
    """`fit` of the network through the argmin (Adam, cosine decay)."""
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05)
    return fit(
        problem_fn,
        mse,
        regressor,
        pairs,
        optimiser=optax.adam(schedule),
        solver=SOLVER,
        hypergradient=ax.Implicit(),
        steps=steps,
        batch_size=batch_size,
    )


@eqx.filter_jit
def log_lams(regressor: WeightRegressor, noisy: Float[Array, "num n"]):
    """The regressor's ``log lam`` for every row of `noisy`."""
    return jax.vmap(regressor)(noisy)


def tikhonov_errors(pairs: dict, lams: np.ndarray) -> np.ndarray:
    """Per-signal mean squared error of ``(I + lam DᵀD)⁻¹ y``, shape
    ``(len(lams), num)`` (closed form, eigenvectors of ``DᵀD``). A 2D `lams` of
    shape ``(len, num)`` gives each signal its own weights."""
    n = pairs["noisy"].shape[-1]
    difference = np.diff(np.eye(n), axis=0)
    s, v = np.linalg.eigh(difference.T @ difference)
    c, t = np.asarray(pairs["noisy"]) @ v, np.asarray(pairs["clean"]) @ v
    lams = np.asarray(lams, float)
    lams = np.broadcast_to(
        lams[:, None] if lams.ndim == 1 else lams, (len(lams), len(c))
    )
    shrink = 1.0 / (1.0 + lams[:, :, None] * s)
    return np.mean((shrink * c[None] - t[None]) ** 2, axis=2)


def main(
    out: pathlib.Path | str = "examples/output", quick: bool = False, seed: int = 0
) -> dict:
    """Compare the four ways of choosing lam on held-out signals; print, plot.

    Returns a dict: ``test_mse`` per method (``noisy``, ``shared``, ``two_stage``,
    ``amortised``, ``oracle``), ``gain_over_shared`` (relative reduction of the
    held-out MSE by the amortised weights), ``gap_closed`` (the fraction of the
    shared-to-oracle gap it closes), ``shared_lam`` and ``seconds``.
    """
    start = time.perf_counter()
    num, n = (64, 64) if quick else (256, 128)
    steps = 80 if quick else 200
    train_pairs = make_pairs(num, n, seed)
    test_pairs = make_pairs(num, n, seed + 1)
    grid = np.exp(np.linspace(np.log(1e-3), np.log(1e3), 601))
    # Closed-form baselines.
    train_errors = tikhonov_errors(train_pairs, grid)  # (grid, num)
    test_errors = tikhonov_errors(test_pairs, grid)
    shared = float(grid[int(np.argmin(train_errors.mean(axis=1)))])
    oracle_train = np.log(grid[np.argmin(train_errors, axis=0)])
    # The two-stage recipe: regress each training signal's best log lam on the
    # features (least squares, with an intercept).
    design = np.asarray(batch_features(train_pairs["noisy"]))
    design = np.column_stack([design, np.ones(num)])
    coefficients = np.linalg.lstsq(design, oracle_train, rcond=None)[0]
    test_design = np.asarray(batch_features(test_pairs["noisy"]))
    two_stage = np.exp(np.column_stack([test_design, np.ones(num)]) @ coefficients)
    # End to end: the network trained through the argmin.
    tick = time.perf_counter()
    regressor = make_regressor(train_pairs["noisy"], jr.key(seed))
    result = train(regressor, train_pairs, steps=steps)
    seconds = time.perf_counter() - tick
    amortised = np.exp(np.asarray(log_lams(result.params, test_pairs["noisy"])))
    test_mse = {
        "noisy": float(jnp.mean((test_pairs["noisy"] - test_pairs["clean"]) ** 2)),
        "shared": float(test_errors[int(np.argmin(train_errors.mean(axis=1)))].mean()),
        "two_stage": float(tikhonov_errors(test_pairs, two_stage[None])[0].mean()),
        "amortised": float(tikhonov_errors(test_pairs, amortised[None])[0].mean()),
        "oracle": float(test_errors.min(axis=0).mean()),
    }
    numbers = {
        "test_mse": test_mse,
        "shared_lam": shared,
        "gain_over_shared": 1.0 - test_mse["amortised"] / test_mse["shared"],
        "gap_closed": (test_mse["shared"] - test_mse["amortised"])
        / (test_mse["shared"] - test_mse["oracle"]),
        "inner_failures": int(result.history["inner_failures"].sum()),
        "num_train": num,
        "num_test": num,
        "n": n,
        "steps": steps,
        "train_seconds": seconds,
    }
    numbers["seconds"] = time.perf_counter() - start

    low, high = NOISE_RANGE
    print(
        f"Tikhonov denoising, {num} training / {num} held-out piecewise-constant "
        f"signals (n={n}), noise std per signal in [{low}, {high}]"
    )
    print(f"  {'how lam is chosen':<46}{'held-out MSE':>13}")
    labels = {
        "noisy": "no denoising",
        "shared": f"one shared lam = {shared:.3f} (best on training)",
        "two_stage": "two-stage: regress per-signal best log lam",
        "amortised": "amortised network, through the argmin",
        "oracle": "oracle: each signal's own best lam",
    }
    for name, label in labels.items():
        print(f"  {label:<46}{test_mse[name]:>13.5f}")
    print(
        f"  amortised vs shared: {numbers['gain_over_shared']:.1%} lower MSE, "
        f"{numbers['gap_closed']:.0%} of the gap to the oracle closed; training "
        f"{seconds:.1f} s ({steps} steps), {numbers['seconds']:.1f} s in all"
    )
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    oracle_test = grid[np.argmin(test_errors, axis=0)]
    _save(
        out / f"{NAME}.png",
        (np.asarray(test_pairs["noise"]), oracle_test, amortised, two_stage, shared),
    )
    return numbers


def _draw(data, figure) -> None:
    noise, oracle, amortised, two_stage, shared = data
    axes = figure.subplots(1, 1)
    axes.loglog(noise, oracle, "k.", ms=4, label="oracle (best per signal)")
    axes.loglog(noise, amortised, "C3.", ms=4, label="amortised network")
    axes.loglog(noise, two_stage, "C2.", ms=3, alpha=0.6, label="two-stage regression")
    axes.axhline(shared, color="C0", label="shared")
    axes.set(xlabel="noise std of the signal", ylabel="lam", title="held-out signals")
    axes.legend(fontsize=8)


def _save(path: pathlib.Path, data) -> None:
    # matplotlib is optional: no plot without it.
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(f"matplotlib is not installed: no plot ({path.name}).")
        return
    figure = Figure(figsize=(6, 4), layout="constrained")
    _draw(data, figure)
    figure.savefig(path, dpi=100)


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output", help="output directory")
    parser.add_argument("--quick", action="store_true", help="smaller problem")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main(**vars(_parse()))
