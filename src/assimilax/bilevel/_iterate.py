"""The two loops every strategy is built from: a `while_loop` and a fixed-length `scan`.

- `iterate_while` stops at convergence; it is forward-mode differentiable only
  (JAX cannot reverse-differentiate a `while_loop` of unknown length).
- `iterate_scan` always runs `num_steps` iterations, freezing the iterate once the
  solver's test holds, so reverse mode sees a fixed-length computation. Optional
  checkpointing stores one state every `checkpoint_every` steps and recomputes the
  steps in between on the backward pass (memory O(T / c + c) instead of O(T)).
"""

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp

from .._custom_types import Args, IntScalar, Objective, X
from ._solvers._base import AbstractInnerSolver, InnerState


def iterate_while(
    fn: Objective,
    solver: AbstractInnerSolver,
    x: X,
    args: Args,
    state: InnerState,
    max_steps: int,
) -> tuple[X, InnerState, IntScalar]:
    """Iterate until `solver.converged` or `max_steps`; returns (x, state, steps)."""

    def cond(carry):
        x, state, step = carry
        not_done = jnp.logical_not(solver.converged(state))
        finite = jnp.isfinite(state.residual)
        return not_done & finite & (step < max_steps)

    def body(carry):
        x, state, step = carry
        x, state = solver.step(fn, x, args, state)
        return x, state, step + 1

    return lax.while_loop(cond, body, (x, state, jnp.array(0)))


def _masked_step(fn, solver, args, freeze_when_converged, carry):
    x, state, step = carry
    done = jnp.logical_not(jnp.isfinite(state.residual))
    if freeze_when_converged:
        done = done | solver.converged(state)

    def advance(operand):
        x, state, step = operand
        x, state = solver.step(fn, x, args, state)
        return x, state, step + 1

    return lax.cond(done, lambda operand: operand, advance, (x, state, step))


def iterate_scan(
    fn: Objective,
    solver: AbstractInnerSolver,
    x: X,
    args: Args,
    state: InnerState,
    num_steps: int,
    checkpoint_every: int | None = None,
    *,
    freeze_when_converged: bool = True,
) -> tuple[X, InnerState, IntScalar]:
    """Run exactly `num_steps` (frozen after convergence); reverse-differentiable."""
    carry = (x, state, jnp.array(0))
    if num_steps == 0:
        return carry

    def body(carry, _):
        return _masked_step(fn, solver, args, freeze_when_converged, carry), None

    if checkpoint_every is None or checkpoint_every >= num_steps:
        carry, _ = lax.scan(body, carry, None, length=num_steps)
        return carry
    # Nested scan: the outer scan stores one carry per block; each block's inner
    # steps are recomputed during the backward pass (`jax.checkpoint`).
    num_blocks, remainder = divmod(num_steps, checkpoint_every)

    @jax.checkpoint
    def block(carry):
        carry, _ = lax.scan(body, carry, None, length=checkpoint_every)
        return carry

    carry, _ = lax.scan(lambda c, _: (block(c), None), carry, None, length=num_blocks)
    if remainder:
        carry, _ = lax.scan(body, carry, None, length=remainder)
    return carry


def stop_gradient_tree(tree):
    """`lax.stop_gradient` on every array leaf (non-arrays pass through)."""
    dynamic, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(lax.stop_gradient(dynamic), static)
