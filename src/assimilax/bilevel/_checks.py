"""Eager checks of `argmin`'s inputs, with messages that name the problem."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import PyTree

from .._custom_types import Args, Objective, X


def eval_shape(fn: Callable, *inputs: PyTree) -> PyTree[jax.ShapeDtypeStruct]:
    """`jax.eval_shape` for inputs that hold non-array leaves.

    `args` may hold Equinox modules with functions as fields (the activation of an
    `eqx.nn.MLP`), which `jax.eval_shape` rejects. Those leaves are held static, as
    `eqx.filter_eval_shape` does; unlike it, the output is treated as by
    `jax.eval_shape` (a Python float becomes a scalar `ShapeDtypeStruct`).
    """
    dynamic, static = eqx.partition(inputs, eqx.is_array)
    return jax.eval_shape(lambda d: fn(*eqx.combine(d, static)), dynamic)


def check_x0(x0: X) -> None:
    """`x0` must be a non-empty pytree of floating-point arrays."""
    leaves = jtu.tree_leaves(x0)
    if not leaves:
        raise ValueError("`x0` is empty: argmin needs at least one array to optimise.")
    for path, leaf in jtu.tree_leaves_with_path(x0):
        where = "x0" + jtu.keystr(path)
        if not eqx.is_array_like(leaf):
            raise TypeError(f"`{where}` must be an array, got {type(leaf).__name__}.")
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"`{where}` has dtype {dtype}; the inner variable must be floating "
                "point (e.g. jnp.asarray(x0, dtype=float))."
            )


def check_objective(fn: Objective, x0: X, args: Args) -> None:
    """`fn(x0, args)` must run and return a real scalar."""
    try:
        out = eval_shape(fn, x0, args)
    except Exception as error:  # re-raised with context: which call failed
        raise ValueError(
            "`fn(x0, args)` failed when traced with x0 of shape "
            f"{jtu.tree_map(jnp.shape, x0)}: {type(error).__name__}: {error}. Check "
            "that `x0` has the shape and structure that `fn` expects."
        ) from error
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        # `out` is whatever the user's `fn` returned (a pytree, a tuple...):
        # duck-typed data, so probe for a shape to name it in the message.
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"`fn(x, args)` must return a scalar, got {shape}. Sum or average your "
            "cost terms (e.g. return jnp.sum(residual**2))."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"`fn(x, args)` must return a float scalar, got {out.dtype}.")


def check_finite_x0(x0: X) -> X:
    """Raise (also under `jit`) if `x0` holds NaN or inf."""
    bad = jnp.array(False)
    for leaf in jtu.tree_leaves(x0):
        bad = bad | ~jnp.all(jnp.isfinite(leaf))
    return eqx.error_if(x0, bad, "`x0` contains NaN or inf.")
