"""The L-BFGS curvature memory and its inverse-Hessian product (compact form).

The pairs are kept in Optax's layout (`optax.ScaleByLBFGSState`: ring buffers of
``s = x_k+1 - x_k`` and ``y = g_k+1 - g_k``, their weights ``1 / s.y``, and the
iterate and gradient the next pair starts from), so that `optax.scale_by_lbfgs`
can read them. Two small matrices of inner products, ``s_i.y_j`` and ``y_i.y_j``,
are kept beside them.

Written by hand, not Optax's `scale_by_lbfgs`, for two reasons measured in
``benchmarks/peers.py``: (1) Optax counts every pair, and without a Wolfe line
search a pair can have ``s.y <= 0`` (an indefinite approximation); (2) its
two-loop recursion is two `lax.scan`s of `memory_size` steps, each step a few
small kernels: on the CPU that loop, not the arithmetic, costs most of an L-BFGS
step on small states (about 120 of the 220 kernels per step on a 256-point heat
4DVar). The compact form below (Byrd, Nocedal and Schnabel 1994) computes the same
product from matrix-vector products with the whole memory and two triangular
``m x m`` solves: the same arithmetic as the two-loop recursion, reordered (equal
to rounding, tested), in about ten kernels, and 1.3x to 4x faster for 256 to 16k
unknowns.
"""

import jax.numpy as jnp
import jax.tree_util as jtu
import optax
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, Float

from ..._custom_types import BoolScalar, Scalar, X
from ..._promotion import optax_promotion
from ._base import tree_norm, tree_vdot


Products = tuple[Float[Array, "m m"], Float[Array, "m m"]]


def empty_memory(x: X, memory_size: int) -> tuple[optax.ScaleByLBFGSState, Products]:
    """No pairs yet (count 0); weights and inner products in the dtype of ``x``."""
    dtype = jnp.result_type(*jtu.tree_leaves(x))
    with optax_promotion():
        memory = optax.scale_by_lbfgs(memory_size).init(x)
    memory = memory._replace(weights_memory=jnp.zeros(memory_size, dtype))
    zeros = jnp.zeros((memory_size, memory_size), dtype)
    return memory, (zeros, zeros)


def remember(
    memory: optax.ScaleByLBFGSState,
    products: Products,
    scale: Scalar,
    x: X,
    grad: X,
) -> tuple[optax.ScaleByLBFGSState, Products, Scalar]:
    """Add the pair ``(x - params, grad - updates)`` if it has curvature.

    As Optax's update: the pair goes to slot ``(count - 1) % m`` and `count`
    advances; but only if ``s.y > eps |s| |y|`` (a pair without curvature would
    make the approximation indefinite; a backtracking search does not exclude
    one). `scale` becomes ``s.y / y.y`` of the pair if added. `params` and
    `updates` become ``x`` and `grad` in any case.
    """
    sy_mat, yy_mat = products
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

    s_mem = jtu.tree_map(write, memory.diff_params_memory, s)
    y_mem = jtu.tree_map(write, memory.diff_updates_memory, y)
    # The new row and column of each inner-product matrix (an unused pair leaves
    # them as they were).
    s_dot_y = jnp.where(usable, _dots(s_mem, y), sy_mat[:, slot])  # s_i . y
    y_dot_s = jnp.where(usable, _dots(y_mem, s), sy_mat[slot])  # s . y_j
    y_dot_y = jnp.where(usable, _dots(y_mem, y), yy_mat[slot])
    sy_mat = sy_mat.at[:, slot].set(s_dot_y).at[slot].set(y_dot_s)
    yy_mat = yy_mat.at[:, slot].set(y_dot_y).at[slot].set(y_dot_y)
    rho = jnp.where(usable, 1 / jnp.where(usable, sy, 1), memory.weights_memory[slot])
    memory = memory._replace(
        count=jnp.where(usable | (count == 0), count + 1, count),
        params=x,
        updates=grad,
        diff_params_memory=s_mem,
        diff_updates_memory=y_mem,
        weights_memory=memory.weights_memory.at[slot].set(rho),
    )
    scale = jnp.where(usable, sy / jnp.where(usable, yy, 1), scale)
    return memory, (sy_mat, yy_mat), scale


def forget(memory: optax.ScaleByLBFGSState, keep: BoolScalar):
    """`memory` if `keep`, else an empty one (count 0, every weight 0: the stale
    pairs then count for nothing) with the same last iterate and gradient."""
    return memory._replace(
        count=jnp.where(keep, memory.count, 0),
        weights_memory=jnp.where(keep, memory.weights_memory, 0),
    )


def inverse_hessian_product(
    memory: optax.ScaleByLBFGSState, products: Products, gamma: Scalar, v: X
) -> X:
    """``H v`` for the L-BFGS inverse Hessian ``H`` with initial matrix ``gamma I``.

    The two-loop recursion (Nocedal and Wright, Algorithm 7.4) with its inner
    products taken from the stored ``s_i.y_j``, ``y_i.y_j`` and one
    matrix-vector product per memory: the backward loop's
    ``alpha_i = rho_i s_i.(v - sum_{j>i} alpha_j y_j)`` is a unit upper-triangular
    solve, the forward loop's ``beta_i`` a unit lower-triangular one. Pairs with
    weight 0 (never stored, or forgotten) get ``alpha = beta = 0``.
    """
    sy_mat, yy_mat = products
    rho_slots = memory.weights_memory
    m = rho_slots.shape[0]
    count = memory.count
    # Slots oldest first: the newest pair is at slot count - 2.
    order = (count - 1 + jnp.arange(m, dtype=count.dtype)) % m
    s_mem, y_mem = memory.diff_params_memory, memory.diff_updates_memory
    s_v, y_v = _dots(s_mem, v)[order], _dots(y_mem, v)[order]
    rho = rho_slots[order]
    a = sy_mat[order][:, order]  # a[i, j] = s_i . y_j, chronological
    yy = yy_mat[order][:, order]
    eye = jnp.eye(m, dtype=a.dtype)
    upper = jnp.triu(a, 1)  # s_i . y_j for j > i
    lower = jnp.tril(a.T, -1)  # y_i . s_j for j < i
    alpha = solve_triangular(eye + rho[:, None] * upper, rho * s_v, lower=False)
    y_r0 = gamma * (y_v - yy @ alpha)  # y_i . r0, r0 = gamma (v - sum alpha_j y_j)
    beta = solve_triangular(
        eye + rho[:, None] * lower, rho * (y_r0 + lower @ alpha), lower=True
    )
    # H v = gamma v - gamma sum_j alpha_j y_j + sum_j (alpha_j - beta_j) s_j.
    zeros = jnp.zeros_like(rho)
    coef_s = zeros.at[order].set(alpha - beta)
    coef_y = zeros.at[order].set(-gamma * alpha)
    return jtu.tree_map(
        lambda vi, si, yi: (
            gamma * vi
            + jnp.tensordot(coef_s, si, axes=1)
            + jnp.tensordot(coef_y, yi, axes=1)
        ),
        v,
        s_mem,
        y_mem,
    )


def _dots(stack: X, v: X) -> Float[Array, " m"]:
    """``stack_i . v`` for every slot ``i`` of a stacked pytree (one matvec/leaf)."""
    return sum(
        jnp.tensordot(leaf, vi, axes=vi.ndim)
        for leaf, vi in zip(jtu.tree_leaves(stack), jtu.tree_leaves(v))
    )
