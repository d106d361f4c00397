"""L-BFGS with a line search (Optax's), plus its inverse-Hessian operator."""

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import optax

from ..._custom_types import Args, Objective, X
from ..._promotion import optax_promotion as _optax_promotion
from ._base import AbstractInnerSolver, InnerState, tree_norm, tree_vdot, value_and_grad


class _LBFGSExtra(eqx.Module):
    # Optax's state does not hold the current iterate (only the previous one), and
    # the newest curvature pair (x - x_prev, g - g_prev) needs it.
    opt_state: Any
    x: X


class LBFGS(AbstractInnerSolver):
    """Limited-memory BFGS with a line search: Optax's `optax.lbfgs`.

    Each step multiplies the gradient by the L-BFGS inverse-Hessian approximation
    (two-loop recursion over the last `memory_size` curvature pairs) and chooses
    the step length by a line search (by default Optax's zoom search, which
    enforces the strong Wolfe conditions).

    **Fields:**

    - `memory_size`: number of curvature pairs kept (static: fixes array shapes).
      Default 10; memory O(memory_size * state).
    - `linesearch`: an Optax line-search transformation. Default
      ``optax.scale_by_zoom_linesearch(max_linesearch_steps=20,
      initial_guess_strategy="one")`` (Optax's own default for L-BFGS);
      ``optax.scale_by_backtracking_linesearch(max_backtracking_steps=...)``
      also works, with ``store_grad=True`` saving one gradient per step. It
      tests sufficient decrease on values only, so it stalls once the decrease
      is below the round-off of `fn` (about ``|grad| <= sqrt(eps |fn| L)``,
      ``L`` the largest Hessian eigenvalue): keep `rtol` above that, or use
      the zoom search.
    - `max_steps`: iteration cap (static). Default 500.
    - `rtol`, `atol`: stop when ``|grad| <= atol + rtol * |grad(x0)|``.
      The default ``rtol=None`` follows the dtype: 1e-8 in float64, 2.4e-5 in
      float32 (see `AbstractInnerSolver.tolerances`).

    **Cost:** per step, a few objective/gradient evaluations inside the line search
    (usually one or two near the solution; the last one is reused as the next
    state) and O(memory_size * state) vector arithmetic. Superlinear-like
    convergence on smooth, well-scaled problems; the method of choice for smooth
    inner problems of moderate size.

    **Limits:** the line search is a `while_loop` of data-dependent length, so the
    steps are not reverse-differentiable: `Unrolled` and `Truncated` are refused.
    Use `Implicit()` (optionally with `LBFGSPreconditioner()`, which reuses the
    curvature memory through `inverse_hessian_operator`) or `ForwardMode()`.
    """

    memory_size: int = eqx.field(static=True, default=10)
    linesearch: optax.GradientTransformation = optax.scale_by_zoom_linesearch(
        max_linesearch_steps=20, initial_guess_strategy="one"
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
        if not isinstance(self.linesearch, optax.GradientTransformation):
            raise TypeError(
                "LBFGS(linesearch=...) must be an Optax line search such as "
                "optax.scale_by_zoom_linesearch(max_linesearch_steps=20); got "
                f"{self.linesearch!r}."
            )

    def _optimiser(self) -> optax.GradientTransformationExtraArgs:
        return optax.lbfgs(memory_size=self.memory_size, linesearch=self.linesearch)

    def init(self, fn: Objective, x: X, args: Args) -> InnerState:
        value, grad = value_and_grad(fn, x, args)
        norm = tree_norm(grad)
        with _optax_promotion():
            opt_state = self._optimiser().init(x)
        return InnerState(value, grad, norm, norm, _LBFGSExtra(opt_state, x))

    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        def value_fn(y):
            return fn(y, args)

        with _optax_promotion():
            updates, opt_state = self._optimiser().update(
                state.grad,
                state.extra.opt_state,
                x,
                value=state.value,
                grad=state.grad,
                value_fn=value_fn,
            )
            x = optax.apply_updates(x, updates)
            stored = (optax.tree.get(opt_state, k) for k in ("value", "grad"))
            if any(leaf is None for leaf in stored):
                # A line search that keeps no value/grad (`optax.identity()`, or
                # the backtracking one without `store_grad=True`).
                value, grad = value_and_grad(fn, x, args)
            else:
                # The line search already evaluated the objective at the accepted
                # point; Optax's helper reuses it (and re-evaluates if not finite).
                value, grad = optax.value_and_grad_from_state(value_fn)(
                    x, state=opt_state
                )
        extra = _LBFGSExtra(opt_state, x)
        return x, InnerState(value, grad, tree_norm(grad), state.residual0, extra)

    def inverse_hessian_operator(self, state: InnerState) -> lx.AbstractLinearOperator:
        """The L-BFGS approximation of the inverse Hessian at the state's iterate.

        Built from the memory in ``state.extra`` plus the newest pair (the last step
        and its gradient change, which Optax only stores at its next update), by
        the two-loop recursion (Nocedal and Wright, Algorithm 7.4). The initial
        matrix is ``gamma I`` with ``gamma = s^T y / y^T y`` of the newest pair.

        Pairs with ``s^T y <= eps |s| |y|`` (empty slots, negative curvature in
        non-convex regions, rounding noise) are skipped, so the operator is
        symmetric positive definite: with no usable pair it is the identity.

        **Cost:** each product costs O(memory_size * state); nothing is formed.

        **Returns:** a `lx.FunctionLinearOperator` tagged symmetric and positive
        semidefinite, with the input structure of the iterate.
        """
        lbfgs_state = state.extra.opt_state[0]  # optax.lbfgs = chain(lbfgs, ...)
        count = lbfgs_state.count
        # Insert the newest pair where Optax's next update would write it.
        slot = (count - 1) % self.memory_size
        valid_new = count > 0
        new_s = jtu.tree_map(jnp.subtract, state.extra.x, lbfgs_state.params)
        new_y = jtu.tree_map(jnp.subtract, state.grad, lbfgs_state.updates)

        def insert(memory, new):
            new = jnp.where(valid_new, new, jnp.zeros_like(new))
            return memory.at[slot].set(new)

        s_mem = jtu.tree_map(insert, lbfgs_state.diff_params_memory, new_s)
        y_mem = jtu.tree_map(insert, lbfgs_state.diff_updates_memory, new_y)
        order = (count + jnp.arange(self.memory_size, dtype=count.dtype)) % (
            self.memory_size
        )
        rho, gamma = _weights_and_scale(s_mem, y_mem, order)

        def matvec(v):
            return _two_loop(v, s_mem, y_mem, rho, gamma, order)

        structure = jax.eval_shape(lambda: state.grad)
        tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)
        return lx.FunctionLinearOperator(matvec, structure, tags)


