"""LISTA: ISTA for the lasso unrolled into a network with learned weights.

The lasso ``min_z |D z - y|² / 2 + lam |z|_1`` is solved by ISTA,
``z <- soft(z - Dᵀ(D z - y) / L, lam / L)``. Written as
``z <- soft(W_e y + S z, theta)`` with ``W_e = Dᵀ/L``, ``S = I - DᵀD/L`` and
``theta = lam/L``, a fixed number of iterations is a recurrent network; LISTA
learns ``W_e``, ``S`` and ``theta`` so that few layers approximate the lasso
solutions of a given family of signals (Gregor and LeCun 2010).
"""

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._custom_types import ScalarLike
from .._progress import AbstractProgress, check_progress, NoProgress
from ..bilevel import L1, ProximalGradient
from ._batches import epoch_batches
from ._supervised import (
    AbstractBatchLoss,
    check_optimiser,
    check_steps,
    train_supervised,
)


def _soft_threshold(u: Array, threshold: Array) -> Array:
    # Written out rather than `L1(weight=theta)(u, 1.0, None)`: `L1` rejects
    # negative weights eagerly, while a learned threshold is an unconstrained
    # parameter (a negative one is unusual but must not break a forward pass).
    return jnp.sign(u) * jnp.maximum(jnp.abs(u) - threshold, 0.0)


def _check_dictionary(owner: str, dictionary: ArrayLike) -> Array:
    dictionary = jnp.asarray(dictionary)
    if dictionary.ndim != 2 or 0 in dictionary.shape:
        raise ValueError(
            f"{owner}(D=...) must be a non-empty matrix of shape (obs, code), got "
            f"shape {dictionary.shape}."
        )
    if not jnp.issubdtype(dictionary.dtype, jnp.floating):
        raise ValueError(
            f"{owner}(D=...) must be floating point, got dtype {dictionary.dtype}."
        )
    return dictionary


def _check_lam(owner: str, lam: ScalarLike) -> None:
    if jnp.ndim(lam) != 0:
        raise ValueError(
            f"{owner}(lam=...) must be a scalar, got shape {jnp.shape(lam)}."
        )
    try:
        value = float(lam)
    except jax.errors.ConcretizationTypeError:  # traced (under jit): not checkable
        return
    if not value > 0:  # also rejects NaN
        raise ValueError(f"{owner}(lam=...) must be > 0, got {lam}.")


def _lipschitz(dictionary: Array) -> Array:
    # L = the largest eigenvalue of DᵀD = |D|₂², the Lipschitz constant of the
    # gradient of |D z - y|² / 2; ISTA converges with step 1/L.
    return jnp.linalg.norm(dictionary, ord=2) ** 2


