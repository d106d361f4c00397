"""`argmin`: the minimiser of ``fn(x, args)``, differentiable w.r.t. ``args``."""

from .._custom_types import Args, Objective, X
from .._structure import by_structure
from ._hypergradients._base import AbstractHypergradient
from ._hypergradients._implicit import Implicit
from ._solution import Solution
from ._solvers._base import AbstractInnerSolver


def check_strategy_pair(solver: object, hypergradient: object) -> None:
    """Type-check the solver and strategy objects and reject incompatible pairs."""
    if not isinstance(solver, AbstractInnerSolver):
        raise TypeError(
            "`solver` must be an inner solver object such as GradientDescent() or "
            f"LBFGS(); got {solver!r}."
        )
    if not isinstance(hypergradient, AbstractHypergradient):
        raise TypeError(
            "`hypergradient` must be a strategy object such as Implicit(), "
            f"Unrolled() or Truncated(k=10); got {hypergradient!r}."
        )
    hypergradient.check_compatible(solver)


def argmin(
    fn: Objective,
    x0: X,
    args: Args = None,
    *,
    solver: AbstractInnerSolver,
    hypergradient: AbstractHypergradient = Implicit(),
    throw: bool = True,
) -> Solution:
    """Minimise ``fn(x, args)`` over ``x``; the minimiser is differentiable in ``args``.

    **Arguments:**

    - `fn`: the inner objective ``fn(x, args) -> scalar``.
    - `x0`: the initial iterate, any pytree of floating arrays (shape ``"state"``).
    - `args`: the parameters, any pytree (Equinox modules included). Derivatives of
      ``sol.value`` w.r.t. its floating arrays (and values `fn` closes over) follow
      the `hypergradient` strategy.
    - `solver`: an inner solver, e.g. `GradientDescent()`, `LBFGS()`.
    - `hypergradient`: a strategy, e.g. `Implicit()` (default), `Unrolled()`,
      `Truncated(k)`, `ForwardMode()`, `FiniteDifference()`.
    - `throw`: raise if the inner solve did not converge or produced NaN/inf (and,
      for `Implicit`, if the backward linear solve fails). With `throw=False`
      inspect `sol.result` and `sol.stats`.

    **Returns:** a `Solution` with `.value` (same pytree as `x0`), `.result`,
    `.stats` and `.state`.

    **Raises:** `TypeError`/`ValueError` for a wrong solver or strategy object, an
    incompatible pair, a non-scalar `fn`, an `x0` that `fn` does not accept or that
    is not floating point; a runtime error for NaN/inf in `x0` and (with
    `throw=True`) for a failed solve.
    """
    check_strategy_pair(solver, hypergradient)
    # Compiled by the strategy (by default one `eqx.filter_jit` program): see
    # `AbstractHypergradient.argmin`. `fn` is keyed by its code and closed-over
    # values, so an equal, freshly built `fn` reuses the compiled program.
    return hypergradient.argmin(by_structure(fn), x0, args, solver=solver, throw=throw)
