"""Central finite differences of the minimiser, as a reference for checks."""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ..._custom_types import Args, IntScalar, Objective, X
from .._iterate import iterate_while, stop_gradient_tree
from .._solvers._base import AbstractInnerSolver, InnerState, tree_vdot
from ._base import AbstractHypergradient


class FiniteDifference(AbstractHypergradient):
    """Central differences ``(x*(θ + ε e_i) - x*(θ - ε e_i)) / 2ε``, one per parameter.

    A reference for checking the other strategies: the Jacobian of the minimiser
    w.r.t. the P differentiated parameters is built on the backward pass with 2P
    inner solves (batched with `vmap`), each warm-started at ``x*`` and run to a
    tolerance ``eps`` times tighter than the solver's. Supports `jax.grad`/`jax.vjp`.

    **Fields:**

    - `eps`: relative step; parameter ``θ_i`` moves by ``eps * max(1, |θ_i|)``.
      `None` (default) takes the cube root of the machine epsilon of the parameters'
      dtype (about 5e-3 in float32, 6e-6 in float64), the usual optimum for central
      differences. The error is ``O(eps²)`` plus (inner-solve error) / ``eps``: in
      float64 with inner solves converged to ~1e-12, about 1e-7 or better.

    **Cost:** 2P inner solves per gradient. Only for small P and for tests.
    """

    warm_start_default: ClassVar[bool] = True

    eps: float | None = None

    def __check_init__(self):
        if self.eps is not None and self.eps <= 0:
            raise ValueError(f"FiniteDifference(eps=...) must be > 0, got {self.eps}.")

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
        frozen = stop_gradient_tree((fn, args))
        state = solver.init(frozen[0], x0, frozen[1])
        x, state, steps = iterate_while(
            frozen[0], solver, x0, frozen[1], state, solver.max_steps
        )
        x = stop_gradient_tree(x)
        x_diff = _attach_fd((fn, args), x, state.residual0, solver, self.eps)
        return x_diff, state, steps


def _resolve(params, x, residual0, solver, eps):
    # Warm-started at x*, the perturbed solves keep the original solve's residual0
    # (the residual at x* itself is ~0 and would make the relative test
    # unreachable), and tighten rtol by about `eps`: their error is divided by the
    # step 2h, so it must be O(eps) smaller than the solver's own tolerance (floored
    # at 10 machine epsilons, near rounding, where a tighter test could never
    # hold; 100 left the README's float32 example 2% off, 10 leaves it 0.2%).
    fn, args = params
    dtype = jnp.result_type(residual0)
    floor = 10 * float(jnp.finfo(dtype).eps)
    rtol, atol = solver.tolerances(dtype)
    tight = eqx.tree_at(
        lambda s: (s.rtol, s.atol),
        solver,
        (jnp.maximum(rtol * eps, floor), atol * eps),
        is_leaf=lambda leaf: leaf is None,
    )
    state = tight.init(fn, x, args)
    state = eqx.tree_at(lambda s: s.residual0, state, residual0)
    return iterate_while(fn, tight, x, args, state, solver.max_steps)[0]


@eqx.filter_custom_vjp
def _attach_fd(params, x, residual0, solver, eps):
    del params, residual0, solver, eps
    return x


@_attach_fd.def_fwd
def _attach_fd_fwd(perturbed, params, x, residual0, solver, eps):
    del perturbed, residual0, solver, eps
    return x, None


@_attach_fd.def_bwd
def _attach_fd_bwd(residuals, x_bar, perturbed, params, x, residual0, solver, eps):
    del residuals
    x_bar = jax.tree_util.tree_map(
        lambda c, xi: jnp.zeros_like(xi) if c is None else c,
        x_bar,
        x,
        is_leaf=lambda c: c is None,
    )
    # Only the leaves being differentiated are perturbed (2 solves each): data that
    # `fn` closes over, or parameters outside the derivative, cost nothing.
    mask = jax.tree_util.tree_map(
        lambda p, leaf: bool(p) and eqx.is_inexact_array(leaf), perturbed, params
    )
    diff, static = eqx.partition(params, mask)
    flat, unravel = ravel_pytree(diff)
    if eps is None:
        eps = float(jnp.finfo(flat.dtype).eps) ** (1 / 3)
    steps = eps * jnp.maximum(1.0, jnp.abs(flat))

    def solve_at(direction):
        shifted = eqx.combine(unravel(flat + direction), static)
        return _resolve(shifted, x, residual0, solver, eps)

    def directional(i):
        e = jnp.zeros_like(flat).at[i].set(steps[i])
        plus, minus = solve_at(e), solve_at(-e)
        dx = jax.tree_util.tree_map(lambda p, m: (p - m) / (2 * steps[i]), plus, minus)
        return tree_vdot(x_bar, dx)

    grad_flat = jax.vmap(directional)(jnp.arange(flat.size))
    return unravel(grad_flat)
