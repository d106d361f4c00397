"""The outer loss of given parameters over windows, from cold inner solves."""

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Float, PyTree

from ..bilevel import AbstractHypergradient, AbstractInnerSolver, Implicit
from ._options import AbstractBatching, check_batching, Vectorised
from ._step import evaluate, StepConfig
from ._windows import stack_windows


# `evaluate` never uses `StepConfig.optimiser`.
_NO_OPTIMISER = optax.identity()


def evaluate_outer_loss(
    problem_fn: Callable[[PyTree, PyTree], Any],
    outer_loss: Callable[[PyTree, PyTree, PyTree], Any],
    params: PyTree,
    data: Any,
    *,
    solver: AbstractInnerSolver,
    hypergradient: AbstractHypergradient = Implicit(),
    batching: AbstractBatching = Vectorised(),
) -> Float[np.ndarray, " num_windows"]:
    """The outer loss of `params` on every window, as `fit` defines it.

    Each window's inner problem ``problem_fn(params, window)`` is solved from its
    first guess (a cold solve, with `hypergradient`'s own forward solve), then
    ``outer_loss(analysis, params, window)`` is evaluated: e.g. to compare learnt
    parameters with the true ones, or to score held-out windows. Arguments as for
    `fit` (`batching`: `Vectorised()` solves the windows side by side,
    `Sequential()` one after another); `data` in any form `fit` takes.

    Returns the losses, shape ``(num_windows,)`` (take ``.mean()`` for `fit`'s
    loss). Raises `RuntimeError` when an inner solve did not converge (the loss
    of an unconverged analysis is not the outer loss), naming the windows;
    `TypeError` for a `batching` that is not `Vectorised()`/`Sequential()`.

    Compiled once per structure of ``problem_fn`` and ``outer_loss`` (code and
    closed-over values, see `fit`), solver, strategy, batching and shapes of
    `params` and `data`: call it again with equal (even freshly built)
    functions and options, and nothing is recompiled.
    """
    windows, _ = stack_windows(data, owner="evaluate_outer_loss")
    check_batching(batching, None, owner="evaluate_outer_loss")
    config = StepConfig(
        problem_fn,
        outer_loss,
        _NO_OPTIMISER,
        solver,
        hypergradient,
        batching=batching,
    )
    losses, converged = evaluate(config, params, windows)
    converged = np.asarray(converged)
    if not converged.all():
        failed = np.flatnonzero(~converged)
        raise RuntimeError(
            f"evaluate_outer_loss: {failed.size} of {converged.size} inner solves did "
            f"not converge (windows {failed[:10].tolist()}"
            f"{'...' if failed.size > 10 else ''}); loosen the solver's tolerance "
            "or raise its max_steps."
        )
    return np.asarray(jnp.asarray(losses))
