"""The problem zoo: small problems with closed-form minimisers and hypergradients."""

import contextlib
import logging

import jax
import jax.numpy as jnp
import numpy as np


def difference_1d(n: int) -> jnp.ndarray:
    """Forward-difference matrix D (n-1, n): (Dx)_i = x_{i+1} - x_i."""
    return jnp.asarray(np.eye(n - 1, n, k=1) - np.eye(n - 1, n))


def difference_2d(nx: int, ny: int) -> jnp.ndarray:
    """Stacked horizontal and vertical difference operators on an (nx, ny) image."""
    dx = np.kron(np.asarray(difference_1d(nx)), np.eye(ny))
    dy = np.kron(np.eye(nx), np.asarray(difference_1d(ny)))
    return jnp.asarray(np.vstack([dx, dy]))


def rel_error(a, b) -> float:
    """|a - b| / |b| over flattened arrays."""
    a, b = np.ravel(np.asarray(a)), np.ravel(np.asarray(b))
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def spd_matrix(n: int, cond: float, seed: int = 0) -> jnp.ndarray:
    """Symmetric positive-definite matrix with eigenvalues log-spaced in [1/cond, 1]."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    eig = np.logspace(-np.log10(cond), 0, n)
    return jnp.asarray((q * eig) @ q.T)


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def compilations():
    """Collect JAX's "Compiling ..." log messages (one per compiled program) while
    the block runs: ``with compilations() as messages: ...``."""
    handler, logger = _Messages(), logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield handler.messages
    finally:
        logger.removeHandler(handler)
