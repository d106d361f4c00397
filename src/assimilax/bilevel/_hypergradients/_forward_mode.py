"""Forward-mode differentiation through the inner iterations."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..._custom_types import Args, IntScalar, Objective, Scalar, X
from .._iterate import iterate_while
from .._outer_state import HypergradInfo, OuterState, reference_residual, tree_add
from .._solve import solve
from .._solvers._base import AbstractInnerSolver, InnerState, tree_vdot
from ._base import AbstractHypergradient, OuterLoss


class ForwardMode(AbstractHypergradient):
    """Forward-mode (tangent) propagation through every inner step.

    The iteration runs in a `lax.while_loop` that stops at convergence; JAX carries
    the tangents along, so `jax.jvp` and `jax.jacfwd` w.r.t. `args` give the
    derivative of the computed iterate. Memory does not grow with the step count.

    **Cost:** each tangent direction costs about one extra inner solve, so
    `jax.jacfwd` costs ~P solves for P scalar parameters: cheap when `args` has few
    entries and ``x`` many. **Limit:** reverse mode (`jax.grad`) is not available
    (JAX cannot reverse a `while_loop` of unknown length); use `jax.jacfwd`, or
    `Implicit`/`Unrolled` when you need `jax.grad`. `value_and_hypergrad` always
    starts it from `x0` (no warm start from its `state`): the derivative is that
    of the iteration from `x0`.
    """

    warm_starts_inner: ClassVar[bool] = False

    def solve(
        self,
        fn: Objective,
        solver: AbstractInnerSolver,
        x0: X,
        args: Args,
        *,
        throw: bool,
    ) -> tuple[X, InnerState, IntScalar]:
        del throw
        state = solver.init(fn, x0, args)
        return iterate_while(fn, solver, x0, args, state, solver.max_steps)

    def value_and_grad(
        self,
        outer_loss: OuterLoss,
        fn: Objective,
        x0: X,
        args: Args,
        *,
        solver: AbstractInnerSolver,
        state: OuterState | None,
        throw: bool,
    ) -> tuple[Scalar, Args, OuterState, HypergradInfo]:
        # One tangent per scalar parameter (vmapped `jvp`), contracted with the
        # outer loss's cotangent: `jax.grad` cannot reverse the `while_loop`.
        diff, static = eqx.partition(args, eqx.is_inexact_array)
        flat, unravel = ravel_pytree(diff)

        def solution(theta):
            a = eqx.combine(unravel(theta), static)
            return solve(fn, x0, a, solver, self, throw)

        sol = solution(flat)
        x = sol.value
        loss, (x_bar, args_bar_direct) = eqx.filter_value_and_grad(
            lambda xa: outer_loss(*xa)
        )((x, args))

        def directional(e):
            tangent = jax.jvp(lambda t: solution(t).value, (flat,), (e,))[1]
            return tree_vdot(x_bar, tangent)

        grad_flat = jax.vmap(directional)(jnp.eye(flat.size, dtype=flat.dtype))
        grads = tree_add(args_bar_direct, unravel(grad_flat))
        new_state = OuterState(
            x=x, reference_residual=reference_residual(state, sol.stats)
        )
        return loss, grads, new_state, HypergradInfo(sol.result, sol.stats, None)
