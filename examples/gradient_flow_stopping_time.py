"""Early stopping as regularisation: learn the stopping time of a gradient flow.

Deblurring: clean periodic signals (n=64, 8 Fourier modes with 1/k amplitudes)
blurred by a Gaussian of width 2 grid points plus noise 0.05. The inner problem,
``U(x) = 0.5 |A x - y|²``, is ill-posed (the blur's eigenvalues go down to 1e-16),
so its minimiser amplifies the noise; the gradient flow ``dx/dt = -grad U(x)``
from ``x = 0``, stopped at ``t1``, is a spectral filter ``1 - exp(-λ t1)`` (the
optimal-control view of early stopping). ``log t1`` is learnt by Adam on the mean
squared error against 32 clean signals, through `argmin` with
``GradientFlow(t1=lambda args: exp(args[1]))`` and two hypergradient strategies,
`GradientFlowAdjoint` (continuous adjoint) and `Unrolled` (reverse mode through the
Tsit5 steps). The outer loss is known in closed form through ``eigh(AᵀA)``; the
table compares the learnt ``t1`` with its minimiser, and the errors on 32
held-out signals with Tikhonov regularisation at its best weight and with no
stopping. Saves a plot of the loss curve, the learning paths and one signal.

    python examples/gradient_flow_stopping_time.py [--out examples/output] [--quick]
"""

import argparse
import pathlib
import time

import jax


jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.demos._plots import save_figure  # noqa: E402


NAME = "gradient_flow_stopping_time"
N, WIDTH, NOISE, MODES = 64, 2.0, 0.05, 8
T1_START, T1_MAX, DT = 2.0, 60.0, 0.25


def blur_matrix() -> np.ndarray:
    """The periodic Gaussian blur ``A``, ``(N, N)``, rows summing to 1."""
    distance = np.minimum(np.arange(N), N - np.arange(N))
    kernel = np.exp(-0.5 * (distance / WIDTH) ** 2)
    return np.stack([np.roll(kernel / kernel.sum(), j) for j in range(N)])


def make_signals(rng: np.random.Generator, num: int) -> np.ndarray:
    """`num` smooth periodic signals, ``(num, N)``."""
    k = np.arange(1, MODES + 1)
    grid = np.linspace(0.0, 2 * np.pi, N, endpoint=False)
    cos = (rng.normal(size=(num, MODES)) / k) @ np.cos(np.outer(k, grid))
    return cos + (rng.normal(size=(num, MODES)) / k) @ np.sin(np.outer(k, grid))


class ClosedForm:
    """The flow ``x(t) = (I - exp(-H t)) H⁺ b`` (``H = AᵀA``, ``b = Aᵀy``) and
    Tikhonov's ``(H + mu I)⁻¹ b`` through ``eigh(H)``, for a set of signals."""

    def __init__(self, blur: np.ndarray, data: np.ndarray, clean: np.ndarray):
        self.eigvals, self.eigvecs = np.linalg.eigh(blur.T @ blur)
        self.b = (data @ blur) @ self.eigvecs
        self.clean = clean

    def flow(self, t: float) -> np.ndarray:
        z = self.eigvals * t
        safe = np.where(self.eigvals == 0.0, 1.0, self.eigvals)
        # (1 - e^{-z}) / λ, and its limit t where λ t is tiny.
        factor = np.where(np.abs(z) < 1e-8, t * (1 - z / 2), -np.expm1(-z) / safe)
        return (self.b * factor) @ self.eigvecs.T

    def tikhonov(self, mu: float) -> np.ndarray:
        return (self.b / (self.eigvals + mu)) @ self.eigvecs.T

    def flow_loss(self, log_t1: float) -> float:
        return float(np.mean((self.flow(np.exp(log_t1)) - self.clean) ** 2))

    def tikhonov_loss(self, log_mu: float) -> float:
        return float(np.mean((self.tikhonov(np.exp(log_mu)) - self.clean) ** 2))


