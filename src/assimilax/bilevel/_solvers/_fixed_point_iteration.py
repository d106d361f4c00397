"""Damped fixed-point (Picard / Krasnosel'skii-Mann) iteration."""

import equinox as eqx
import jax.tree_util as jtu

from ..._custom_types import Args, ScalarLike, X
from ._base import InnerState
from ._root import AbstractRootSolver, residual_state


class FixedPointIteration(AbstractRootSolver):
    """``z <- z + damping * F(z)``; for `fixed_point` (``F = T(z) - z``) that is
    ``z <- (1 - damping) z + damping T(z)``.

    **Fields:**

    - `damping`: the step, in (0, 1] for a fixed point (1: plain Picard iteration;
      below 1: Krasnosel'skii-Mann averaging, which also converges for
      nonexpansive `T`). A Python float is baked into the program; a JAX scalar can
      change (or be learnt) without recompiling.
    - `max_steps`, `rtol`, `atol`: stop when ``|F(z)| <= atol + rtol * |F(z0)|``
      (``rtol=None``: 1e-10 in float64, 2.4e-5 in float32).

    **Convergence:** linear, at the rate ``|I + damping (∂T - I)|``, when `T` is
    a contraction. With `root_find` it iterates ``z + damping F(z)``, so the sign
    of `F` matters (use `Newton` or `Anderson` for general roots).
    **Cost:** one evaluation of `F` per step.
    """

    damping: ScalarLike = 1.0
    max_steps: int = eqx.field(static=True, default=1000)
    rtol: float | None = None
    atol: float = 0.0

    def __check_init__(self):
        if isinstance(self.damping, (int, float)) and not self.damping > 0:
            raise ValueError(
                f"FixedPointIteration(damping=...) must be > 0, got {self.damping}."
            )

    def init(self, fn, x: X, args: Args) -> InnerState:
        return residual_state(fn, x, args)

    def step(self, fn, x: X, args: Args, state: InnerState) -> tuple[X, InnerState]:
        x = jtu.tree_map(lambda zi, fi: zi + self.damping * fi, x, state.grad)
        return x, residual_state(fn, x, args, state.residual0)
