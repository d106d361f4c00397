"""Per-feature weight decay of a logistic regression, by implicit differentiation.

The bilevel problem of hyperparameter learning (one weight decay per feature):

    min_theta  CE_val(w*(theta))
    w*(theta) = argmin_w  CE_train(w) + 0.5 sum_j exp(theta_j) w_j^2,

with ``CE`` the mean cross-entropy of a logistic regression (weights ``w`` and an
unpenalised bias). The inner problem is smooth and strongly convex in ``w``
(L-BFGS); the hypergradient is the implicit-function-theorem one (`Implicit`:
one conjugate-gradient solve with Hessian-vector products), so nothing is
unrolled. `fit` takes the Adam steps on ``theta``.

Data: 20 standard-normal features of which 5 are informative (true weights 2,
-2, 1.5, -1.5, 1) and 15 are noise; labels drawn from the logistic model; 60
training, 120 validation and 5000 test examples. The baseline is the best
*shared* decay (one ``theta`` for every feature, chosen on the validation set
from a grid of 61 values). Prints validation and test cross-entropy and
accuracy for both, and the learnt decays of the informative and noise features;
saves ``logistic_weight_decay.png``.

    python examples/logistic_weight_decay.py [--out examples/output] [--quick]
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


NAME = "logistic_weight_decay"
TRUE_WEIGHTS = (2.0, -2.0, 1.5, -1.5, 1.0)
FEATURES = 20
BIAS = 0.25


def make_data(
    seed: int,
    num_train: int = 60,
    num_val: int = 120,
    num_test: int = 5000,
    features: int = FEATURES,
) -> dict:
    """Train / validation / test splits ``{"x_train", "y_train", ...}``.

    Features are N(0, 1); the first ``len(TRUE_WEIGHTS)`` carry the signal, the
    others are noise; labels (0.0 or 1.0) are Bernoulli of the logistic model.
    """
    rng = np.random.default_rng(seed)
    w = np.zeros(features)
    w[: len(TRUE_WEIGHTS)] = TRUE_WEIGHTS
    data = {}
    for split, num in (("train", num_train), ("val", num_val), ("test", num_test)):
        x = rng.normal(size=(num, features))
        p = 1.0 / (1.0 + np.exp(-(x @ w + BIAS)))
        data[f"x_{split}"] = jnp.asarray(x)
        data[f"y_{split}"] = jnp.asarray((rng.random(num) < p).astype(float))
    return data


def cross_entropy(
    w: Float[Array, " d+1"], x: Float[Array, "m d"], y: Float[Array, " m"]
) -> Float[Array, ""]:
    """Mean cross-entropy of the logistic model ``sigmoid(x @ w[:-1] + w[-1])``."""
    logits = x @ w[:-1] + w[-1]
    # -log sigmoid(z) = softplus(-z), -log(1 - sigmoid(z)) = softplus(z): stable.
    return jnp.mean(y * jax.nn.softplus(-logits) + (1.0 - y) * jax.nn.softplus(logits))


def accuracy(w: Float[Array, " d+1"], x, y) -> Float[Array, ""]:
    return jnp.mean((((x @ w[:-1] + w[-1]) > 0) == (y > 0.5)).astype(w.dtype))


class WeightDecayLogistic(ax.AbstractProblem):
    """The inner problem: training cross-entropy plus ``0.5 sum exp(theta_j) w_j^2``
    (the bias, the last entry of ``w``, is not penalised)."""

    x: Float[Array, "m d"]
    y: Float[Array, " m"]
    log_decay: Float[Array, " d"]

    def cost(self, w: Float[Array, " d+1"]) -> Float[Array, ""]:
        penalty = 0.5 * jnp.sum(jnp.exp(self.log_decay) * w[:-1] ** 2)
        return cross_entropy(w, self.x, self.y) + penalty

    def first_guess(self) -> Float[Array, " d+1"]:
        return jnp.zeros(self.x.shape[1] + 1, self.x.dtype)


def problem_fn(params: dict, data: dict) -> WeightDecayLogistic:
    """The inner problem for ``params["log_decay"]``: one value per feature, or
    one shared value (a scalar, broadcast)."""
    log_decay = jnp.broadcast_to(params["log_decay"], data["x_train"].shape[1:])
    return WeightDecayLogistic(data["x_train"], data["y_train"], log_decay)


def validation_loss(w: Float[Array, " d+1"], params, data: dict) -> Float[Array, ""]:
    """The outer loss: cross-entropy on the validation split."""
    del params
    return cross_entropy(w, data["x_val"], data["y_val"])


# Strongly convex and smooth: L-BFGS to a gradient 1e-10 times the initial one.
SOLVER = ax.LBFGS(rtol=1e-10, max_steps=1000)


@eqx.filter_jit
def train_weights(log_decay: Float[Array, " d"], data: dict) -> Float[Array, " d+1"]:
    """``w*(theta)``: the regularised fit on the training split (forward only)."""
    problem = problem_fn({"log_decay": log_decay}, data)
    return ax.argmin(
        lambda w, p: p.cost(w), problem.first_guess(), problem, solver=SOLVER
    ).value


def shared(log_decay: float, features: int = FEATURES) -> Float[Array, " d"]:
    """One decay for every feature, as a per-feature vector (so that every call
    of `train_weights` has the same shapes: one compilation)."""
    return jnp.full(features, log_decay, dtype=float)


def shared_grid(data: dict, log_decays: np.ndarray) -> np.ndarray:
    """The validation loss for each shared ``theta`` in `log_decays`."""
    features = data["x_train"].shape[1]
    losses = [
        validation_loss(train_weights(shared(t, features), data), None, data)
        for t in log_decays
    ]
    return np.asarray(losses)


def learn(
    data: dict, theta0: float, *, steps: int, learning_rate: float = 0.3, **options
) -> FitResult:
    """`fit` of one ``theta_j`` per feature from ``theta0``: a single window (the
    whole training and validation sets), Adam with a cosine decay. `options` go
    to `fit` (e.g. ``warm_start=ColdStart()``)."""
    windows = jax.tree.map(lambda a: a[None], data)
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05)
    return fit(
        problem_fn,
        validation_loss,
        # A strongly typed float64 start (a Python float would give a weakly typed
        # array, and the second step would compile again).
        {"log_decay": shared(theta0, data["x_train"].shape[1])},
        windows,
        optimiser=optax.adam(schedule),
        solver=SOLVER,
        hypergradient=ax.Implicit(),
        steps=steps,
        batch_size=1,
        **options,
    )


def evaluate(w: Float[Array, " d+1"], data: dict) -> dict:
    """Cross-entropy and accuracy on the validation and test splits."""
    out = {}
    for split in ("val", "test"):
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        out[f"{split}_ce"] = float(cross_entropy(w, x, y))
        out[f"{split}_accuracy"] = float(accuracy(w, x, y))
    return out


def main(
    out: pathlib.Path | str = "examples/output", quick: bool = False, seed: int = 0
) -> dict:
    """Tune the shared decay on a grid, learn per-feature decays, print, plot.

    Returns a dict: ``shared`` and ``per_feature`` (each with ``val_ce``,
    ``test_ce``, ``val_accuracy``, ``test_accuracy``; ``shared`` also its
    ``log_decay``), ``log_decay`` (the learnt per-feature values),
    ``informative_log_decay`` and ``noise_log_decay`` (their means),
    ``noise_weight_norm`` for both fits, and ``seconds``.
    """
    start = time.perf_counter()
    steps = 60 if quick else 150
    data = make_data(seed, num_test=1000 if quick else 5000)
    grid = np.linspace(-8.0, 2.0, 61)
    curve = shared_grid(data, grid)
    best = int(np.argmin(curve))
    theta_shared = float(grid[best])
    w_shared = train_weights(shared(theta_shared), data)
    # Every feature starts from the best shared decay: what the per-feature
    # decays gain over it is theirs alone.
    result = learn(data, theta_shared, steps=steps)
    theta = np.asarray(result.params["log_decay"])
    w_learnt = train_weights(jnp.asarray(theta), data)
    k = len(TRUE_WEIGHTS)
    numbers = {
        "shared": {"log_decay": theta_shared, **evaluate(w_shared, data)},
        "per_feature": evaluate(w_learnt, data),
        "log_decay": theta.tolist(),
        "informative_log_decay": float(theta[:k].mean()),
        "noise_log_decay": float(theta[k:].mean()),
        "noise_above_shared": int(np.sum(theta[k:] > theta_shared)),
        "noise_weight_norm": {
            "shared": float(jnp.linalg.norm(w_shared[k:-1])),
            "per_feature": float(jnp.linalg.norm(w_learnt[k:-1])),
        },
        "inner_failures": int(result.history["inner_failures"].sum()),
        "steps": steps,
    }
    numbers["seconds"] = time.perf_counter() - start

    print(
        f"Logistic regression, {FEATURES} features ({k} informative), "
        f"{data['x_train'].shape[0]} training / {data['x_val'].shape[0]} "
        f"validation / {data['x_test'].shape[0]} test examples"
    )
    header = ("weight decay", "val CE", "test CE", "val acc", "test acc")
    print("  {:<34}{:>9}{:>9}{:>9}{:>9}".format(*header))
    rows = {
        f"shared, best of grid (log {theta_shared:.2f})": numbers["shared"],
        f"per feature, learnt ({steps} steps)": numbers["per_feature"],
    }
    for label, row in rows.items():
        print(
            f"  {label:<34}{row['val_ce']:>9.4f}{row['test_ce']:>9.4f}"
            f"{row['val_accuracy']:>9.3f}{row['test_accuracy']:>9.3f}"
        )
    print(
        f"  learnt log decay: informative features {theta[:k].round(1)}; noise "
        f"features mean {numbers['noise_log_decay']:.2f}, "
        f"{numbers['noise_above_shared']} of {theta.size - k} above the shared"
    )
    norms = numbers["noise_weight_norm"]
    print(
        f"  |w| on the noise features: shared {norms['shared']:.3f}, per feature "
        f"{norms['per_feature']:.3f}; {numbers['seconds']:.1f} s"
    )
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _save(out / f"{NAME}.png", (grid, curve, theta_shared, theta, result.history))
    return numbers


def _draw(data, figure) -> None:
    grid, curve, theta_shared, theta, history = data
    left, middle, right = figure.subplots(1, 3)
    left.plot(grid, curve)
    left.axvline(theta_shared, color="k", ls=":")
    left.set(xlabel="shared log decay", ylabel="validation CE", title="shared decay")
    k = len(TRUE_WEIGHTS)
    colours = ["C1"] * k + ["C0"] * (theta.size - k)
    middle.bar(
        np.arange(theta.size), theta - grid.min(), bottom=grid.min(), color=colours
    )
    middle.axhline(theta_shared, color="k", ls=":")
    middle.set(xlabel="feature (orange: informative)", ylabel="learnt log decay")
    right.plot(history["step"], history["loss"])
    right.set(xlabel="outer step", ylabel="validation CE", title="fit")


def _save(path: pathlib.Path, data) -> None:
    # matplotlib is optional: no plot without it.
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(f"matplotlib is not installed: no plot ({path.name}).")
        return
    figure = Figure(figsize=(12, 3.6), layout="constrained")
    _draw(data, figure)
    figure.savefig(path, dpi=100)


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output", help="output directory")
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main(**vars(_parse()))
