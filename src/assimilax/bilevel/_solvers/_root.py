"""The root-solver interface: inner solvers of ``F(z, args) = 0`` (not minimisers).

A root solver runs in the same loops and under the same hypergradient strategies as
a minimiser; what differs is what ``fn`` returns. For a minimiser it is a scalar
objective; for a root solver it is a *residual*, a pytree with the structure,
shapes and dtypes of ``z``. The solver's `optimality` condition is the residual
itself, so `Implicit` differentiates ``F(z*, θ) = 0`` with the (non-symmetric)
Jacobian ``∂zF``.
"""

from typing import ClassVar

import jax
import jax.numpy as jnp
import jax.tree_util as jtu

from ..._custom_types import Args, X
from .._checks import eval_shape
from ._base import AbstractInnerSolver, InnerState, tree_norm


def check_residual(fn, z0: X, args: Args, name: str) -> None:
    """`name(z0, args)` must run and return a pytree shaped like ``z0``.

    **Raises:** `ValueError` naming `name` when the call fails, or when its output's
    structure, a leaf's shape or a leaf's dtype differs from ``z0``'s.
    """
    try:
        out = eval_shape(fn, z0, args)
    except Exception as error:  # re-raised with context: which call failed
        raise ValueError(
            f"`{name}(z0, args)` failed when traced with z0 of shape "
            f"{jtu.tree_map(jnp.shape, z0)}: {type(error).__name__}: {error}. Check "
            f"that `z0` has the shape and structure that `{name}` expects."
        ) from error
    expected = jax.eval_shape(lambda: z0)
    if jtu.tree_structure(out) != jtu.tree_structure(expected):
        raise ValueError(
            f"`{name}(z, args)` must return a pytree with the structure of z; got "
            f"{jtu.tree_structure(out)} for z of structure "
            f"{jtu.tree_structure(expected)}."
        )
    for (path, got), want in zip(
        jtu.tree_leaves_with_path(out), jtu.tree_leaves(expected)
    ):
        where = "z" + jtu.keystr(path)
        if got.shape != want.shape:
            raise ValueError(
                f"`{name}(z, args)` must return an array of the shape of z; `{where}` "
                f"has shape {want.shape} but `{name}` returned {got.shape}."
            )
        if got.dtype != want.dtype:
            raise ValueError(
                f"`{name}(z, args)` must return the dtype of z; `{where}` is "
                f"{want.dtype} but `{name}` returned {got.dtype} (cast the output, "
                "or start from a z0 of that dtype)."
            )


def residual_state(fn, z: X, args: Args, residual0=None, extra=None) -> InnerState:
    """The `InnerState` of a root solver at ``z``: ``value = |F|²/2``, ``grad = F``
    (the residual, tree like ``z``), ``residual = |F|``; `residual0` defaults to
    ``|F|`` (at the initial iterate)."""
    f = fn(z, args)
    norm = tree_norm(f)
    residual0 = norm if residual0 is None else residual0
    return InnerState(0.5 * norm**2, f, norm, residual0, extra)


class AbstractRootSolver(AbstractInnerSolver):
    """An iterative solver of ``fn(z, args) = 0``, ``fn`` returning a pytree like z.

    Used by `root_find` and `fixed_point`. Its `InnerState` holds the residual
    ``F(z)`` in `grad`, its norm in `residual` (the convergence test is
    ``|F(z)| <= atol + rtol * |F(z0)|``) and ``|F(z)|²/2`` in `value`.

    Every hypergradient strategy applies where the mathematics does: `Implicit`
    solves ``(∂zF)ᵀ w = z̄`` (non-symmetric: its default linear solver is GMRES
    here; an explicit `lx.CG` is refused), `Unrolled`, `Truncated(k)` and
    `ForwardMode` differentiate the iteration, `FiniteDifference` re-solves.
    """

    optimality_is_gradient: ClassVar[bool] = False
    default_rtol: ClassVar[float] = 1e-10

    def check_problem(self, fn, x0: X, args: Args) -> None:
        check_residual(fn, x0, args, "fn")

    def optimality(self, fn, x: X, args: Args) -> X:
        """The residual ``fn(x, args)``: zero at the solution."""
        return fn(x, args)

    def refresh(self, fn, x: X, args: Args, state: InnerState) -> InnerState:
        f = fn(x, args)
        return InnerState(
            0.5 * tree_norm(f) ** 2, f, state.residual, state.residual0, state.extra
        )
