"""What `argmin` returns: the minimiser, a result code and statistics."""

import equinox as eqx

from .._custom_types import BoolScalar, IntScalar, Scalar, X
from .._results import RESULTS
from ._solvers._base import InnerState


class Stats(eqx.Module):
    """Statistics of an inner solve: scalars (batched under `vmap`) that carry no
    derivative.

    - `converged`: whether the solver's convergence test held at the end.
    - `num_steps`: iterations taken.
    - `max_steps`: the solver's cap.
    - `grad_norm`: the final convergence measure (gradient norm, or fixed-point
      residual for proximal solvers).
    - `initial_grad_norm`: the same at ``x0``.
    - `value`: the objective at the solution.
    """

    converged: BoolScalar
    num_steps: IntScalar
    max_steps: int = eqx.field(static=True)
    grad_norm: Scalar
    initial_grad_norm: Scalar
    value: Scalar


class LinearSolveInfo(eqx.Module):
    """Diagnostics of one backward linear solve (each field a scalar).

    - `num_steps`: iterations of the linear solver (-1 for direct solvers).
    - `residual`: relative residual ``|A w - x̄| / |x̄|`` (computed, not assumed).
    - `failed`: `True` when the solver reported failure or the residual is not finite.
    - `preconditioned`: `True` when a preconditioner was applied; `False` with
      `NoPreconditioner`, and where a preconditioner declined for this solve
      (`LBFGSPreconditioner` where plain CG converged first).
    """

    num_steps: IntScalar
    residual: Scalar
    failed: BoolScalar
    preconditioned: BoolScalar


class Solution(eqx.Module):
    """The result of `argmin`.

    **Fields:**

    - `value`: the minimiser ``x*(args)`` (same pytree as ``x0``), differentiable
      w.r.t. ``args`` by the chosen hypergradient strategy.
    - `result`: a `RESULTS` code; `RESULTS[sol.result]` is its message.
    - `stats`: a `Stats`.
    - `state`: the solver's final state (an `InnerState`).

    The backward linear solve of `Implicit` runs only when a derivative is taken,
    so its diagnostics are not here: `value_and_hypergrad` returns them, and with
    ``throw=True`` a failed backward solve raises.
    """

    value: X
    result: RESULTS
    stats: Stats
    state: InnerState
