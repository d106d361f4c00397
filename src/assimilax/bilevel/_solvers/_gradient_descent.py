"""Plain gradient descent with a fixed step."""

from typing import ClassVar

import equinox as eqx
import jax.tree_util as jtu

from ..._custom_types import Args, Objective, ScalarLike, X
from ._base import AbstractInnerSolver, InnerState, tree_norm, value_and_grad


class GradientDescent(AbstractInnerSolver):
    """Gradient descent ``x <- x - learning_rate * grad_x fn(x, args)``.

    **Fields:**

    - `learning_rate`: the fixed step (stable for ``learning_rate < 2 / L`` with ``L``
      the Lipschitz constant of the gradient; ``1 / L`` is the usual choice). A
      Python float is baked into the compiled program; pass a JAX scalar to change
      it between calls without recompiling (or to learn it).
    - `max_steps`: iteration cap (static: fixes the length of unrolled loops).
    - `rtol`, `atol`: stop when ``|grad| <= atol + rtol * |grad(x0)|``. The default
      ``rtol=None`` follows the dtype: 1e-6 in float64, 2.4e-5 in float32 (see
      `AbstractInnerSolver.tolerances`); tighten it in float64 for accurate
      hypergradients (their error is proportional to the inner residual).

    **Cost:** one gradient evaluation per step. Every hypergradient strategy applies;
    `Truncated(k)` has bias ``O((1 - mu/L)^k)`` on strongly convex problems.
    """

    learning_rate: ScalarLike = 0.1
    max_steps: int = eqx.field(static=True, default=500)
    rtol: float | None = None
    default_rtol: ClassVar[float] = 1e-6
    atol: float = 0.0

    def __check_init__(self):
        if isinstance(self.learning_rate, (int, float)) and self.learning_rate <= 0:
            raise ValueError(
                "GradientDescent(learning_rate=...) must be positive, got "
                f"{self.learning_rate}."
            )

    def init(self, fn: Objective, x: X, args: Args) -> InnerState:
        value, grad = value_and_grad(fn, x, args)
        norm = tree_norm(grad)
        return InnerState(value, grad, norm, norm, None)

    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        x = jtu.tree_map(lambda xi, gi: xi - self.learning_rate * gi, x, state.grad)
        value, grad = value_and_grad(fn, x, args)
        new_state = InnerState(value, grad, tree_norm(grad), state.residual0, None)
        return x, new_state
