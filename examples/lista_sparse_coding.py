"""LISTA against ISTA: learned sparse coding in fewer layers than ISTA iterations.

A fixed random dictionary D (20 x 40, unit-norm columns) and codes with 3 non-zero
N(0, 1) entries out of 40; observations y = D z + noise (std 0.01). The target of
both methods is the lasso solution z*(y) of |D z - y|^2 / 2 + lam |z|_1 with
lam = 0.05, computed by FISTA to a relative residual of 1e-10. ISTA (step 1/L,
from z = 0) is run for 100 iterations; LISTA networks of 1 to 16 layers,
initialised as ISTA, are trained by unrolling on 5000 examples (Adam, learning
rate 1e-2 with cosine decay, 1500 steps of 128 examples). Errors are the
normalised squared error to the lasso solutions on 1000 held-out examples,
sum_i |z_i - z_i*|^2 / sum_i |z_i*|^2. Prints the table and saves a plot of
error against iterations / layers.

    python examples/lista_sparse_coding.py [--out examples/output] [--quick]
"""

import argparse
import pathlib
import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.learning import ista_iterates, LISTA, train_lista  # noqa: E402


NAME = "lista_sparse_coding"
OBS, CODE, NONZEROS, NOISE, LAM = 20, 40, 3, 0.01, 0.05
ISTA_STEPS = 100
LEARNING_RATE = 1e-2


def sparse_codes(rng: np.random.Generator, num: int) -> np.ndarray:
    """`num` codes of length CODE with NONZEROS N(0, 1) entries at random places."""
    support = np.argsort(rng.random((num, CODE)), axis=1)[:, :NONZEROS]
    codes = np.zeros((num, CODE))
    np.put_along_axis(codes, support, rng.normal(size=(num, NONZEROS)), axis=1)
    return codes


def observe(D: np.ndarray, codes: np.ndarray, rng: np.random.Generator):
    """Observations ``D z + noise`` for each row ``z`` of `codes`."""
    return codes @ D.T + NOISE * rng.normal(size=(codes.shape[0], OBS))


def lasso_solutions(D, y) -> jax.Array:
    """The lasso minimisers for each row of `y`, by FISTA through `argmin`."""
    solver = ax.ProximalGradient(
        prox=ax.bilevel.L1(weight=LAM),
        step_size=1.0 / jnp.linalg.norm(D, ord=2) ** 2,
        max_steps=10_000,
        rtol=1e-10,
    )
    # A forward solve only; any strategy that accepts a proximal solver will do.
    strategy = ax.Implicit(linear_solver=lx.GMRES(rtol=1e-8, atol=1e-8))

    def solve(y_i):
        fn = lambda z, y_i: 0.5 * jnp.sum((D @ z - y_i) ** 2)  # noqa: E731
        return ax.argmin(
            fn, jnp.zeros(CODE), y_i, solver=solver, hypergradient=strategy
        )

    return jax.vmap(solve)(y).value


def nmse(z, z_star) -> float:
    """Normalised squared error ``sum |z - z*|^2 / sum |z*|^2`` over all examples."""
    return float(jnp.sum((z - z_star) ** 2) / jnp.sum(z_star**2))


def main(
    out: pathlib.Path | str = "examples/output", quick: bool = False, seed: int = 0
) -> dict:
    """Run the comparison, print the table, save ``NAME.png``.

    Returns a dict: ``ista_<k>`` and ``lista_<K>`` (held-out errors of ISTA after
    k iterations and of a trained K-layer LISTA), ``fewest_layers`` (the smallest
    trained K at or below ISTA's 100-iteration error, or None), sizes and seconds.
    """
    start = time.perf_counter()
    layers = (4, 16) if quick else (1, 2, 3, 4, 8, 16)
    num_train, num_test = (2000, 500) if quick else (5000, 1000)
    steps, batch_size = (1000, 64) if quick else (1500, 128)
    # Data from NumPy (no compilation); training and held-out sets are drawn
    # independently for the same dictionary.
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(OBS, CODE))
    D /= np.linalg.norm(D, axis=0)
    y_train = observe(D, sparse_codes(rng, num_train), rng)
    y_test = observe(D, sparse_codes(rng, num_test), rng)
    # One solve for both sets: one compilation.
    z_star = lasso_solutions(jnp.asarray(D), jnp.asarray(np.vstack([y_train, y_test])))
    z_train, z_test = z_star[:num_train], z_star[num_train:]
    D, y_train, y_test = jnp.asarray(D), jnp.asarray(y_train), jnp.asarray(y_test)

    ista = jax.vmap(lambda y: ista_iterates(D, LAM, y, ISTA_STEPS))(y_test)
    # The error after each iteration, k = 1..ISTA_STEPS.
    ista_curve = np.asarray(
        jnp.sum((ista - z_test[:, None]) ** 2, axis=(0, 2)) / jnp.sum(z_test**2)
    )
    rows = sorted({1, 2, 4, 8, 16, *layers})
    numbers = {f"ista_{k}": float(ista_curve[k - 1]) for k in (*rows, ISTA_STEPS)}
    for num_layers in layers:
        net = LISTA.from_dictionary(D, LAM, num_layers)
        schedule = optax.cosine_decay_schedule(LEARNING_RATE, steps, alpha=0.01)
        net, _ = train_lista(
            net,
            y_train,
            z_train,
            optimiser=optax.adam(schedule),
            steps=steps,
            batch_size=batch_size,
            key=jr.key(seed),
        )
        numbers[f"lista_{num_layers}"] = nmse(jax.vmap(net)(y_test), z_test)
    reached = [k for k in layers if numbers[f"lista_{k}"] <= numbers["ista_100"]]
    numbers["fewest_layers"] = min(reached) if reached else None
    numbers.update(num_train=num_train, num_test=num_test, steps=steps, layers=layers)
    numbers["seconds"] = time.perf_counter() - start

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _plot(out / f"{NAME}.png", ista_curve, layers, numbers)
    print(
        f"Sparse coding, D {OBS}x{CODE}, {NONZEROS} non-zeros, noise {NOISE}, "
        f"lam {LAM}: error to the lasso solution on {num_test} held-out examples"
    )
    print(f"  {'iterations / layers':<22}{'ISTA':>12}{'LISTA':>12}")
    for k in rows:
        lista = numbers.get(f"lista_{k}")
        lista = f"{lista:>12.4g}" if lista is not None else f"{'':>12}"
        print(f"  {k:<22}{numbers[f'ista_{k}']:>12.4g}{lista}")
    print(f"  {ISTA_STEPS:<22}{numbers['ista_100']:>12.4g}")
    print(
        f"  fewest LISTA layers at or below ISTA-{ISTA_STEPS}: "
        f"{numbers['fewest_layers']}; {numbers['seconds']:.1f} s"
    )
    return numbers


def _plot(path, ista_curve, layers, numbers):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax_ = plt.subplots(figsize=(6, 4))
    steps = np.arange(1, len(ista_curve) + 1)
    ax_.plot(steps, ista_curve, label="ISTA (iterations)")
    ax_.plot(
        layers,
        [numbers[f"lista_{k}"] for k in layers],
        "o-",
        label="LISTA, trained (layers)",
    )
    ax_.axhline(numbers["ista_100"], color="grey", ls="--", lw=1, label="ISTA-100")
    ax_.set(
        xscale="log",
        yscale="log",
        xlabel="iterations / layers",
        ylabel="held-out error to the lasso solution",
        title="LISTA against ISTA",
    )
    ax_.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output", help="output directory")
    parser.add_argument("--quick", action="store_true", help="fewer networks, steps")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main(**vars(_parse()))
