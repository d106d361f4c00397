"""L-BFGS: a curvature memory in Optax's layout and a line search."""

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import optax

from ..._custom_types import Args, Objective, Scalar, X
from ._base import AbstractInnerSolver, InnerState, tree_norm, value_and_grad
from ._lbfgs_memory import empty_memory, forget, inverse_hessian_product, remember
from ._linesearch import AbstractLineSearch, BacktrackingLineSearch, OptaxLineSearch


class _LBFGSExtra(eqx.Module):
    # `opt_state[0]` is the curvature memory in Optax's layout
    # (`optax.ScaleByLBFGSState`), so that Optax's `scale_by_lbfgs` can read it;
    # `opt_state[1]` is the line search's state. `scale` is the initial
    # inverse-Hessian scale gamma, and `x` the current iterate (the newest pair,
    # x - params, needs it).
    opt_state: tuple[Any, Any]
    scale: Scalar
    x: X


class LBFGS(AbstractInnerSolver):
    """Limited-memory BFGS with a line search.

    Each step multiplies the gradient by the L-BFGS inverse-Hessian approximation
    (two-loop recursion over the last `memory_size` curvature pairs, initial
    matrix ``gamma I`` with ``gamma = s.y / y.y`` of the newest pair) and chooses
    the step length by a line search, by default `BacktrackingLineSearch`: the
    full step, shrunk until Armijo's test (or its round-off-robust approximate
    form) holds. Pairs with ``s.y <= eps |s| |y|`` (negative curvature, rounding
    noise) are skipped, so every direction is a descent direction.

    **Fields:**

    - `memory_size`: number of curvature pairs kept (static: fixes array shapes).
      Default 10; memory O(memory_size * state).
    - `linesearch`: an `AbstractLineSearch` (default `BacktrackingLineSearch()`),
      or an Optax line search such as
      ``optax.scale_by_zoom_linesearch(max_linesearch_steps=20)`` (strong Wolfe
      conditions; 1.1x to 1.6x the time per step in ``benchmarks/peers.py``) or
      ``optax.scale_by_backtracking_linesearch(..., store_grad=True)`` (tests
      values only, so it stalls once the decrease is below the round-off of `fn`:
      keep `rtol` above ``sqrt(eps |fn| L) / |grad(x0)|``, ``L`` the largest
      Hessian eigenvalue).
    - `max_steps`: iteration cap (static). Default 500.
    - `rtol`, `atol`: stop when ``|grad| <= atol + rtol * |grad(x0)|``.
      The default ``rtol=None`` follows the dtype: 1e-8 in float64, 2.4e-5 in
      float32 (see `AbstractInnerSolver.tolerances`).

    The memory is kept in Optax's layout (``state.extra.opt_state[0]`` is an
    `optax.ScaleByLBFGSState`), but the two-loop recursion is ours: Optax's
    counts every pair, and without a Wolfe search a pair can have ``s.y <= 0``.

    **Cost:** per step, one objective-and-gradient evaluation per line-search
    trial (usually one: the full step is accepted; measured 1.05 to 1.15 per
    step), and O(memory_size * state) vector arithmetic. Superlinear-like
    convergence on smooth, well-scaled problems; the method of choice for smooth
    inner problems of moderate size.

    **Limits:** the line search is a `while_loop` of data-dependent length, so the
    steps are not reverse-differentiable: `Unrolled` and `Truncated` are refused.
    Use `Implicit()` (optionally with `LBFGSPreconditioner()`, which reuses the
    curvature memory through `inverse_hessian_operator`) or `ForwardMode()`. A
    line search that fails (no decrease found, e.g. once the gradient is at the
    round-off of `fn`) clears the memory and retries along the gradient; if that
    fails too the solve ends at `max_steps` (``RESULTS.inner_max_steps``).
    """

    memory_size: int = eqx.field(static=True, default=10)
    linesearch: AbstractLineSearch | optax.GradientTransformation = (
        BacktrackingLineSearch()
    )
    max_steps: int = eqx.field(static=True, default=500)
    rtol: float | None = None
    atol: float = 0.0

    reverse_differentiable: ClassVar[bool] = False

    def __check_init__(self):
        if self.memory_size < 1:
            raise ValueError(
                f"LBFGS(memory_size=...) must be >= 1, got {self.memory_size}."
            )
        if not isinstance(
            self.linesearch, (AbstractLineSearch, optax.GradientTransformation)
        ):
            raise TypeError(
                "LBFGS(linesearch=...) must be a line search such as "
                "BacktrackingLineSearch() or an Optax one such as "
                "optax.scale_by_zoom_linesearch(max_linesearch_steps=20); got "
                f"{self.linesearch!r}."
            )

    def _search(self) -> AbstractLineSearch:
        if isinstance(self.linesearch, AbstractLineSearch):
            return self.linesearch
        return OptaxLineSearch(self.linesearch)

    def init(self, fn: Objective, x: X, args: Args) -> InnerState:
        value, grad = value_and_grad(fn, x, args)
        norm = tree_norm(grad)
        memory = empty_memory(x, self.memory_size)
        # Optax's first step: the gradient scaled to length at most one.
        scale = jnp.minimum(1, 1 / norm).astype(norm.dtype)
        search_state = self._search().init(x)
        extra = _LBFGSExtra((memory, search_state), scale, x)
        return InnerState(value, grad, norm, norm, extra)

    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        memory, search_state = state.extra.opt_state
        memory, scale = remember(memory, state.extra.scale, x, state.grad)
        direction = inverse_hessian_product(memory, scale, state.grad)
        direction = jtu.tree_map(jnp.negative, direction)
        x_new, value, grad, ok, search_state = self._search().search(
            fn, args, x, state.value, state.grad, direction, search_state
        )
        # After a failed search, forget the pairs: the next step is along the
        # (scaled) gradient, which a search can always shorten to a decrease.
        memory = forget(memory, ok)
        extra = _LBFGSExtra((memory, search_state), scale, x_new)
        new_state = InnerState(value, grad, tree_norm(grad), state.residual0, extra)
        return x_new, new_state

    def inverse_hessian_operator(self, state: InnerState) -> lx.AbstractLinearOperator:
        """The L-BFGS approximation of the inverse Hessian at the state's iterate.

        Built from the memory in ``state.extra`` plus the newest pair (the last step
        and its gradient change, which is only stored at the next step), by the
        two-loop recursion (Nocedal and Wright, Algorithm 7.4): the map the next
        step would apply to the gradient. The initial matrix is ``gamma I`` with
        ``gamma = s^T y / y^T y`` of the newest usable pair.

        Pairs with ``s^T y <= eps |s| |y|`` (negative curvature in non-convex
        regions, rounding noise) are never stored, so the operator is symmetric
        positive definite: with no pair (or after a failed line search cleared the
        memory) it is the identity.

        **Cost:** each product costs O(memory_size * state); nothing is formed.

        **Returns:** a `lx.FunctionLinearOperator` tagged symmetric and positive
        semidefinite, with the input structure of the iterate.
        """
        # The memory plus the newest pair, as the next step would see it.
        memory, scale = remember(
            state.extra.opt_state[0], state.extra.scale, state.extra.x, state.grad
        )
        gamma = jnp.where(jnp.any(memory.weights_memory != 0), scale, 1)
        gamma = gamma.astype(scale.dtype)

        def matvec(v):
            return inverse_hessian_product(memory, gamma, v)

        structure = jax.eval_shape(lambda: state.grad)
        tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)
        return lx.FunctionLinearOperator(matvec, structure, tags)
