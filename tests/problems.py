"""Closed-form bilevel problems for the hypergradient tests (float64).

Each problem gives the inner objective ``fn(x, args)``, an outer loss
``outer(x, args)``, parameters, a start ``x0``, a gradient-descent step ``1/L``
and the exact hypergradient ``d outer(x*(args), args) / d args`` (closed form, or
for logistic regression a Newton solve to machine precision plus the dense
implicit-function-theorem formula).
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from helpers import difference_1d, difference_2d, spd_matrix


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    fn: Callable
    outer: Callable
    args: jnp.ndarray
    x0: jnp.ndarray
    lipschitz: float
    exact: np.ndarray


def _tikhonov(name, shape, per_pixel, seed):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    D = difference_1d(n) if len(shape) == 1 else difference_2d(*shape)
    D = np.asarray(D)
    y = rng.normal(size=shape)
    target = rng.normal(size=shape)
    m = D.shape[0]
    lam = rng.uniform(0.2, 1.0, size=m) if per_pixel else np.asarray(0.7)
    Dj = jnp.asarray(D)

    def fn(x, lam):
        dx = Dj @ jnp.ravel(x)
        return 0.5 * jnp.sum((x - y) ** 2) + 0.5 * jnp.sum(lam * dx**2)

    def outer(x, lam):
        return 0.5 * jnp.sum((x - target) ** 2)

    # Closed form: H = I + D^T diag(lam) D, x* = H^{-1} y,
    # d outer/d lam_i = -(D x*)_i (D H^{-1} (x* - t))_i   (summed for scalar lam).
    weights = lam * np.ones(m)
    H = np.eye(n) + D.T @ (weights[:, None] * D)
    xs = np.linalg.solve(H, y.ravel())
    adj = np.linalg.solve(H, xs - target.ravel())
    per = -(D @ xs) * (D @ adj)
    exact = per if per_pixel else np.asarray(per.sum())
    # Largest Hessian eigenvalue bounds the gradient-descent step.
    L = float(np.linalg.eigvalsh(H).max())
    return Problem(name, fn, outer, jnp.asarray(lam), jnp.zeros(shape), L, exact)


def _quadratic(cond, n=12, seed=0):
    A = np.asarray(spd_matrix(n, cond, seed))
    rng = np.random.default_rng(seed + 1)
    theta = rng.normal(size=n)
    target = rng.normal(size=n)
    Aj = jnp.asarray(A)

    def fn(x, theta):
        return 0.5 * x @ (Aj @ x) - theta @ x

    def outer(x, theta):
        return 0.5 * jnp.sum((x - target) ** 2)

    xs = np.linalg.solve(A, theta)
    exact = np.linalg.solve(A, xs - target)  # A symmetric: d x*/d theta = A^{-1}
    return Problem(
        f"quadratic_cond{cond:g}",
        fn,
        outer,
        jnp.asarray(theta),
        jnp.zeros(n),
        1.0,
        exact,
    )


def _ridge(seed=0, n=40, p=6):
    rng = np.random.default_rng(seed)
    X, Xv = rng.normal(size=(n, p)) / np.sqrt(n), rng.normal(size=(n, p)) / np.sqrt(n)
    w_true = rng.normal(size=p)
    b = X @ w_true + 0.1 * rng.normal(size=n)
    bv = Xv @ w_true + 0.1 * rng.normal(size=n)
    lam = rng.uniform(0.1, 0.5, size=p)
    Xj, Xvj = jnp.asarray(X), jnp.asarray(Xv)

    def fn(w, lam):
        return 0.5 * jnp.sum((Xj @ w - b) ** 2) + 0.5 * jnp.sum(lam * w**2)

    def outer(w, lam):
        return 0.5 * jnp.sum((Xvj @ w - bv) ** 2)

    # w* = H^{-1} X^T b with H = X^T X + diag(lam); d outer/d lam = -w* * H^{-1} g.
    H = X.T @ X + np.diag(lam)
    ws = np.linalg.solve(H, X.T @ b)
    exact = -ws * np.linalg.solve(H, Xv.T @ (Xv @ ws - bv))
    L = float(np.linalg.eigvalsh(H).max())
    return Problem("ridge", fn, outer, jnp.asarray(lam), jnp.zeros(p), L, exact)


def _logistic(seed=0, n=60, p=5):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.normal(size=(n, p)))
    Xv = jnp.asarray(rng.normal(size=(n, p)))
    w_true = rng.normal(size=p)
    y = jnp.asarray(np.sign(np.asarray(X) @ w_true + 0.5 * rng.normal(size=n)))
    yv = jnp.asarray(np.sign(np.asarray(Xv) @ w_true + 0.5 * rng.normal(size=n)))
    lam = jnp.asarray(rng.uniform(1.0, 3.0, size=p))

    def fn(w, lam):
        return jnp.sum(jnp.logaddexp(0.0, -y * (X @ w))) + 0.5 * jnp.sum(lam * w**2)

    def outer(w, lam):
        return jnp.sum(jnp.logaddexp(0.0, -yv * (Xv @ w)))

    # Reference: Newton to machine precision, then the dense IFT formula.
    w = jnp.zeros(p)
    for _ in range(30):
        w = w - jnp.linalg.solve(jax.hessian(fn)(w, lam), jax.grad(fn)(w, lam))
    H = jax.hessian(fn)(w, lam)
    adj = jnp.linalg.solve(H, jax.grad(outer)(w, lam))
    exact = -np.asarray(w * adj)  # d/d lam_i of grad_w fn = w_i e_i
    L = float(0.25 * np.linalg.norm(np.asarray(X), 2) ** 2 + lam.max())
    return Problem("logistic", fn, outer, lam, jnp.zeros(p), L, exact)


def closed_form_problems() -> list[Problem]:
    return [
        _tikhonov("tikhonov1d_scalar", (16,), False, 0),
        _tikhonov("tikhonov1d_pixel", (16,), True, 1),
        _tikhonov("tikhonov2d_scalar", (5, 4), False, 2),
        _tikhonov("tikhonov2d_pixel", (5, 4), True, 3),
        _quadratic(10.0),
        _ridge(),
        _logistic(),
    ]


quadratic = _quadratic
