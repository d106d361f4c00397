"""`train_learned_solver`: a learned inner solver and the problem's parameters (a
learned prior) trained jointly through `argmin`, the 4DVarNet scheme."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray, PyTree

from .._progress import AbstractProgress, check_progress, NoProgress
from .._structure import by_structure
from ..bilevel import AbstractHypergradient, AbstractInnerSolver, argmin, Unrolled
from ..bilevel._argmin import check_strategy_pair
from ..bilevel._problem import check_problem
from ._batches import epoch_batches
from ._options import AbstractBatching, check_batching, Vectorised
from ._supervised import (
    AbstractBatchLoss,
    check_optimiser,
    check_steps,
    train_supervised,
)
from ._windows import stack_windows, take


def _cost(control, problem):
    return problem.cost(control)


class _JointLoss(AbstractBatchLoss):
    """The batch mean of ``outer_loss(to_state(x_K), params, window)``, with
    ``x_K = argmin(cost, first_guess)`` by the model's solver; the model is
    ``(solver, params)``."""

    problem_fn: Callable = eqx.field(static=True, converter=by_structure)
    outer_loss: Callable = eqx.field(static=True, converter=by_structure)
    hypergradient: AbstractHypergradient
    batching: AbstractBatching

    def __call__(self, model, data, batch):
        solver, params = model

        def one(window):
            problem = self.problem_fn(params, window)
            # `throw=False`: a learned solver is tuned to its K steps and rarely
            # meets a tight convergence test; the loss is that of the K-th iterate.
            sol = argmin(
                _cost,
                problem.first_guess(),
                problem,
                solver=solver,
                hypergradient=self.hypergradient,
                throw=False,
            )
            return self.outer_loss(problem.to_state(sol.value), params, window)

        return jnp.mean(self.batching.map(one, take(data, batch)))


def train_learned_solver(
    solver: AbstractInnerSolver,
    params: PyTree,
    problem_fn: Callable[[PyTree, PyTree], Any],
    outer_loss: Callable[[PyTree, PyTree, PyTree], Array],
    data: Any,
    *,
    optimiser: optax.GradientTransformation,
    steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    hypergradient: AbstractHypergradient = Unrolled(),
    batching: AbstractBatching = Vectorised(),
    progress: AbstractProgress = NoProgress(),
) -> tuple[AbstractInnerSolver, PyTree, np.ndarray]:
    """Train an inner solver and the problem's parameters together (4DVarNet).

    Each step takes one `optimiser` step, on the solver's and the parameters'
    floating arrays together, on the batch mean of ``outer_loss(x_K, params,
    window)``, where ``x_K`` is ``problem.to_state`` of the `argmin` of
    ``problem_fn(params, window).cost`` from its `first_guess`, by `solver`
    (e.g. a `LearnedGradientDescent`), differentiated by `hypergradient`.

    Unlike `fit`, which learns `params` for a fixed solver, this also learns the
    solver: the analysis ``x_K`` after the solver's ``K`` steps is what is
    trained, not the exact minimiser (the prior and the solver adapt to each
    other). Only strategies that differentiate the iterations apply to the
    solver's arrays: `Unrolled()` (default, all ``K`` steps) or `Truncated(k)`
    (the last ``k`` steps: 4DVarNet's truncated back-propagation, O(k)
    memory). `Implicit` gives zero w.r.t. the solver (use `fit` to learn
    `params` alone with it).

    **Arguments:**

    - `solver`: the inner solver to train (its inexact arrays are learnt).
    - `params`: the problem's parameters, any pytree (its inexact arrays are
      learnt; `None` to train the solver alone).
    - `problem_fn`, `outer_loss`: as for `fit`: ``(params, window) -> problem``
      (an `AbstractProblem`) and ``(state, params, window) -> scalar``.
    - `data`: the training windows, as for `fit` (a Dataset with a `window`
      dim, a pytree with a leading window axis, or a list of windows).
    - `optimiser`: an optax `GradientTransformation`; `steps` (>= 1);
      `batch_size` windows per step, in ``[1, windows]``; `key` for the batches
      (one shuffle per epoch).
    - `hypergradient`: `Unrolled()` (default) or `Truncated(k)`.
    - `batching`: `Vectorised()` (default, a `vmap`) or `Sequential()`.
    - `progress`: `NoProgress()` (default) or `TqdmProgress()`.

    **Returns:** ``(solver, params, losses)``: the trained solver and
    parameters, and the batch loss before each step (NumPy, ``(steps,)``).

    **Raises:** `TypeError` for a wrong solver, strategy, optimiser, batching or
    progress object; `ValueError` for a strategy that does not differentiate the
    solver (`Implicit`, `ForwardMode`, `FiniteDifference`: see
    `AbstractHypergradient.differentiates_solver`), an incompatible solver and
    strategy, bad
    `data`, `steps` or `batch_size`; `FloatingPointError` if the loss becomes NaN
    or inf (lower the learning rate).
    """
    owner = "train_learned_solver"
    check_strategy_pair(solver, hypergradient)
    if not hypergradient.differentiates_solver:
        raise ValueError(
            f"{owner}(hypergradient={hypergradient!r}) does not differentiate the "
            "solver's own arrays (its derivative is that of the exact minimiser, "
            "or it is not reverse mode): the solver would not learn. Use "
            "Unrolled() or Truncated(k); to learn `params` alone with Implicit(), "
            "use `fit`."
        )
    check_optimiser(owner, optimiser)
    check_batching(batching, None, owner)
    check_progress(owner, progress)
    check_steps(owner, steps)
    windows, num = stack_windows(data, owner)
    if not isinstance(batch_size, int) or not 1 <= batch_size <= num:
        raise ValueError(
            f"{owner}(batch_size=...) must be an int in [1, {num}] (the number of "
            f"windows), got {batch_size!r}."
        )
    check_problem(
        f"{owner}(problem_fn=...) returned a problem that is not one",
        problem_fn(params, take(windows, np.asarray(0))),
    )
    batches = epoch_batches(key, num, batch_size, steps)
    loss = _JointLoss(problem_fn, outer_loss, hypergradient, batching)
    (solver, params), losses, _ = train_supervised(
        owner,
        (solver, params),
        loss,
        windows,
        batches,
        optimiser=optimiser,
        progress=progress,
    )
    return solver, params, losses
