"""The problem both hypergradient benchmarks differentiate: Tikhonov denoising

    x*(λ) = argmin_x ½‖x − y‖² + ½ λ ‖D x‖²        (D: forward differences)

of a 1D signal or a 2D image, with the outer loss ``½‖x*(λ) − x_true‖²`` and its
exact derivative ``−(x* − x_true)ᵀ (I + λ DᵀD)⁻¹ DᵀD x*`` in float64 NumPy: a
dense solve in 1D, and in 2D a DCT-II diagonalisation (``DᵀD`` with ``jnp.diff``
differences is the Neumann Laplacian, whose eigenvectors are the DCT-II basis).

Used by ``hypergradients.py`` (accuracy and time against the closed form and
optimistix) and ``hypergradient_memory.py`` (memory against inner steps).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft


def _dt(d: np.ndarray) -> np.ndarray:
    """Dᵀd along the last axis for forward differences (zero flux at both ends)."""
    pad = [(0, 0)] * (d.ndim - 1) + [(1, 1)]
    return -np.diff(np.pad(d, pad), axis=-1)


def laplacian_np(x: np.ndarray) -> np.ndarray:
    """DᵀD x, summed over all axes (the Neumann graph Laplacian)."""
    out = np.zeros_like(x)
    for axis in range(x.ndim):
        moved = np.moveaxis(x, axis, -1)
        out += np.moveaxis(_dt(np.diff(moved, axis=-1)), -1, axis)
    return out


def solve_np(v: np.ndarray, lam: float) -> np.ndarray:
    """``(I + λ DᵀD)⁻¹ v`` in float64: dense in 1D, DCT-II diagonalisation in 2D."""
    if v.ndim == 1:
        n = v.size
        lap = np.diag(np.r_[1.0, 2.0 * np.ones(n - 2), 1.0])
        lap -= np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
        return np.linalg.solve(np.eye(n) + lam * lap, v)
    eig = 0.0
    for axis, n in enumerate(v.shape):
        e = 2.0 - 2.0 * np.cos(np.pi * np.arange(n) / n)
        eig = eig + np.expand_dims(e, tuple(a for a in range(v.ndim) if a != axis))
    coeffs = scipy.fft.dctn(v, type=2, norm="ortho") / (1.0 + lam * eig)
    return scipy.fft.idctn(coeffs, type=2, norm="ortho")


@dataclasses.dataclass
class Problem:
    """One denoising problem with its exact answer."""

    name: str
    y: jax.Array
    x_true: jax.Array
    lam: float
    lipschitz: float
    x_star: np.ndarray
    loss: float
    hypergrad: float

    def fn(self, x, lam):
        """Inner objective ½‖x − y‖² + ½λ‖Dx‖², matrix-free (`jnp.diff`)."""
        smooth = sum(jnp.sum(jnp.diff(x, axis=a) ** 2) for a in range(x.ndim))
        return 0.5 * jnp.sum((x - self.y) ** 2) + 0.5 * lam * smooth

    def outer(self, x):
        return 0.5 * jnp.sum((x - self.x_true) ** 2)

    def grad_np(self, x: np.ndarray) -> np.ndarray:
        return x - np.asarray(self.y) + self.lam * laplacian_np(x)


def make_problem(shape: tuple[int, ...], lam: float) -> Problem:
    """A piecewise-smooth signal (``shape = (n,)``) or image (``(nx, ny)``) plus
    Gaussian noise (σ = 0.1), with weight `lam`."""
    rng = np.random.default_rng(0)
    if len(shape) == 1:
        t = np.linspace(0.0, 1.0, shape[0])
        x_true = np.sin(2 * np.pi * t) + 0.5 * (t > 0.5)
        name = f"1D n={shape[0]}"
    else:
        u, v = np.meshgrid(*(np.linspace(0.0, 1.0, n) for n in shape), indexing="ij")
        x_true = np.cos(3 * u) * np.sin(2 * v) + 0.5 * (
            (u - 0.5) ** 2 + (v - 0.5) ** 2 < 0.1
        )
        name = f"2D {shape[0]}x{shape[1]}"
    y = x_true + 0.1 * rng.normal(size=x_true.shape)
    x_star = solve_np(y, lam)
    # dL/dλ = (x* − x_true)ᵀ dx*/dλ with dx*/dλ = −(I + λL)⁻¹ L x*.
    dx = -solve_np(laplacian_np(x_star), lam)
    return Problem(
        name=name,
        y=jnp.asarray(y),
        x_true=jnp.asarray(x_true),
        lam=lam,
        lipschitz=1.0 + 4.0 * x_true.ndim * lam,
        x_star=x_star,
        loss=float(0.5 * np.sum((x_star - x_true) ** 2)),
        hypergrad=float(np.sum((x_star - x_true) * dx)),
    )
