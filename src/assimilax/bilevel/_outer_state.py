"""The explicit, stateful hypergradient for outer loops, with warm starts.

`jax.grad` through a custom VJP cannot keep state between calls, so warm starts of the
inner solve (from the last inner solution) and of the implicit backward solve (from
the last adjoint vector) need an explicit form: `value_and_hypergrad` takes and
returns an `OuterState`.
"""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax.flatten_util import ravel_pytree

from .._custom_types import Args, Objective, Scalar, X
from .._results import RESULTS
from ._argmin import argmin, check_strategy_pair, prepare, summarise
from ._hypergradients._base import AbstractHypergradient
from ._hypergradients._forward_mode import ForwardMode
from ._hypergradients._implicit import Implicit, LinearSolveInfo
from ._iterate import iterate_while, stop_gradient_tree
from ._solution import Stats
from ._solvers._base import AbstractInnerSolver, tree_vdot


OuterLoss = Callable[[X, Args], Scalar]


class OuterState(eqx.Module):
    """What one outer step hands to the next.

    - `x`: the last inner solution (the next inner solve starts there, except with
      `Unrolled` and `ForwardMode`, which always start from `x0`).
    - `adjoints`: the last adjoint vectors ``w`` of `Implicit`, newest first
      (``Implicit.warm_start_memory`` of them, zeros until filled); the next
      backward solve starts from their best combination when ``warm_start=True``.
      Empty for other strategies.
    - `reference_residual`: the inner solver's residual at the first (cold) start,
      a scalar (`None` before the first outer step).
      Warm-started solves test convergence against it, not against the (already
      small) residual at the warm start, which would make ``rtol`` ever stricter.
    """

    x: X
    adjoints: tuple[X, ...] = ()
    reference_residual: Scalar | None = None


class HypergradInfo(eqx.Module):
    """Diagnostics of one `value_and_hypergrad` call.

    - `result`: the inner solve's `RESULTS` code (or `linear_solve_failed`).
    - `inner`: the inner solve's `Stats`.
    - `linear`: the backward solve's `LinearSolveInfo` (`Implicit` only, else `None`).
    """

    result: RESULTS
    inner: Stats
    linear: LinearSolveInfo | None


def _with_reference(solver: AbstractInnerSolver, reference: Scalar | None):
    """The solver with ``atol + rtol * reference`` as its absolute tolerance.

    ``residual <= atol' + rtol * residual0`` then holds whenever the test against
    the cold start's residual does, so a warm start never tightens the test.
    """
    if reference is None:
        return solver
    return eqx.tree_at(lambda s: s.atol, solver, solver.atol + solver.rtol * reference)


def _reference(state: OuterState | None, stats: Stats) -> Scalar:
    if state is not None and state.reference_residual is not None:
        return state.reference_residual
    return stats.initial_grad_norm


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _tree_add(a, b):
    return jtu.tree_map(_add, a, b, is_leaf=lambda t: t is None)


@eqx.filter_jit
def value_and_hypergrad(
    outer_loss: OuterLoss,
    fn: Objective,
    x0: X,
    args: Args,
    *,
    solver: AbstractInnerSolver,
    hypergradient: AbstractHypergradient = Implicit(),
    state: OuterState | None = None,
    throw: bool = True,
) -> tuple[Scalar, Args, OuterState, HypergradInfo]:
    """``L(args) = outer_loss(x*(args), args)`` and its gradient, with warm starts.

    **Arguments:**

    - `outer_loss`: ``(x, args) -> scalar``.
    - `fn`, `x0`, `args`, `solver`, `hypergradient`, `throw`: as for `argmin`.
    - `state`: the `OuterState` returned by the previous call (`None` at the first);
      the inner solve starts from ``state.x`` instead of `x0`, and `Implicit`'s
      backward solve from ``state.adjoints`` when its ``warm_start=True``. Except
      for the strategies that differentiate the whole iteration from `x0`
      (`Unrolled`, `ForwardMode`): their inner solve always starts from `x0`, since
      from a converged ``state.x`` it would take no step and their hypergradient
      would be zero. (`Truncated` is warm-started: its last ``k`` steps always
      run.)

    **Returns:** ``(loss, grads, new_state, info)`` where `grads` has the structure
    of `args` (`None` on non-floating leaves) and `info` is a `HypergradInfo`.

    Values that `fn` closes over are treated as constants here: pass everything you
    want a gradient for through `args`.
    """
    check_strategy_pair(solver, hypergradient)
    if state is not None and hypergradient.warm_starts_inner:
        x0 = state.x
        solver = _with_reference(solver, state.reference_residual)
    if isinstance(hypergradient, Implicit):
        return _implicit(outer_loss, fn, x0, args, solver, hypergradient, state, throw)
    if isinstance(hypergradient, ForwardMode):
        return _forward(outer_loss, fn, x0, args, solver, hypergradient, state, throw)

    def loss_of(a):
        sol = argmin(fn, x0, a, solver=solver, hypergradient=hypergradient, throw=throw)
        return outer_loss(sol.value, a), sol

    (loss, sol), grads = eqx.filter_value_and_grad(loss_of, has_aux=True)(args)
    x = stop_gradient_tree(sol.value)
    new_state = OuterState(x=x, reference_residual=_reference(state, sol.stats))
    return loss, grads, new_state, HypergradInfo(sol.result, sol.stats, None)


