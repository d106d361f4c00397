"""A deep equilibrium (DEQ) layer trained by implicit differentiation.

The model is ``y = V z*(x) + c`` with the hidden state the fixed point

    z* = tanh(W z* + U x + b),     W = 0.9 W_raw / |W_raw|_F,

a contraction in ``z`` for every ``x`` (tanh is 1-Lipschitz and
``|W|_2 <= |W|_F = 0.9``), so the fixed point exists, is unique, and Anderson
acceleration finds it. `assimilax.DEQ` solves it; the gradient w.r.t. the
weights is the implicit one (`Implicit()`: one GMRES solve with
``(I - ∂zT)ᵀ`` per example, whatever the number of forward iterations). The
task is regression of ``f(x) = sin(2 x1) cos(x2)`` on ``[-2, 2]²`` from 256
noisy training points (noise std 0.05), reported on 1024 test points drawn
once, never used for training or settings.

Before training, the implicit gradient of the training loss is checked against
the gradient obtained by unrolling the Anderson iterations (`Unrolled()`).
Prints the train/test mean squared error before and after training, the
forward iterations per example and the time per epoch, and saves
``deq_layer.png`` (the fit along a line through the domain).

    python examples/deq_layer.py [--out examples/output] [--quick]
"""

import argparse
import pathlib
import time

import jax


jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jaxtyping import Array, Float  # noqa: E402

import assimilax as ax  # noqa: E402


NAME = "deq_layer"
HIDDEN = 24
SOLVER = ax.Anderson(rtol=1e-8, max_steps=200)


class Cell(eqx.Module):
    """``z -> tanh(W z + U x + b)`` with ``W`` scaled to Frobenius norm 0.9."""

    W_raw: Float[Array, "hidden hidden"]
    U: Float[Array, "hidden 2"]
    b: Float[Array, " hidden"]

    def __call__(self, z: Float[Array, " hidden"], x: Float[Array, " 2"]):
        W = 0.9 * self.W_raw / jnp.linalg.norm(self.W_raw)
        return jnp.tanh(W @ z + self.U @ x + self.b)


class Model(eqx.Module):
    """A DEQ layer and a linear readout."""

    layer: ax.DEQ
    V: Float[Array, " hidden"]
    c: Float[Array, ""]

    def __call__(self, x: Float[Array, " 2"]) -> Float[Array, ""]:
        return self.V @ self.layer(x) + self.c


def make_model(key, hypergradient=ax.Implicit()) -> Model:
    k1, k2, k3 = jr.split(key, 3)
    cell = Cell(
        jr.normal(k1, (HIDDEN, HIDDEN)),
        jr.normal(k2, (HIDDEN, 2)),
        jnp.zeros(HIDDEN),
    )
    layer = ax.DEQ(cell, (HIDDEN,), solver=SOLVER, hypergradient=hypergradient)
    return Model(layer, jr.normal(k3, (HIDDEN,)) / HIDDEN**0.5, jnp.array(0.0))


def target(x: Float[Array, "n 2"]) -> Float[Array, " n"]:
    return jnp.sin(2 * x[:, 0]) * jnp.cos(x[:, 1])


def make_data(key, n_train: int, n_test: int = 1024, noise: float = 0.05):
    k1, k2, k3 = jr.split(key, 3)
    x_train = jr.uniform(k1, (n_train, 2), minval=-2.0, maxval=2.0)
    x_test = jr.uniform(k2, (n_test, 2), minval=-2.0, maxval=2.0)
    y_train = target(x_train) + noise * jr.normal(k3, (n_train,))
    return x_train, y_train, x_test, target(x_test)


def mse(model: Model, x, y) -> Float[Array, ""]:
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


@eqx.filter_jit
def mean_iterations(model: Model, x) -> Float[Array, ""]:
    solutions = jax.vmap(model.layer.solve)(x)
    return jnp.mean(solutions.stats.num_steps.astype(float))


def gradient_check(model: Model, x, y) -> float:
    """Relative difference between the implicit and the unrolled gradient."""
    unrolled = eqx.tree_at(lambda m: m.layer.hypergradient, model, ax.Unrolled())
    g_implicit = eqx.filter_jit(eqx.filter_grad(mse))(model, x, y)
    g_unrolled = eqx.filter_jit(eqx.filter_grad(mse))(unrolled, x, y)
    a = jax.flatten_util.ravel_pytree(eqx.filter(g_implicit, eqx.is_array))[0]
    b = jax.flatten_util.ravel_pytree(eqx.filter(g_unrolled, eqx.is_array))[0]
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def train(model: Model, x, y, epochs: int, batch: int = 64, seed: int = 1):
    optimiser = optax.adam(1e-2)
    opt_state = optimiser.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def step(model, opt_state, xb, yb):
        loss, grads = eqx.filter_value_and_grad(mse)(model, xb, yb)
        updates, opt_state = optimiser.update(grads, opt_state)
        return eqx.apply_updates(model, updates), opt_state, loss

    rng = np.random.default_rng(seed)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            model, opt_state, loss = step(model, opt_state, x[idx], y[idx])
        jax.block_until_ready(loss)
        times.append(time.perf_counter() - start)
    return model, times


def main(out: pathlib.Path = pathlib.Path("examples/output"), quick: bool = False):
    out.mkdir(parents=True, exist_ok=True)
    epochs, n_train = (200, 256) if quick else (1000, 256)
    x_train, y_train, x_test, y_test = make_data(jr.key(0), n_train)
    model = make_model(jr.key(1))

    difference = gradient_check(model, x_train[:32], y_train[:32])
    print(f"implicit vs unrolled gradient: relative difference {difference:.2e}")

    before = {
        "train": float(mse(model, x_train, y_train)),
        "test": float(mse(model, x_test, y_test)),
    }
    model, times = train(model, x_train, y_train, epochs)
    after = {
        "train": float(mse(model, x_train, y_train)),
        "test": float(mse(model, x_test, y_test)),
    }
    iterations = float(mean_iterations(model, x_test))
    print(f"{'':8}{'train MSE':>12}{'test MSE':>12}")
    print(f"{'before':8}{before['train']:12.4f}{before['test']:12.4f}")
    print(f"{'after':8}{after['train']:12.4f}{after['test']:12.4f}")
    print(
        f"forward Anderson iterations per example: {iterations:.1f}; "
        f"first epoch {times[0]:.2f} s (compiles), then "
        f"{np.median(times[1:]):.3f} s per epoch"
    )
    _plot(model, out / f"{NAME}.png")
    return {
        "gradient_difference": difference,
        "mse_before": before,
        "mse_after": after,
        "iterations": iterations,
        "epoch_seconds": float(np.median(times[1:])),
    }


def _plot(model: Model, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = jnp.linspace(-2.0, 2.0, 200)
    line = jnp.stack([s, 0.5 * s], axis=1)
    fig, ax_ = plt.subplots(figsize=(6, 3.2))
    ax_.plot(s, target(line), label="f(x)", color="k")
    ax_.plot(s, jax.vmap(model)(line), label="DEQ", color="C1", ls="--")
    ax_.set_xlabel("s  (x = (s, s/2))")
    ax_.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=pathlib.Path, default=pathlib.Path("examples/output")
    )
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args()
    main(arguments.out, arguments.quick)
