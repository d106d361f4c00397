"""`LearnedGradientDescent`: a learned-gradient (4DVarNet) solver that is an inner
solver of `argmin`, on 1D and 2D states.

Here and not in `bilevel/_solvers/`: its modulator is a convolutional network, and
the engine layer knows no networks (the learning layer sits above it).
"""

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, Float

from .._custom_types import Args, Objective, Scalar, ScalarLike, X
from ..bilevel import AbstractInnerSolver, InnerState
from ..bilevel._solvers._base import tree_norm, value_and_grad
from ._conv_lstm import ConvLSTMModulator


class LearnedGradientDescent(AbstractInnerSolver):
    """Gradient steps modulated by a convolutional LSTM (4DVarNet), as an inner
    solver of `argmin` (and so of `fit`, `assimilate` and the 4DVar problems).

    From ``x_0``, with ``s`` the root-mean-square of ``g_0 = grad fn(x_0)`` and
    ``h_0 = c_0 = 0``, each step is

    - ``(u_k, (h_{k+1}, c_{k+1})) = modulator(g_k / s, (h_k, c_k))``;
    - ``x_{k+1} = x_k - exp(log_learning_rate) * g_k - u_k``.

    The modulator's readout starts at zero, so the untrained solver **is**
    `GradientDescent` with `learning_rate` (tested). ``(h, c, s)`` are kept in
    `InnerState.extra`.

    **Arguments:**

    - `modulator`: a `ConvLSTMModulator`; its `num_spatial_dims` (1 or 2) is the
      rank the state must have: ``(n,)`` or ``(ny, nx)``.
    - `learning_rate`: the initial step of the gradient term (> 0; learned, as
      its logarithm).
    - `max_steps`: the number of steps ``K`` (static). A trained solver is tuned
      to its ``K``.
    - `rtol`, `atol`: the convergence test ``|grad| <= atol + rtol |grad(x0)|``
      (default ``rtol=None``: 1e-6 in float64). A solver trained for ``K`` steps
      rarely reaches it: the solve then ends with ``RESULTS.inner_max_steps``,
      which `argmin(..., throw=True)` raises. Pass ``throw=False`` and read
      ``sol.stats`` (`grad_norm`, `converged`), or set `rtol` to the gradient
      reduction you accept; a non-converged solve is reported, never silent.

    **Hypergradients.** The solver's arrays (modulator, ``log_learning_rate``) are
    trainable by differentiating w.r.t. the solver object (``eqx.filter_grad`` of
    a function that takes it), through `Unrolled()` (all ``K`` steps) or
    `Truncated(k)` (the last ``k``: the 4DVarNet truncated scheme).
    `train_learned_solver` does that, jointly with a learned prior. W.r.t.
    `argmin`'s `args` (e.g. the prior in a 4DVar problem): `Unrolled`,
    `Truncated` and `ForwardMode` differentiate the ``K`` steps actually run;
    `Implicit` is right only when the solve has converged (its result says
    whether), and gives **zero** w.r.t. the solver's own arrays: the exact
    minimiser does not depend on the solver.

    **Raises:** `ValueError` naming `x0` at `argmin` time when the state is not
    one floating array of the modulator's rank; `ValueError` for a
    non-positive `learning_rate`.

    **Cost:** one gradient of `fn` and one cell call per step; reverse mode
    through ``K`` steps differentiates the gradients too (Hessian-vector
    products of `fn`) and stores the carries, hidden states included.

    ??? cite "References"

        Fablet, Chapron, Drumetz, Mémin, Pannekoucke, Rousseau. *Learning
        variational data assimilation models and solvers*. JAMES 2021.
        Andrychowicz et al. *Learning to learn by gradient descent by gradient
        descent*. NeurIPS 2016.
    """

    modulator: ConvLSTMModulator
    log_learning_rate: Float[Array, ""]
    max_steps: int = eqx.field(static=True)
    rtol: float | None
    atol: float
    default_rtol: ClassVar[float] = 1e-6

    def __init__(
        self,
        modulator: ConvLSTMModulator,
        *,
        learning_rate: ScalarLike,
        max_steps: int,
        rtol: float | None = None,
        atol: float = 0.0,
    ):
        if not isinstance(modulator, ConvLSTMModulator):
            raise TypeError(
                "LearnedGradientDescent(modulator=...) must be a ConvLSTMModulator, "
                f"got {type(modulator).__name__}."
            )
        if not isinstance(max_steps, int):
            raise ValueError(
                "LearnedGradientDescent(max_steps=...) must be an int, got "
                f"{max_steps!r}."
            )
        if not learning_rate > 0:
            raise ValueError(
                "LearnedGradientDescent(learning_rate=...) must be > 0, got "
                f"{learning_rate!r}."
            )
        self.modulator = modulator
        dtype = modulator.readout.weight.dtype
        self.log_learning_rate = jnp.log(jnp.asarray(learning_rate, dtype))
        self.max_steps = max_steps
        self.rtol = rtol
        self.atol = atol

    @property
    def learning_rate(self) -> Scalar:
        """The step of the gradient term, ``exp(log_learning_rate)``: a scalar."""
        return jnp.exp(self.log_learning_rate)

    def check_objective(self, fn: Objective, x0: X, args: Args) -> None:
        del fn, args
        rank = self.modulator.num_spatial_dims
        shape = "(n,)" if rank == 1 else "(ny, nx)"
        leaves = jtu.tree_leaves(x0)
        shapes = [jnp.shape(leaf) for leaf in leaves]
        if len(leaves) != 1 or len(shapes[0]) != rank:
            raise ValueError(
                f"LearnedGradientDescent's modulator is {rank}D "
                f"({type(self.modulator.cell).__name__}): the state `x0` must be one "
                f"array of shape {shape}, got arrays of shapes {shapes}. Build the "
                "modulator with the state's rank (`num_spatial_dims`), or map over "
                "windows with jax.vmap."
            )

    def init(self, fn: Objective, x: X, args: Args) -> InnerState:
        value, grad = value_and_grad(fn, x, args)
        norm = tree_norm(grad)
        # The gradient's scale at x_0, kept for all steps (as in 4DVarNet: the
        # network sees gradients of unit size whatever the window's amount of
        # data; later gradients shrink as x_k converges, and the LSTM sees that).
        # The floor keeps the division finite when x_0 is already stationary.
        tiny = jnp.finfo(x.dtype).tiny
        scale = jnp.sqrt(jnp.maximum(jnp.mean(grad**2), tiny))
        h, c = self.modulator.init_hidden(x)
        return InnerState(value, grad, norm, norm, (h, c, scale))

    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        h, c, scale = state.extra
        lr = self.learning_rate.astype(x.dtype)
        update, (h, c) = self.modulator(state.grad / scale, (h, c))
        x = x - lr * state.grad - update
        value, grad = value_and_grad(fn, x, args)
        return x, InnerState(
            value, grad, tree_norm(grad), state.residual0, (h, c, scale)
        )