class LISTA(eqx.Module):
    """Learned ISTA (Gregor and LeCun 2010): ``K`` layers of
    ``z <- soft_threshold(W_e y + S_k z, theta_k)`` from ``z = 0``.

    Built by `LISTA.from_dictionary`, whose untrained network is exactly ``K``
    steps of ISTA with step ``1/L`` on the lasso ``|D z - y|²/2 + lam |z|_1``;
    trained by `train_lista`. ``net(y)`` maps one observation of shape ``(obs,)``
    to a code of shape ``(code,)`` (use `jax.vmap` for a batch); `LISTA.iterates`
    returns every layer's output.

    **Fields:**

    - `encoder`: ``W_e``, shape ``(code, obs)``, shared by all layers.
    - `inhibition`: ``S``, shape ``(code, code)`` when shared by all layers (the
      default, Gregor and LeCun's recurrent form), or ``(layers, code, code)``
      when `untied_inhibition` (one matrix per layer).
    - `thresholds`: ``theta``, shape ``(layers, code)``: a threshold per layer and
      per coefficient (always untied; they cost little and let early layers
      threshold harder than late ones).
    - `untied_inhibition`: static; see `inhibition`. The default `False` has
      ``code²`` inhibition weights instead of ``layers * code²`` and generalises
      better from a few thousand examples: in `examples/lista_sparse_coding.py`
      (16 layers, 5000 examples, 1500 Adam steps) the untied network fitted the
      training set better but its held-out error was about twice the tied one's
      (0.0070 against 0.0037 for seed 0, 0.0068 against 0.0029 for seed 1).

    **Cost:** ``O(code * obs + layers * code²)`` per observation (``W_e y`` is
    computed once). Reverse-mode training stores every layer's output:
    ``O(layers * code)`` memory per observation.

    **Limits:** LISTA approximates the lasso map for signals like its training
    data; it is not a solver (no convergence test, no guarantee on other data).
    It takes one observation vector; a different dictionary means retraining.

    ??? cite "References"

        Gregor, LeCun. *Learning fast approximations of sparse coding*. ICML 2010.
        Chen, Liu, Wang, Yin. *Theoretical linear convergence of unfolded ISTA and
        its practical weights and thresholds*. NeurIPS 2018.
    """

    encoder: Float[Array, "code obs"]
    inhibition: Float[Array, "code code"] | Float[Array, "layers code code"]
    thresholds: Float[Array, "layers code"]
    untied_inhibition: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        code, obs = self.encoder.shape
        layers = self.thresholds.shape[0]
        expected = (layers, code, code) if self.untied_inhibition else (code, code)
        if self.inhibition.shape != expected:
            raise ValueError(
                f"LISTA(inhibition=...) must have shape {expected} (code={code}, "
                f"layers={layers}, untied_inhibition={self.untied_inhibition}), got "
                f"{self.inhibition.shape}."
            )
        if self.thresholds.shape != (layers, code) or layers < 1:
            raise ValueError(
                f"LISTA(thresholds=...) must have shape (layers, {code}) with "
                f"layers >= 1, got {self.thresholds.shape}."
            )

    @classmethod
    def from_dictionary(
        cls,
        D: Float[ArrayLike, "obs code"],
        lam: ScalarLike,
        num_layers: int,
        *,
        untied_inhibition: bool = False,
    ) -> "LISTA":
        """The network equal to `num_layers` steps of ISTA from ``z = 0``.

        ``W_e = Dᵀ/L``, ``S = I - DᵀD/L`` (copied to every layer when
        `untied_inhibition`), ``theta = lam/L`` for every layer and coefficient,
        with ``L`` the largest eigenvalue of ``DᵀD``.

        **Arguments:**

        - `D`: the dictionary, shape ``(obs, code)``, floating point.
        - `lam`: the lasso weight (> 0).
        - `num_layers`: ``K >= 1``.
        - `untied_inhibition`: one ``S`` per layer (see `LISTA`).

        **Returns:** a `LISTA` in the dtype of `D`.

        **Raises:** `ValueError` naming `D`, `lam` or `num_layers`.
        """
        D = _check_dictionary("LISTA.from_dictionary", D)
        _check_lam("LISTA.from_dictionary", lam)
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(
                f"LISTA.from_dictionary(num_layers=...) must be an int >= 1, got "
                f"{num_layers!r}."
            )
        code = D.shape[1]
        lipschitz = _lipschitz(D)
        inhibition = jnp.eye(code, dtype=D.dtype) - D.T @ D / lipschitz
        if untied_inhibition:
            inhibition = jnp.broadcast_to(inhibition, (num_layers, code, code))
        thresholds = jnp.broadcast_to(
            jnp.asarray(lam, D.dtype) / lipschitz, (num_layers, code)
        )
        return cls(D.T / lipschitz, inhibition, thresholds, untied_inhibition)

    @property
    def num_layers(self) -> int:
        """The number of layers ``K``."""
        return self.thresholds.shape[0]

    def _check_y(self, y: Array) -> None:
        obs = self.encoder.shape[1]
        if y.shape != (obs,):
            raise ValueError(
                f"LISTA(y) takes one observation of shape ({obs},), got y of shape "
                f"{y.shape}; map over a batch with jax.vmap(net)."
            )

    def iterates(self, y: Float[Array, " obs"]) -> Float[Array, "layers code"]:
        """Every layer's output ``z_1, ..., z_K`` for one observation `y`.

        **Arguments:** `y`, shape ``(obs,)``.

        **Returns:** shape ``(layers, code)``; the last row is ``net(y)``.

        **Raises:** `ValueError` if `y` is not of shape ``(obs,)``.
        """
        self._check_y(y)
        drive = self.encoder @ y
        inhibition = self.inhibition if self.untied_inhibition else None

        def layer(z, xs):
            weights, theta = xs
            weights = self.inhibition if weights is None else weights
            z = _soft_threshold(drive + weights @ z, theta)
            return z, z

        _, zs = lax.scan(layer, jnp.zeros_like(drive), (inhibition, self.thresholds))
        return zs

    def __call__(self, y: Float[Array, " obs"]) -> Float[Array, " code"]:
        """The last layer's output for one observation `y` of shape ``(obs,)``."""
        return self.iterates(y)[-1]


def ista_iterates(
    D: Float[ArrayLike, "obs code"],
    lam: ScalarLike,
    y: Float[ArrayLike, " obs"],
    num_steps: int,
) -> Float[Array, "steps code"]:
    """The first `num_steps` ISTA iterates for the lasso ``|D z - y|²/2 + lam |z|_1``.

    The reference LISTA is compared with: it runs the package's own
    `ProximalGradient` (no acceleration, step ``1/L``, ``L`` the largest
    eigenvalue of ``DᵀD``) with the `L1` prox from ``z = 0``, step by step, and
    keeps every iterate (`argmin` returns only the last). Use `jax.vmap` over `y`
    for a batch.

    **Arguments:**

    - `D`: the dictionary, shape ``(obs, code)``.
    - `lam`: the lasso weight (> 0).
    - `y`: one observation, shape ``(obs,)``.
    - `num_steps`: the number of iterations (>= 1).

    **Returns:** ``z_1, ..., z_num_steps``, shape ``(num_steps, code)``.

    **Raises:** `ValueError` naming `D`, `lam`, `y` or `num_steps`.
    """
    D = _check_dictionary("ista_iterates", D)
    _check_lam("ista_iterates", lam)
    y = jnp.asarray(y)
    if y.shape != D.shape[:1]:
        raise ValueError(
            f"ista_iterates(y=...) must have shape ({D.shape[0]},) (the rows of D), "
            f"got {y.shape}."
        )
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(
            f"ista_iterates(num_steps=...) must be an int >= 1, got {num_steps!r}."
        )
    solver = ProximalGradient(
        prox=L1(weight=lam),
        step_size=1.0 / _lipschitz(D),
        acceleration=False,
        max_steps=num_steps,
        rtol=0.0,
    )

    def fn(z, args):
        del args
        return 0.5 * jnp.sum((D @ z - y) ** 2)

    z0 = jnp.zeros(D.shape[1], D.dtype)

    def step(carry, _):
        z, state = solver.step(fn, carry[0], None, carry[1])
        return (z, state), z

    _, zs = lax.scan(step, (z0, solver.init(fn, z0, None)), None, length=num_steps)
    return zs


