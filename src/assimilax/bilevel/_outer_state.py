"""What an outer loop carries from one step to the next (warm starts), and the
diagnostics of one outer step.

`jax.grad` through a custom VJP cannot keep state between calls, so warm starts of
the inner solve (from the last inner solution) and of the implicit backward solve
(from the last adjoint vectors) need an explicit form: `value_and_hypergrad` takes
and returns an `OuterState`. Each strategy builds and updates its own (see
`AbstractHypergradient.init_outer_state` and `.value_and_grad`).
"""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu

from .._custom_types import Scalar, X
from .._results import RESULTS
from ._solution import LinearSolveInfo, Stats
from ._solvers._base import AbstractInnerSolver


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


def with_reference(solver: AbstractInnerSolver, reference: Scalar | None):
    """The solver with ``atol + rtol * reference`` as its absolute tolerance.

    ``residual <= atol' + rtol * residual0`` then holds whenever the test against
    the cold start's residual does, so a warm start never tightens the test.
    """
    if reference is None:
        return solver
    rtol, atol = solver.tolerances(jnp.result_type(reference))
    return eqx.tree_at(lambda s: s.atol, solver, atol + rtol * reference)


def reference_residual(state: OuterState | None, stats: Stats) -> Scalar:
    """The cold start's residual: kept from `state`, else this solve's first."""
    if state is not None and state.reference_residual is not None:
        return state.reference_residual
    return stats.initial_grad_norm


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def tree_add(a, b):
    """Leafwise ``a + b`` of two gradient trees whose leaves may be `None`."""
    return jtu.tree_map(_add, a, b, is_leaf=lambda t: t is None)