def _pair(memory, i):
    return jtu.tree_map(lambda leaf: leaf[i], memory)


def _weights_and_scale(s_mem, y_mem, order):
    """``rho_i = 1 / s_i^T y_i`` (0 for unusable pairs) and the newest pair's gamma."""

    def body(gamma, i):
        s, y = _pair(s_mem, i), _pair(y_mem, i)
        sy, yy = tree_vdot(s, y), tree_vdot(y, y)
        eps = jnp.finfo(sy.dtype).eps
        usable = sy > eps * tree_norm(s) * tree_norm(y)
        # Double `where` keeps the unused branch finite (no inf * 0 = NaN).
        rho = jnp.where(usable, 1 / jnp.where(usable, sy, 1), 0)
        gamma = jnp.where(usable, sy / jnp.where(usable, yy, 1), gamma)
        return gamma, rho

    gamma0 = jnp.ones((), dtype=jnp.result_type(*jtu.tree_leaves(s_mem)))
    gamma, rho_ordered = lax.scan(body, gamma0, order)
    # `rho` is indexed by memory slot, like the memories.
    rho = jnp.zeros_like(rho_ordered).at[order].set(rho_ordered)
    return rho, gamma


def _two_loop(v, s_mem, y_mem, rho, gamma, order):
    """``H v`` for the L-BFGS inverse Hessian ``H`` (pairs oldest first in `order`)."""

    def newest_first(q, i):
        s, y = _pair(s_mem, i), _pair(y_mem, i)
        alpha = rho[i] * tree_vdot(s, q)
        return jtu.tree_map(lambda qj, yj: qj - alpha * yj, q, y), alpha

    q, alphas = lax.scan(newest_first, v, order, reverse=True)
    r = jtu.tree_map(lambda qj: gamma * qj, q)

    def oldest_first(r, i_alpha):
        i, alpha = i_alpha
        s, y = _pair(s_mem, i), _pair(y_mem, i)
        beta = rho[i] * tree_vdot(y, r)
        return jtu.tree_map(lambda rj, sj: rj + (alpha - beta) * sj, r, s), None

    r, _ = lax.scan(oldest_first, r, (order, alphas))
    return r
