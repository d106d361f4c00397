"""The two loops every strategy is built from: a `while_loop` and a checkpointed one.

- `iterate_while` stops at convergence; it is forward-mode differentiable only
  (JAX cannot reverse-differentiate a `while_loop` of unknown length).
- `iterate_checkpointed` runs at most `num_steps` iterations in Equinox's checkpointed
  while loop (the loop Optimistix's `RecursiveCheckpointAdjoint` runs): it stops
  at convergence and is reverse-mode (not forward-mode) differentiable, storing
  carries only, every step's or a budget of checkpoints (`checkpoint_count`).
"""

import equinox as eqx
import equinox.internal as eqxi
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


def iterate_checkpointed(
    fn: Objective,
    solver: AbstractInnerSolver,
    x: X,
    args: Args,
    state: InnerState,
    num_steps: int,
    checkpoint_every: int | None = None,
    *,
    freeze_when_converged: bool = True,
    max_tape_bytes: float = 256.0 * 2**20,
) -> tuple[X, InnerState, IntScalar]:
    """At most `num_steps` steps (stopping once the solver's test holds, unless
    `freeze_when_converged` is False; always at a non-finite residual);
    reverse-differentiable, storing carries only (see `checkpoint_count`)."""
    carry = (x, state, jnp.array(0))
    if num_steps == 0:
        return carry

    def cond(carry):
        _, state, _ = carry
        going = jnp.isfinite(state.residual)
        if freeze_when_converged:
            going = going & jnp.logical_not(solver.converged(state))
        return going

    def body(carry):
        x, state, step = carry
        x, state = solver.step(fn, x, args, state)
        return x, state, step + 1

    # Equinox's checkpointed while loop (what Optimistix's
    # `RecursiveCheckpointAdjoint` runs): it stops at convergence and its
    # backward pass recomputes each step from stored carries, so only the carry
    # is stored per checkpoint. A `lax.scan` over a `lax.cond`-frozen step
    # stored every step's residuals instead, data included (loop-invariant
    # arrays such as a design matrix became per-step outputs of the `cond`).
    checkpoints = checkpoint_count(carry, num_steps, checkpoint_every, max_tape_bytes)
    return eqxi.while_loop(
        cond,
        body,
        carry,
        max_steps=num_steps,
        kind="checkpointed",
        checkpoints=checkpoints,
    )


def checkpoint_count(
    carry, num_steps: int, checkpoint_every: int | None, max_tape_bytes: float
) -> int | None:
    """How many carries the checkpointed loop stores: one every `checkpoint_every`
    steps when given; else every step's when they fit in `max_tape_bytes`, and
    otherwise Equinox's default, O(sqrt(num_steps)) checkpoints with binomial
    recomputation (treeverse)."""
    if checkpoint_every is not None:
        return max(1, -(-num_steps // checkpoint_every))
    carry_bytes = sum(
        leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(carry)
    )
    return num_steps if num_steps * carry_bytes <= max_tape_bytes else None


def stop_gradient_tree(tree):
    """`lax.stop_gradient` on every array leaf (non-arrays pass through)."""
    dynamic, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(lax.stop_gradient(dynamic), static)
