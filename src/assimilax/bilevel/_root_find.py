"""`root_find` and `fixed_point`: implicit layers beside `argmin`.

The same engine as `argmin` (solver objects, hypergradient strategies, `Solution`,
`throw`); the inner problem is an equation instead of a minimisation:
``F(z, args) = 0`` for `root_find`, ``z = T(z, args)`` for `fixed_point`
(solved as the root of ``T(z, args) - z``).
"""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import PyTree

from .._custom_types import Args, X
from .._structure import by_structure
from ._argmin import check_strategy_pair
from ._checks import check_x0
from ._hypergradients._base import AbstractHypergradient
from ._hypergradients._implicit import Implicit
from ._solution import Solution
from ._solvers._anderson import Anderson
from ._solvers._base import AbstractInnerSolver
from ._solvers._newton import Newton
from ._solvers._root import AbstractRootSolver, check_residual


# ``F(z, args) -> tree like z`` and ``T(z, args) -> tree like z``.
Residual = Callable[[X, Args], PyTree]
Map = Callable[[X, Args], PyTree]


def _check_root_solver(solver: object, entry: str) -> None:
    if not isinstance(solver, AbstractRootSolver):
        raise TypeError(
            f"{entry}(solver=...) must be a root solver: FixedPointIteration(), "
            f"Anderson() or Newton(); got {solver!r}. Minimisers such as LBFGS() "
            "belong to `argmin`."
        )


def root_find(
    fn: Residual,
    z0: X,
    args: Args = None,
    *,
    solver: AbstractInnerSolver = Newton(),
    hypergradient: AbstractHypergradient = Implicit(),
    throw: bool = True,
) -> Solution:
    """Solve ``fn(z, args) = 0`` for ``z``; the root is differentiable in ``args``.

    **Arguments:**

    - `fn`: the residual ``fn(z, args)``, a pytree with the structure, shapes and
      dtypes of ``z``.
    - `z0`: the initial iterate, any pytree of floating arrays.
    - `args`: the parameters, any pytree (Equinox modules included).
    - `solver`: `Newton()` (default), `Anderson()` or `FixedPointIteration()`.
    - `hypergradient`: `Implicit()` (default; differentiates ``F(z*, θ) = 0``:
      ``θ̄ = -(∂θF)ᵀ w`` with ``(∂zF)ᵀ w = z̄``, by GMRES unless another
      non-symmetric lineax solver is given), `Unrolled()`, `Truncated(k)`,
      `ForwardMode()` or `FiniteDifference()`.
    - `throw`: raise if the solve did not converge or produced NaN/inf (and, for
      `Implicit`, if the backward linear solve fails). With `throw=False` inspect
      `sol.result` and `sol.stats` (`grad_norm` is ``|F(z)|``).

    **Returns:** a `Solution`; `.value` has the structure of ``z0``.

    **Raises:** `TypeError` for a solver that is not a root solver; `ValueError`
    when `fn`'s output differs from ``z0`` in structure, shape or dtype; a runtime
    error (with `throw=True`) for a failed solve.
    """
    _check_root_solver(solver, "root_find")
    check_strategy_pair(solver, hypergradient)
    return hypergradient.argmin(by_structure(fn), z0, args, solver=solver, throw=throw)


class _FixedPointResidual(eqx.Module):
    """``T(z, args) - z``: the root of a fixed-point problem."""

    T: Map

    def __call__(self, z: X, args: Args) -> PyTree:
        return jtu.tree_map(lambda t, zi: t - zi, self.T(z, args), z)


def fixed_point(
    T: Map,
    z0: X,
    args: Args = None,
    *,
    solver: AbstractInnerSolver = Anderson(),
    hypergradient: AbstractHypergradient = Implicit(),
    throw: bool = True,
) -> Solution:
    """Solve ``z = T(z, args)``; the fixed point is differentiable in ``args``.

    Solved as the root of ``F(z) = T(z, args) - z`` (see `root_find`): the
    implicit hypergradient solves ``(∂zT - I)ᵀ w = z̄``.

    **Arguments:**

    - `T`: the map, ``T(z, args)`` a pytree with the structure, shapes and dtypes
      of ``z`` (a contraction for `FixedPointIteration` to converge).
    - `z0`, `args`, `hypergradient`, `throw`: as for `root_find`.
    - `solver`: `Anderson()` (default), `FixedPointIteration(damping)` or
      `Newton()`.

    **Returns:** a `Solution`; `.value` is the fixed point (structure of ``z0``),
    `.stats.grad_norm` the final ``|T(z) - z|``.

    **Raises:** as `root_find`; the shape/dtype error names `T`.
    """
    _check_root_solver(solver, "fixed_point")
    check_x0(z0)
    z0 = jtu.tree_map(jnp.asarray, z0)
    check_residual(T, z0, args, "T")
    return root_find(
        _FixedPointResidual(by_structure(T)),
        z0,
        args,
        solver=solver,
        hypergradient=hypergradient,
        throw=throw,
    )