def minimise_1d(fn, low: float, high: float) -> float:
    """The minimiser of a 1D function on ``[low, high]``: the best of a grid of
    20001 points, refined by golden-section search between its neighbours to an
    interval of 1e-12 (NumPy only: no SciPy needed)."""
    grid = np.linspace(low, high, 20001)
    j = int(np.clip(np.argmin([fn(s) for s in grid]), 1, len(grid) - 2))
    a, b = grid[j - 1], grid[j + 1]
    ratio = (np.sqrt(5.0) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = fn(c), fn(d)
    while b - a > 1e-12:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = fn(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = fn(d)
    return float((a + b) / 2)


def learn_log_t1(hypergradient, blur, data, clean, steps: int):
    """Adam on ``log t1`` from ``T1_START``; returns the path of ``log t1``
    (``steps + 1`` values) and the seconds taken (compilation included)."""
    flow = ax.GradientFlow(
        t1=lambda args: jnp.exp(args[1]), dt=DT, max_steps=int(T1_MAX / DT)
    )

    def misfit(x, args):
        y, _ = args  # args[1] = log t1, read by the solver
        return 0.5 * jnp.sum((x @ blur.T - y) ** 2)

    # All signals are one inner problem with a (signals, N) state: the flows are
    # independent and share t1, and one solve is cheaper than a vmap of many.
    def outer_loss(log_t1):
        x = ax.argmin(
            misfit,
            jnp.zeros_like(data),
            (data, log_t1),
            solver=flow,
            hypergradient=hypergradient,
        ).value
        return jnp.mean((x - clean) ** 2)

    # Little momentum and a short memory: near t* the outer gradient is orders of
    # magnitude smaller than at the start (see tests/test_stopping_time.py).
    optimiser = optax.adam(
        optax.cosine_decay_schedule(0.2, steps, alpha=1e-3), b1=0.5, b2=0.9
    )

    @jax.jit
    def step(log_t1, state):
        _, grad = jax.value_and_grad(outer_loss)(log_t1)
        with jax.numpy_dtype_promotion("standard"):  # optax's int32 counter
            updates, state = optimiser.update(grad, state, log_t1)
        return log_t1 + updates, state

    start = time.perf_counter()
    log_t1 = jnp.log(jnp.asarray(T1_START))
    state = optimiser.init(log_t1)
    path = [float(log_t1)]
    for _ in range(steps):
        log_t1, state = step(log_t1, state)
        path.append(float(log_t1))
    return np.asarray(path), time.perf_counter() - start


def main(
    out: pathlib.Path | str = "examples/output", quick: bool = False, seed: int = 0
) -> dict:
    """Run both strategies, print the table, save ``NAME.png``.

    Returns a dict: ``t_star`` (the closed-form minimiser), per strategy the
    learnt ``t1``, its relative error, the training and held-out errors and
    seconds; Tikhonov's best weight and errors; the errors at ``T1_START`` and
    with no stopping; seconds.
    """
    start = time.perf_counter()
    num = 16 if quick else 32
    steps = 100 if quick else 150
    rng = np.random.default_rng(seed)
    blur = blur_matrix()
    clean, held_out = make_signals(rng, num), make_signals(rng, num)
    data = clean @ blur.T + NOISE * rng.normal(size=clean.shape)
    data_held_out = held_out @ blur.T + NOISE * rng.normal(size=held_out.shape)
    train = ClosedForm(blur, data, clean)
    test = ClosedForm(blur, data_held_out, held_out)

    s_star = minimise_1d(train.flow_loss, np.log(0.5), np.log(T1_MAX))
    log_mu = minimise_1d(train.tikhonov_loss, np.log(1e-8), np.log(10.0))
    numbers = {
        "t_star": float(np.exp(s_star)),
        "closed_form": (train.flow_loss(s_star), test.flow_loss(s_star)),
        "start": (train.flow_loss(np.log(T1_START)), test.flow_loss(np.log(T1_START))),
        "tikhonov_mu": float(np.exp(log_mu)),
        "tikhonov": (train.tikhonov_loss(log_mu), test.tikhonov_loss(log_mu)),
        # t1 = 1e8: every mode with λ > 1e-7 has converged: the least-squares fit.
        "no_stopping": (train.flow_loss(np.log(1e8)), test.flow_loss(np.log(1e8))),
    }
    paths = {}
    strategies = {
        "GradientFlowAdjoint": ax.GradientFlowAdjoint(),
        "Unrolled": ax.Unrolled(),
    }
    for name, strategy in strategies.items():
        path, seconds = learn_log_t1(
            strategy, jnp.asarray(blur), jnp.asarray(data), jnp.asarray(clean), steps
        )
        paths[name] = path
        t1 = float(np.exp(path[-1]))
        numbers[name] = {
            "t1": t1,
            "relative_error": abs(t1 / numbers["t_star"] - 1),
            "errors": (train.flow_loss(path[-1]), test.flow_loss(path[-1])),
            "seconds": seconds,
        }
    numbers.update(num_signals=num, outer_steps=steps)
    numbers["seconds"] = time.perf_counter() - start

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    example = (held_out[0], data_held_out[0], test.flow(numbers["t_star"])[0])
    save_figure(_plot, (train, paths, numbers, example), out / f"{NAME}.png")
    _print(numbers)
    return numbers


def _print(numbers: dict) -> None:
    num = numbers["num_signals"]
    print(
        f"Deblurring (n={N}, blur width {WIDTH}, noise {NOISE}): gradient flow from 0 "
        f"stopped at t1; MSE on {num} training and {num} held-out signals"
    )
    print(f"  {'':<30}{'t1':>11}{'train':>11}{'held-out':>11}{'seconds':>9}")

    def row(label, t1, errors, seconds=""):
        seconds = f"{seconds:>9.1f}" if seconds != "" else ""
        print(f"  {label:<30}{t1:>11}{errors[0]:>11.4g}{errors[1]:>11.4g}{seconds}")

    row("start", f"{T1_START:.3f}", numbers["start"])
    for name in ("GradientFlowAdjoint", "Unrolled"):
        one = numbers[name]
        row(f"learnt, {name}", f"{one['t1']:.6f}", one["errors"], one["seconds"])
    row("closed-form minimiser t*", f"{numbers['t_star']:.6f}", numbers["closed_form"])
    mu = f"mu={numbers['tikhonov_mu']:.2g}"
    row("Tikhonov, best weight", mu, numbers["tikhonov"])
    row("no stopping (t1 = 1e8)", "1e8", numbers["no_stopping"])
    print(
        "  |t1 - t*| / t*: adjoint "
        f"{numbers['GradientFlowAdjoint']['relative_error']:.1e}, unrolled "
        f"{numbers['Unrolled']['relative_error']:.1e}; {numbers['outer_steps']} Adam "
        f"steps each; {numbers['seconds']:.1f} s"
    )


def _plot(data, figure) -> None:
    train, paths, numbers, (clean, observed, restored) = data
    left, right = figure.subplots(1, 2)
    times = np.geomspace(0.5, T1_MAX, 300)
    left.loglog(times, [train.flow_loss(np.log(t)) for t in times], "k", lw=1)
    for (name, path), marker in zip(paths.items(), ("o", "x")):
        losses = [train.flow_loss(s) for s in path]
        left.loglog(np.exp(path), losses, marker, ms=3, label=f"{name} path")
    left.axvline(numbers["t_star"], color="grey", ls="--", lw=1, label="t*")
    left.set(xlabel="stopping time t1", ylabel="training MSE", title="outer loss")
    left.legend()
    grid = np.arange(N)
    right.plot(grid, clean, "k", label="clean")
    right.plot(grid, observed, ".", ms=3, label="blurred + noise")
    right.plot(grid, restored, label="flow at t*")
    right.set(xlabel="grid point", title="a held-out signal")
    right.legend()


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples/output", help="output directory")
    parser.add_argument("--quick", action="store_true", help="fewer signals, steps")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    main(**vars(_parse()))
