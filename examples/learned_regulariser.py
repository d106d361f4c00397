"""Learn a regulariser: a convex fields-of-experts prior trained bilevel on clean pairs.

The regulariser is a bank of K learned convolution filters ``f_k`` (width 5),
each with a learned weight and a learned smoothing scale,

    R_theta(x) = sum_k exp(a_k) sum_i rho(( f_k * x )_i; exp(e_k)),
    rho(z; eps) = sqrt(z^2 + eps^2) - eps,

a smoothed, learned total variation (``rho`` is ~|z| for ``|z| >> eps`` and
~z^2 / (2 eps) below: the prior contains both TV-like and Tikhonov-like terms,
and convex for any filters). Denoising is ``x*(y, theta) = argmin_x 0.5 |x -
y|^2 + R_theta(x)`` (L-BFGS), and `fit` trains ``theta`` (filters from random
zero-mean initial values, weights, scales) on the mean squared error of
``x*`` against the clean signal, with `Implicit` hypergradients.

Signals are piecewise smooth (2-4 jumps plus three random sinusoids), noise
std 0.2. The baselines are tuned on the same training pairs: Tikhonov
``0.5 lam |D x|^2`` (closed form, best lam) and TV ``lam |D x|_1`` (Condat-Vu,
best lam of a grid). Prints training and held-out errors, saves
``learned_regulariser.png`` (the learnt filters and a held-out signal).

    python examples/learned_regulariser.py [--out examples/output] [--quick]
"""

import argparse
import pathlib
import time

import jax


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jaxtyping import Array, Float  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.learning import fit, FitResult  # noqa: E402


NAME = "learned_regulariser"
NOISE = 0.2


def piecewise_smooth(rng: np.random.Generator, num: int, n: int) -> np.ndarray:
    """`num` signals of length `n`: 2 to 4 jumps between N(0, 1) levels, plus
    sinusoids of 1, 2 and 3 periods with N(0, 1/f) amplitudes and random phases."""
    t = np.arange(n) / n
    out = np.empty((num, n))
    for i in range(num):
        jumps = int(rng.integers(2, 5))
        cuts = np.sort(rng.choice(np.arange(6, n - 6), size=jumps, replace=False))
        lengths = np.diff(np.concatenate([[0], cuts, [n]]))
        blocks = np.repeat(rng.normal(size=jumps + 1), lengths)
        waves = sum(
            rng.normal() / f * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            for f in (1, 2, 3)
        )
        out[i] = blocks + waves
    return out


def make_pairs(num: int, n: int, seed: int, noise: float = NOISE) -> dict:
    """``{"clean", "noisy"}`` of shape ``(num, n)``."""
    rng = np.random.default_rng(seed)
    clean = piecewise_smooth(rng, num, n)
    noisy = clean + noise * rng.normal(size=clean.shape)
    return {"clean": jnp.asarray(clean), "noisy": jnp.asarray(noisy)}


