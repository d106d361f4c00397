"""A learned-gradient solver (4DVarNet style): an LSTM turns cost gradients into steps.

For a differentiable cost ``U(x)`` (e.g. the 4DVar cost of one window), ``K`` steps

    g_k = grad U(x_k)
    (h_{k+1}, c_{k+1}) = ConvLSTM(g_k / |g_0|_rms, (h_k, c_k))
    x_{k+1} = x_k - lr * g_k - readout(h_{k+1})

from ``x_0`` given. The LSTM and its readout are trained by unrolling the ``K``
steps (reverse mode through all of them, second derivatives of ``U`` included) to
bring ``x_K`` close to the truth over a set of windows: a learned optimiser in the
sense of Andrychowicz et al. (2016), with the convolutional LSTM of 4DVarNet
(Fablet et al. 2021).
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree

from .._custom_types import Args, Scalar, ScalarLike
from .._progress import AbstractProgress, check_progress, NoProgress
from ..priors._networks import follow_dtype
from ._batches import epoch_batches
from ._conv_lstm import ConvLSTMCell1D
from ._supervised import (
    AbstractBatchLoss,
    check_optimiser,
    check_steps,
    train_supervised,
)


class LearnedGradientSolver(eqx.Module):
    """``K`` learned gradient steps for a cost ``fn(x, args)`` on a 1D grid.

    From ``x_0``, for ``k = 0 .. K-1``:

    - ``g_k = grad_x fn(x_k, args)``;
    - ``(h_{k+1}, c_{k+1}) = cell(g_k / s, (h_k, c_k))``, from ``h_0 = c_0 = 0``, with
      ``s`` the root-mean-square of ``g_0`` (as in 4DVarNet: the network sees
      gradients of unit size whatever the window's amount of data);
    - ``x_{k+1} = x_k - exp(log_learning_rate) * g_k - readout(h_{k+1})``.

    The readout starts at zero, so the untrained solver **is** ``K`` steps of
    gradient descent with the initial learning rate (tested to 1e-12), and training
    starts from that baseline, as LISTA starts from ISTA. Train it with
    `train_learned_gradient_solver`.

    **Arguments:**

    - `num_steps`: ``K >= 1`` (static).
    - `learning_rate`: the initial step of the gradient term (> 0; learned, as
      its logarithm).
    - `hidden_size`: LSTM channels per grid point (default 8).
    - `kernel_size`: the cell's convolution width (odd; default 5). 1 gives a
      coordinate-wise LSTM, which cannot move information between grid points.
    - `periodic`: circular padding (default `True`).
    - `dtype`, `key`.

    **Call:** ``solver(fn, x0, args)`` gives ``x_K``, shape ``(n,)``;
    ``solver.iterates(fn, x0, args)`` gives ``x_1 .. x_K``, shape ``(K, n)``.
    `fn(x, args) -> scalar` is the signature of `argmin`'s objective.

    **Cost:** ``K`` gradients of `fn` and ``K`` cell calls per solve; training by
    reverse mode differentiates the gradients too (Hessian-vector products of
    `fn`) and stores the ``K`` iterates and hidden states.

    **Limits:** not a solver with a convergence test: a trained network is
    tuned to ``K``, to its cost and to windows like its training ones; measure it on
    held-out windows. The state must be one field of shape ``(n,)``.

    ??? cite "References"

        Andrychowicz et al. *Learning to learn by gradient descent by gradient
        descent*. NeurIPS 2016.
        Shi et al. *Convolutional LSTM network*. NeurIPS 2015.
        Fablet, Chapron, Drumetz, Mémin, Pannekoucke, Rousseau. *Learning
        variational data assimilation models and solvers*. JAMES 2021.
    """

    cell: ConvLSTMCell1D
    readout: eqx.nn.Conv1d
    log_learning_rate: Float[Array, ""]
    num_steps: int = eqx.field(static=True)

    def __init__(
        self,
        num_steps: int,
        *,
        learning_rate: ScalarLike,
        hidden_size: int = 8,
        kernel_size: int = 5,
        periodic: bool = True,
        dtype=None,
        key: PRNGKeyArray,
    ):
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(
                "LearnedGradientSolver(num_steps=...) must be an int >= 1, got "
                f"{num_steps!r}."
            )
        if not learning_rate > 0:
            raise ValueError(
                "LearnedGradientSolver(learning_rate=...) must be > 0, got "
                f"{learning_rate!r}."
            )
        cell_key, readout_key = jr.split(key)
        self.cell = ConvLSTMCell1D(
            1,
            hidden_size,
            kernel_size=kernel_size,
            periodic=periodic,
            dtype=dtype,
            key=cell_key,
        )
        readout = eqx.nn.Conv1d(hidden_size, 1, 1, dtype=dtype, key=readout_key)
        # A zero readout: the untrained solver is gradient descent.
        self.readout = jtu.tree_map(
            lambda a: jnp.zeros_like(a) if eqx.is_array(a) else a, readout
        )
        dtype = self.readout.weight.dtype
        self.log_learning_rate = jnp.log(jnp.asarray(learning_rate, dtype))
        self.num_steps = num_steps

    @property
    def learning_rate(self) -> Scalar:
        """The step of the gradient term, ``exp(log_learning_rate)``: a scalar."""
        return jnp.exp(self.log_learning_rate)

    def iterates(
        self,
        fn: Callable[[Float[Array, " n"], Args], Scalar],
        x0: Float[Array, "..."],
        args: Args = None,
    ) -> Float[Array, "steps n"]:
        """``x_1, ..., x_K`` from `x0` (shape ``(n,)``), shape ``(K, n)``; the last
        row is ``x_K``.

        **Raises:** `ValueError` if `x0` is not a 1D floating array.
        """
        # `x0` is annotated loosely so that this message, which says what to do,
        # is the one a wrong shape gets.
        if x0.ndim != 1 or not jnp.issubdtype(x0.dtype, jnp.floating):
            raise ValueError(
                "LearnedGradientSolver takes one floating state of shape (n,), got "
                f"x0 of shape {x0.shape} and dtype {x0.dtype}; map over windows "
                "with jax.vmap."
            )
        net = follow_dtype(self, x0.dtype)
        grad_fn = jax.grad(fn)
        g0 = grad_fn(x0, args)
        # The gradient's scale at x_0, kept for all steps: later gradients shrink
        # as x_k converges, and the LSTM sees that. The floor keeps the division
        # finite when x_0 is already stationary (the inputs are then all zero).
        tiny = jnp.finfo(x0.dtype).tiny
        scale = jnp.sqrt(jnp.maximum(jnp.mean(g0**2), tiny))
        hidden = jnp.zeros((self.cell.hidden_size, x0.shape[0]), x0.dtype)

        def update(x, g, h, c):
            h, c = net.cell((g / scale)[None], (h, c))
            return x - net.learning_rate * g - net.readout(h)[0], h, c

        def step(carry, _):
            x, h, c = update(*carry)
            return (x, grad_fn(x, args), h, c), x

        # K - 1 steps in the scan, then the last one outside it: the gradient at
        # x_K is never needed.
        carry, xs = lax.scan(
            step, (x0, g0, hidden, hidden), None, length=self.num_steps - 1
        )
        last, _, _ = update(*carry)
        return jnp.concatenate([xs, last[None]])

    def __call__(
        self,
        fn: Callable[[Float[Array, " n"], Args], Scalar],
        x0: Float[Array, "..."],
        args: Args = None,
    ) -> Float[Array, " n"]:
        """``x_K``, shape ``(n,)``: `iterates`' last row."""
        return self.iterates(fn, x0, args)[-1]


def _squared_error(x: Array, target: Array, args: Args) -> Scalar:
    del args
    return jnp.mean((x - target) ** 2)


class _UnrolledLoss(AbstractBatchLoss):
    """The batch mean of ``loss(model(fn, x0_i, args_i), target_i, args_i)``.

    `fn` and `loss` are static (hashed by identity): the same functions and
    shapes reuse the compiled step."""

    fn: Callable = eqx.field(static=True)
    loss: Callable = eqx.field(static=True)

    def __call__(self, model, data, batch):
        x0, args, targets = jtu.tree_map(lambda a: a[batch], data)

        def one(x0_i, args_i, target_i):
            return self.loss(model(self.fn, x0_i, args_i), target_i, args_i)

        return jnp.mean(jax.vmap(one)(x0, args, targets))


def _check_training_data(x0, args, targets, batch_size, steps):
    x0, targets = jnp.asarray(x0), jnp.asarray(targets)
    if x0.ndim != 2:
        raise ValueError(
            "train_learned_gradient_solver(x0=...) must have shape (examples, n), "
            f"got {x0.shape}."
        )
    examples = x0.shape[0]
    if targets.shape[0] != examples:
        raise ValueError(
            "train_learned_gradient_solver(targets=...) must have one row per "
            f"example ({examples}), got shape {targets.shape}."
        )
    for leaf in jtu.tree_leaves(args):
        if jnp.ndim(leaf) < 1 or jnp.shape(leaf)[0] != examples:
            raise ValueError(
                "train_learned_gradient_solver(args=...): every array must have a "
                f"leading axis of {examples} examples, got one of shape "
                f"{jnp.shape(leaf)}."
            )
    for name, value in (("x0", x0), ("targets", targets)):
        if not np.all(np.isfinite(np.asarray(value))):
            raise ValueError(f"train_learned_gradient_solver({name}=...) has NaN/inf.")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= examples:
        raise ValueError(
            "train_learned_gradient_solver(batch_size=...) must be an int in "
            f"[1, {examples}] (the number of examples), got {batch_size!r}."
        )
    check_steps("train_learned_gradient_solver", steps)
    return x0, targets


# Loose annotations on `x0`, `targets` and `progress` on purpose: the checks below
# give messages that name the argument (shapes: x0 ``(examples, n)``, targets
# ``(examples, ...)``).
def train_learned_gradient_solver(
    model: LearnedGradientSolver,
    fn: Callable[[Float[Array, " n"], Args], Scalar],
    x0: Float[ArrayLike, "..."],
    args: PyTree,
    targets: Float[ArrayLike, "..."],
    *,
    optimiser: optax.GradientTransformation,
    steps: int,
    batch_size: int,
    key: PRNGKeyArray,
    loss: Callable[[Array, Array, Args], Scalar] = _squared_error,
    progress: AbstractProgress = NoProgress(),
) -> tuple[LearnedGradientSolver, np.ndarray]:
    """Train `model` by unrolling its ``K`` steps: supervised, with optax.

    Each step takes one `optimiser` step on the batch mean of
    ``loss(model(fn, x0_i, args_i), target_i, args_i)``, differentiated by reverse
    mode through all ``K`` steps (and through the gradients of `fn` in them). The
    examples are shuffled once per epoch and cut into batches of `batch_size`.

    **Arguments:**

    - `model`: a `LearnedGradientSolver`.
    - `fn`: the cost ``fn(x, args_i) -> scalar`` of one example (window).
    - `x0`: the initial iterates, shape ``(examples, n)`` (e.g. the backgrounds).
    - `args`: a pytree whose arrays all have a leading axis of `examples` (e.g.
      each window's observations); example ``i`` gets its ``i``-th slices.
    - `targets`: what ``x_K`` should be, one row per example (e.g. the truths).
    - `optimiser`: an optax `GradientTransformation`.
    - `steps`: the number of optimiser steps (>= 1).
    - `batch_size`: examples per step, in ``[1, examples]``.
    - `key`: a PRNG key for the batches.
    - `loss`: ``loss(x_K, target_i, args_i) -> scalar``; default the mean squared
      error ``mean((x_K - target_i)²)``. Pass e.g. the error of
      ``problem.to_state(x_K)`` when the solver runs in control-variable space.
    - `progress`: a progress meter, `NoProgress()` (default) or
      `TqdmProgress()`.

    **Returns:** ``(trained_model, losses)``, `losses` the batch loss before each
    step, a NumPy array of shape ``(steps,)``.

    **Raises:** `TypeError` for a `model`, `optimiser` or `progress` of the
    wrong type; `ValueError` naming `x0`, `args`, `targets`, `batch_size` or
    `steps`; `FloatingPointError` if the loss becomes NaN or inf (lower the
    learning rate).
    """
    if not isinstance(model, LearnedGradientSolver):
        raise TypeError(
            "train_learned_gradient_solver(model=...) must be a "
            f"LearnedGradientSolver, got {type(model).__name__}."
        )
    check_optimiser("train_learned_gradient_solver", optimiser)
    check_progress("train_learned_gradient_solver", progress)
    x0, targets = _check_training_data(x0, args, targets, batch_size, steps)
    batches = epoch_batches(key, x0.shape[0], batch_size, steps)
    model, losses, _ = train_supervised(
        "train_learned_gradient_solver",
        model,
        _UnrolledLoss(fn, loss),
        (x0, args, targets),
        batches,
        optimiser=optimiser,
        progress=progress,
    )
    return model, losses