def _check_training_data(model: LISTA, observations, targets, batch_size, steps):
    code, obs = model.encoder.shape
    observations, targets = jnp.asarray(observations), jnp.asarray(targets)
    if observations.ndim != 2 or observations.shape[1] != obs:
        raise ValueError(
            f"train_lista(observations=...) must have shape (examples, {obs}), got "
            f"{observations.shape}."
        )
    if targets.shape != (observations.shape[0], code):
        raise ValueError(
            f"train_lista(targets=...) must have shape ({observations.shape[0]}, "
            f"{code}) (one code per observation), got {targets.shape}."
        )
    for name, value in (("observations", observations), ("targets", targets)):
        if not np.all(np.isfinite(np.asarray(value))):
            raise ValueError(f"train_lista({name}=...) contains NaN or inf.")
    examples = observations.shape[0]
    if not isinstance(batch_size, int) or not 1 <= batch_size <= examples:
        raise ValueError(
            f"train_lista(batch_size=...) must be an int in [1, {examples}] (the "
            f"number of examples), got {batch_size!r}."
        )
    check_steps("train_lista", steps)
    return observations, targets


class _CodeError(AbstractBatchLoss):
    """The mean squared error of the last layer's codes on the step's batch."""

    def __call__(self, net, data, batch):
        observations, targets = data
        return jnp.mean((jax.vmap(net)(observations[batch]) - targets[batch]) ** 2)


# Loose annotation on `progress`: the check below gives a message naming it.
def train_lista(
    model: LISTA,
    observations: Float[ArrayLike, "examples obs"],
    targets: Float[ArrayLike, "examples code"],
    *,
    optimiser: optax.GradientTransformation,
    steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    progress: AbstractProgress = NoProgress(),
) -> tuple[LISTA, np.ndarray]:
    """Train `model` by unrolling: reverse mode through all its layers, with optax.

    The examples are shuffled once per epoch and cut into batches of
    `batch_size` (a remainder smaller than a batch is left out of that epoch).
    Each step takes one `optimiser` step on the mean squared error between the
    last layer's output and the targets, ``mean_{i, j} (net(y_i)_j - z_ij)²``.

    The intended targets are the lasso solutions ``z_i*`` of the observations
    (Gregor and LeCun's choice, and the seed notes' bilevel form): LISTA then
    learns to approximate the same map that ISTA converges to, so the two are
    compared on one metric, and the error can go to zero. Training on the true
    sparse codes instead also works, but mixes the lasso's own error (shrinkage
    bias, noise) into the target.

    **Arguments:**

    - `model`: the initial `LISTA`, e.g. from `LISTA.from_dictionary`.
    - `observations`: shape ``(examples, obs)``.
    - `targets`: the codes to match, shape ``(examples, code)``.
    - `optimiser`: an optax `GradientTransformation`, e.g. ``optax.adam(1e-3)``.
    - `steps`: the number of optimiser steps (>= 1).
    - `batch_size`: examples per step, in ``[1, examples]``.
    - `key`: a PRNG key for the batches.
    - `progress`: a progress meter, `NoProgress()` (default) or
      `TqdmProgress()`.

    **Returns:** ``(trained_model, losses)``, with `losses` the batch loss before
    each step, a NumPy array of shape ``(steps,)``.

    **Raises:** `TypeError` if `optimiser` is not an optax transformation or
    `progress` not a progress meter; `ValueError` naming `observations`,
    `targets`, `batch_size` or `steps` for bad shapes or values;
    `FloatingPointError` if the loss becomes NaN or inf (lower the learning
    rate).
    """
    if not isinstance(model, LISTA):
        raise TypeError(f"train_lista(model=...) must be a LISTA, got {model!r}.")
    check_optimiser("train_lista", optimiser)
    check_progress("train_lista", progress)
    observations, targets = _check_training_data(
        model, observations, targets, batch_size, steps
    )
    batches = epoch_batches(key, observations.shape[0], batch_size, steps)
    model, losses, _ = train_supervised(
        "train_lista",
        model,
        _CodeError(),
        (observations, targets),
        batches,
        optimiser=optimiser,
        progress=progress,
    )
    return model, losses