class FieldsOfExperts(eqx.Module):
    """``R(x) = sum_k exp(log_weights_k) sum_i rho((f_k * x)_i; exp(log_eps_k))``.

    ``f_k * x`` is the 'valid' correlation of ``x`` with the k-th row of
    `filters`; ``rho(z; eps) = sqrt(z^2 + eps^2) - eps`` (convex, smooth).
    """

    filters: Float[Array, "experts width"]
    log_weights: Float[Array, " experts"]
    log_eps: Float[Array, " experts"]

    @classmethod
    def random(
        cls, rng: np.random.Generator, experts: int = 4, width: int = 5
    ) -> "FieldsOfExperts":
        """Zero-mean unit-norm random filters (constants cost nothing from the
        start), weights 0.3 and scales 0.1."""
        filters = rng.normal(size=(experts, width))
        filters -= filters.mean(axis=1, keepdims=True)
        filters /= np.linalg.norm(filters, axis=1, keepdims=True)
        return cls(
            jnp.asarray(filters),
            jnp.full(experts, np.log(0.3)),
            jnp.full(experts, np.log(0.1)),
        )

    def responses(self, x: Float[Array, " n"]) -> Float[Array, "experts m"]:
        return jax.vmap(lambda f: jnp.correlate(x, f, mode="valid"))(self.filters)

    def __call__(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        z = self.responses(x)
        eps = jnp.exp(self.log_eps)[:, None]
        rho = jnp.sqrt(z**2 + eps**2) - eps
        return jnp.sum(jnp.exp(self.log_weights) * jnp.sum(rho, axis=1))


class LearnedDenoising(ax.AbstractProblem):
    """``0.5 |x - y|^2 + R(x)`` with a learned regulariser ``R``."""

    y: Float[Array, " n"]
    regulariser: FieldsOfExperts

    def cost(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        return 0.5 * jnp.sum((x - self.y) ** 2) + self.regulariser(x)

    def first_guess(self) -> Float[Array, " n"]:
        return self.y


def problem_fn(regulariser: FieldsOfExperts, pair: dict) -> LearnedDenoising:
    return LearnedDenoising(pair["noisy"], regulariser)


def mse(x: Float[Array, " n"], params, pair: dict) -> Float[Array, ""]:
    """The outer loss: mean squared error against the clean signal."""
    del params
    return jnp.mean((x - pair["clean"]) ** 2)


# Smooth and strongly convex (the data term); L-BFGS to 1e-8 of the initial
# gradient takes 20-60 steps on these signals.
SOLVER = ax.LBFGS(rtol=1e-8, max_steps=1000)


def train(
    regulariser: FieldsOfExperts,
    pairs: dict,
    *,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 0.05,
    progress: ax.AbstractProgress = ax.NoProgress(),
) -> FitResult:
    """`fit` of every array of the regulariser (Adam, cosine decay)."""
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05)
    return fit(
        problem_fn,
        mse,
        regulariser,
        pairs,
        optimiser=optax.adam(schedule),
        solver=SOLVER,
        hypergradient=ax.Implicit(),
        steps=steps,
        batch_size=batch_size,
        progress=progress,
    )


@eqx.filter_jit
def denoise(regulariser: FieldsOfExperts, noisy: Float[Array, "num n"]):
    """``x*`` for every row of `noisy` (forward solves), and the failures."""

    def one(y):
        problem = LearnedDenoising(y, regulariser)
        sol = ax.argmin(lambda x, p: p.cost(x), y, problem, solver=SOLVER, throw=False)
        return sol.value, sol.result != ax.RESULTS.successful

    values, failed = jax.vmap(one)(noisy)
    return values, jnp.sum(failed)


def learned_mse(regulariser: FieldsOfExperts, pairs: dict) -> float:
    values, failed = denoise(regulariser, pairs["noisy"])
    if int(failed):
        raise RuntimeError(f"{int(failed)} inner solves failed.")
    return float(jnp.mean((values - pairs["clean"]) ** 2))


def tikhonov_mse(pairs: dict, lams: np.ndarray) -> np.ndarray:
    """The mean squared error of ``(I + lam DᵀD)⁻¹ y`` for each of `lams`
    (closed form through the eigenvectors of ``DᵀD``)."""
    n = pairs["noisy"].shape[-1]
    difference = np.diff(np.eye(n), axis=0)
    s, v = np.linalg.eigh(difference.T @ difference)
    c, t = np.asarray(pairs["noisy"]) @ v, np.asarray(pairs["clean"]) @ v
    shrink = 1.0 / (1.0 + np.multiply.outer(np.asarray(lams), s))
    return np.mean((shrink[:, None, :] * c[None] - t[None]) ** 2, axis=(1, 2))


def _tv_weight(problem) -> Float[Array, ""]:
    return jnp.exp(problem.log_lam)


class _TVDenoising(eqx.Module):
    y: Float[Array, " n"]
    log_lam: Float[Array, ""]

    def cost(self, x: Float[Array, " n"]) -> Float[Array, ""]:
        return 0.5 * jnp.sum((x - self.y) ** 2)


# Condat-Vu for 0.5 |x - y|^2 + lam |D x|_1: |D| <= 2, grad f 1-Lipschitz, so
# 1/tau - 4 sigma > 1/2; a small tau with the largest sigma converges fastest.
TV_SOLVER = ax.PrimalDual(
    operator=lambda x, problem: jnp.diff(x),
    prox_h=ax.bilevel.L1(weight=_tv_weight),
    tau=0.1,
    sigma=0.95 * (1.0 / 0.1 - 0.5) / 4.0,
    operator_norm=2.0,
    lipschitz=1.0,
    max_steps=5000,
    rtol=1e-6,
)


@eqx.filter_jit
def tv_mse(pairs: dict, log_lams: Float[Array, " lams"]):
    """The mean squared error of TV denoising for each weight, and the failures."""

    def one(log_lam, y, clean):
        sol = ax.argmin(
            lambda x, p: p.cost(x),
            y,
            _TVDenoising(y, log_lam),
            solver=TV_SOLVER,
            throw=False,
        )
        failed = sol.result != ax.RESULTS.successful
        return jnp.mean((sol.value - clean) ** 2), failed

    per_pair = jax.vmap(one, in_axes=(None, 0, 0))
    errors, failed = jax.vmap(per_pair, in_axes=(0, None, None))(
        log_lams, pairs["noisy"], pairs["clean"]
    )
    return jnp.mean(errors, axis=1), jnp.sum(failed)


def main(
    out: pathlib.Path | str = "examples/output", quick: bool = False, seed: int = 0
) -> dict:
    """Tune the baselines, train the regulariser, print a table, save a plot.

    Returns a dict with ``train_mse`` and ``test_mse`` per method (``noisy``,
    ``tikhonov``, ``tv``, ``learned``), the baselines' ``lam``, the held-out
    gain of the learned regulariser over Tikhonov, and ``seconds``.
    """
    start = time.perf_counter()
    num, n = (32, 64) if quick else (64, 128)
    steps = 60 if quick else 200
    rng = np.random.default_rng(seed)
    train_pairs = make_pairs(num, n, seed)
    test_pairs = make_pairs(num, n, seed + 1)
    numbers: dict = {"num_train": num, "num_test": num, "n": n, "steps": steps}

    def noisy_mse(pairs):
        return float(jnp.mean((pairs["noisy"] - pairs["clean"]) ** 2))

    numbers["noisy"] = {
        "train_mse": noisy_mse(train_pairs),
        "test_mse": noisy_mse(test_pairs),
    }
    # Baselines, each weight tuned on the training pairs.
    lams = np.exp(np.linspace(np.log(1e-2), np.log(1e2), 2001))
    curve = tikhonov_mse(train_pairs, lams)
    lam = float(lams[int(np.argmin(curve))])
    numbers["tikhonov"] = {
        "lam": lam,
        "train_mse": float(curve.min()),
        "test_mse": float(tikhonov_mse(test_pairs, np.array([lam]))[0]),
    }
    tv_lams = np.exp(np.linspace(np.log(0.02), np.log(1.0), 21 if quick else 41))
    tv_curve, failed = tv_mse(train_pairs, jnp.log(jnp.asarray(tv_lams)))
    tv_lam = float(tv_lams[int(jnp.argmin(tv_curve))])
    tv_test, failed_test = tv_mse(test_pairs, jnp.log(jnp.asarray([tv_lam])))
    numbers["tv"] = {
        "lam": tv_lam,
        "train_mse": float(tv_curve.min()),
        "test_mse": float(tv_test[0]),
        "failures": int(failed) + int(failed_test),
    }
    tick = time.perf_counter()
    result = train(FieldsOfExperts.random(rng), train_pairs, steps=steps)
    learned = result.params
    numbers["learned"] = {
        "train_mse": learned_mse(learned, train_pairs),
        "test_mse": learned_mse(learned, test_pairs),
        "inner_failures": int(result.history["inner_failures"].sum()),
        "seconds": time.perf_counter() - tick,
    }
    numbers["gain_over_tikhonov"] = (
        1.0 - numbers["learned"]["test_mse"] / numbers["tikhonov"]["test_mse"]
    )
    numbers["gain_over_tv"] = (
        1.0 - numbers["learned"]["test_mse"] / numbers["tv"]["test_mse"]
    )
    numbers["seconds"] = time.perf_counter() - start

    print(
        f"Denoising piecewise-smooth signals (n={n}, noise {NOISE}): {num} training "
        f"pairs, {num} held-out"
    )
    print(f"  {'method':<40}{'train MSE':>11}{'test MSE':>11}")
    labels = {
        "noisy": "noisy (no denoising)",
        "tikhonov": f"Tikhonov, best lam = {numbers['tikhonov']['lam']:.3f}",
        "tv": f"TV, best lam of grid = {numbers['tv']['lam']:.3f}",
        "learned": f"fields of experts, 4 filters ({steps} steps)",
    }
    for name, label in labels.items():
        row = numbers[name]
        print(f"  {label:<40}{row['train_mse']:>11.5f}{row['test_mse']:>11.5f}")
    print(
        f"  held-out MSE of the learned regulariser: "
        f"{_relative(numbers['gain_over_tikhonov'])} Tikhonov's, "
        f"{_relative(numbers['gain_over_tv'])} TV's; training "
        f"{numbers['learned']['seconds']:.1f} s, {numbers['seconds']:.1f} s in all"
    )
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shown = test_pairs["noisy"][:1]
    denoised = np.asarray(denoise(learned, shown)[0][0])
    tikhonov = np.linalg.solve(
        np.eye(n) + lam * np.diff(np.eye(n), axis=0).T @ np.diff(np.eye(n), axis=0),
        np.asarray(shown[0]),
    )
    _save(
        out / f"{NAME}.png",
        (learned, test_pairs["clean"][0], shown[0], tikhonov, denoised),
    )
    return numbers


def _relative(gain: float) -> str:
    return f"{gain:.0%} below" if gain >= 0 else f"{-gain:.0%} above"


def _draw(data, figure) -> None:
    learned, clean, noisy, tikhonov, denoised = data
    left, right = figure.subplots(1, 2, width_ratios=(1, 2.5))
    weights = np.exp(np.asarray(learned.log_weights))
    for k, f in enumerate(np.asarray(learned.filters)):
        left.plot(f, "o-", label=f"weight {weights[k]:.2f}")
    left.set(xlabel="tap", title="learnt filters")
    left.legend(fontsize=8)
    right.plot(np.asarray(noisy), ".", color="grey", ms=3, label="noisy")
    right.plot(np.asarray(clean), "k", lw=1, label="clean")
    right.plot(tikhonov, color="C0", label="Tikhonov")
    right.plot(denoised, color="C3", label="learned")
    right.set(xlabel="i", title="a held-out signal")
    right.legend(fontsize=8)


def _save(path: pathlib.Path, data) -> None:
    # matplotlib is optional: no plot without it.
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(f"matplotlib is not installed: no plot ({path.name}).")
        return
    figure = Figure(figsize=(11, 3.8), layout="constrained")
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