def _implicit(outer_loss, fn, x0, args, solver, strategy, state, throw):
    fn, x0 = prepare(fn, x0, args, solver)
    fn, args_frozen = stop_gradient_tree((fn, args))
    inner = solver.init(fn, x0, args_frozen)
    x, inner, num_steps = iterate_while(
        fn, solver, x0, args_frozen, inner, solver.max_steps
    )
    result, stats = summarise(solver, x, inner, num_steps)
    loss, (x_bar, args_bar_direct) = eqx.filter_value_and_grad(
        lambda xa: outer_loss(*xa)
    )((x, args))
    x_bar = jtu.tree_map(
        lambda g, xi: jnp.zeros_like(xi) if g is None else g,
        x_bar,
        x,
        is_leaf=lambda g: g is None,
    )
    history = ()
    if strategy.warm_start and state is not None:
        history = state.adjoints
    (_, args_bar_implicit), w, linear = strategy.backward(
        solver, (fn, args_frozen), x, inner, x_bar, history
    )
    grads = _tree_add(args_bar_direct, args_bar_implicit)
    result = RESULTS.where(
        (result == RESULTS.successful) & linear.failed,
        RESULTS.linear_solve_failed,
        result,
    )
    if throw:
        grads = result.error_if(grads, result != RESULTS.successful)
    adjoints = ()
    if strategy.warm_start:
        # Fixed length (zero-padded) so that the state's structure, and hence the
        # compiled function, is the same from the second outer step on.
        zeros = jtu.tree_map(jnp.zeros_like, w)
        padded = (w, *history, *(zeros,) * strategy.warm_start_memory)
        adjoints = padded[: strategy.warm_start_memory]
    new_state = OuterState(x, adjoints, _reference(state, stats))
    return loss, grads, new_state, HypergradInfo(result, stats, linear)


def _forward(outer_loss, fn, x0, args, solver, strategy, state, throw):
    # Forward mode: one tangent per scalar parameter (vmapped `jvp`), contracted
    # with the outer loss's cotangent. Cheap when `args` has few entries.
    diff, static = eqx.partition(args, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(diff)

    def solution(theta):
        a = eqx.combine(unravel(theta), static)
        return argmin(fn, x0, a, solver=solver, hypergradient=strategy, throw=throw)

    sol = solution(flat)
    x = sol.value
    loss, (x_bar, args_bar_direct) = eqx.filter_value_and_grad(
        lambda xa: outer_loss(*xa)
    )((x, args))

    def directional(e):
        return tree_vdot(x_bar, jax.jvp(lambda t: solution(t).value, (flat,), (e,))[1])

    grad_flat = jax.vmap(directional)(jnp.eye(flat.size, dtype=flat.dtype))
    grads = _tree_add(args_bar_direct, unravel(grad_flat))
    new_state = OuterState(x=x, reference_residual=_reference(state, sol.stats))
    return loss, grads, new_state, HypergradInfo(sol.result, sol.stats, None)
