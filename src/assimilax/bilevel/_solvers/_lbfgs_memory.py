"""The L-BFGS curvature memory and its inverse-Hessian product.

The pairs are kept in Optax's layout (`optax.ScaleByLBFGSState`: ring buffers of
``s = x_k+1 - x_k`` and ``y = g_k+1 - g_k``, their weights ``1 / s.y``, and the
iterate and gradient the next pair starts from), so that `optax.scale_by_lbfgs`
can read them.

Written by hand, not Optax's `scale_by_lbfgs` update, because Optax stores every
pair: without a Wolfe line search a pair can have ``s.y <= 0``, which would make
the approximation indefinite (and the direction not a descent direction). Here
such pairs are never stored. The product is the same two-loop recursion as
Optax's (`lax.scan` over the slots). A compact form (matrix-vector products with
the whole memory, triangular ``m x m`` solves) was tried: faster on an idle
machine for small states, but 2x to 3x slower per step on a 16k-point problem
on a loaded 2-core machine (multithreaded matrix-vector products), so it was
dropped (``benchmarks/peers.py``).
"""

import jax.lax as lax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax

from ..._custom_types import BoolScalar, Scalar, X
from ..._promotion import optax_promotion
from ._base import tree_norm, tree_vdot


def empty_memory(x: X, memory_size: int) -> optax.ScaleByLBFGSState:
    """No pairs yet (count 0); the weights in the dtype of ``x``."""
    dtype = jnp.result_type(*jtu.tree_leaves(x))
    with optax_promotion():
        memory = optax.scale_by_lbfgs(memory_size).init(x)
    return memory._replace(weights_memory=jnp.zeros(memory_size, dtype))


def remember(
    memory: optax.ScaleByLBFGSState, scale: Scalar, x: X, grad: X
) -> tuple[optax.ScaleByLBFGSState, Scalar]:
    """Add the pair ``(x - params, grad - updates)`` if it has curvature.

    As Optax's update: the pair goes to slot ``(count - 1) % m`` and `count`
    advances; but only if ``s.y > eps |s| |y|``. `scale` becomes ``s.y / y.y``
    of the pair if added. `params` and `updates` become ``x`` and `grad` in any
    case.
    """
    count = memory.count
    m = memory.weights_memory.shape[0]
    s = jtu.tree_map(jnp.subtract, x, memory.params)
    y = jtu.tree_map(jnp.subtract, grad, memory.updates)
    sy, yy = tree_vdot(s, y), tree_vdot(y, y)
    eps = jnp.finfo(sy.dtype).eps
    usable = (count > 0) & (sy > eps * tree_norm(s) * jnp.sqrt(yy))
    slot = (count - 1) % m

    def write(stack, new):
        return stack.at[slot].set(jnp.where(usable, new, stack[slot]))

    rho = jnp.where(usable, 1 / jnp.where(usable, sy, 1), memory.weights_memory[slot])
    memory = memory._replace(
        count=jnp.where(usable | (count == 0), count + 1, count),
        params=x,
        updates=grad,
        diff_params_memory=jtu.tree_map(write, memory.diff_params_memory, s),
        diff_updates_memory=jtu.tree_map(write, memory.diff_updates_memory, y),
        weights_memory=memory.weights_memory.at[slot].set(rho),
    )
    scale = jnp.where(usable, sy / jnp.where(usable, yy, 1), scale)
    return memory, scale


def forget(memory: optax.ScaleByLBFGSState, keep: BoolScalar):
    """`memory` if `keep`, else an empty one (count 0, every weight 0: the stale
    pairs then count for nothing) with the same last iterate and gradient."""
    return memory._replace(
        count=jnp.where(keep, memory.count, 0),
        weights_memory=jnp.where(keep, memory.weights_memory, 0),
    )


def inverse_hessian_product(memory: optax.ScaleByLBFGSState, gamma: Scalar, v: X) -> X:
    """``H v`` for the L-BFGS inverse Hessian ``H`` with initial matrix ``gamma I``:
    the two-loop recursion (Nocedal and Wright, Algorithm 7.4). Pairs with weight
    0 (never stored, or forgotten) contribute nothing."""
    rho = memory.weights_memory
    m = rho.shape[0]
    count = memory.count
    # Slots oldest first: the newest pair is at slot count - 2.
    order = (count - 1 + jnp.arange(m, dtype=count.dtype)) % m
    s_mem, y_mem = memory.diff_params_memory, memory.diff_updates_memory

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


def _pair(memory, i):
    return jtu.tree_map(lambda leaf: leaf[i], memory)
