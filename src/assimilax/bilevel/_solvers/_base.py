"""The inner-solver interface shared by every solver and every hypergradient strategy.

A solver is an iteration ``(x, state) -> (x, state)``. Every hypergradient strategy is
written against `init`/`step`/`converged` only, which is what lets any strategy run
with any solver (where the mathematics allows it; see `AbstractInnerSolver`).
"""

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

from ..._custom_types import Args, BoolScalar, Objective, Scalar, X
from .._checks import check_objective as check_scalar_objective


class InnerState(eqx.Module):
    """State of an inner solver at the current iterate ``x``.

    **Fields:**

    - `value`: the objective `fn(x, args)` (scalar).
    - `grad`: its gradient w.r.t. ``x`` (same pytree as ``x``).
    - `residual`: the convergence measure at ``x`` (scalar; the gradient norm for
      smooth solvers, the fixed-point residual for proximal ones).
    - `residual0`: the same measure at ``x0``; the test is
      ``residual <= atol + rtol * residual0``.
    - `extra`: solver-specific state (optimiser moments, L-BFGS memory, dual variable).
    """

    value: Scalar
    grad: X
    residual: Scalar
    residual0: Scalar
    extra: PyTree[Any]


def tree_norm(tree: PyTree[Array]) -> Scalar:
    """Euclidean norm of all leaves of a pytree taken together."""
    leaves = jtu.tree_leaves(tree)
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in leaves))


def tree_vdot(a: PyTree[Array], b: PyTree[Array]) -> Scalar:
    """Inner product of two pytrees of the same structure."""
    return sum(jnp.sum(u * v) for u, v in zip(jtu.tree_leaves(a), jtu.tree_leaves(b)))


def value_and_grad(fn: Objective, x: X, args: Args) -> tuple[Scalar, X]:
    """`fn(x, args)` and its gradient w.r.t. ``x``."""
    return jax.value_and_grad(fn)(x, args)


def dtype_rtol(float64_rtol: float, dtype: Any) -> float:
    """The default relative tolerance for `dtype`: `float64_rtol` in float64, and
    no tighter than ``eps ** (2/3)`` of a narrower dtype (2.4e-5 in float32,
    1e-2 in float16), the relative gradient reduction that rounding still lets a
    moderately conditioned problem reach there (a tighter default would raise
    ``inner_max_steps`` on every float32 solve)."""
    eps = float(jnp.finfo(dtype).eps)
    return max(float64_rtol, eps ** (2 / 3))


class AbstractInnerSolver(eqx.Module):
    """An iterative minimiser of ``fn(x, args)`` over ``x``.

    Concrete solvers implement `init` and `step`; `converged` and `optimality` have
    defaults. Solvers are frozen Equinox modules: their options are fields.

    **Class attributes a solver may override:**

    - `reverse_differentiable`: `False` when reverse-mode autodiff through `step`
      does not give the derivative of the iteration (e.g. a step with a dynamic
      line search inside a `while_loop`). `Unrolled` and `Truncated` refuse such
      solvers.
    - `optimality_is_gradient`: `True` when the solution satisfies
      ``grad_x fn(x, args) = 0`` (then the implicit hypergradient solves with the
      symmetric Hessian). Proximal solvers set `False` and define `optimality`
      as the fixed-point residual ``x - T(x, args)``.
    - `implicit_differentiable`: `False` when no condition on ``x`` alone
      characterises the solution (e.g. primal-dual methods, whose optimal dual
      variable is not a function of the primal solution); `Implicit` refuses them.
    """

    max_steps: eqx.AbstractVar[int]
    rtol: eqx.AbstractVar[float | None]
    atol: eqx.AbstractVar[float]

    # `rtol=None` means this value in float64, and in narrower dtypes no tighter
    # than what their rounding lets a gradient norm reach (`dtype_rtol`).
    default_rtol: ClassVar[float] = 1e-8
    reverse_differentiable: ClassVar[bool] = True
    optimality_is_gradient: ClassVar[bool] = True
    implicit_differentiable: ClassVar[bool] = True

    def __check_init__(self):
        # Run by Equinox for every solver class (each class's `__check_init__` in
        # the MRO runs), so concrete solvers check only their own fields.
        owner = type(self).__name__
        if self.max_steps < 1:
            raise ValueError(
                f"{owner}(max_steps=...) must be >= 1, got {self.max_steps}."
            )
        for name, value in (("rtol", self.rtol), ("atol", self.atol)):
            if isinstance(value, (int, float)) and not value >= 0:
                raise ValueError(f"{owner}({name}=...) must be >= 0, got {value}.")

    def tolerances(self, dtype: Any) -> tuple[Any, Any]:
        """``(rtol, atol)`` of the convergence test for iterates of `dtype`: the
        fields as given, with ``rtol=None`` resolved by `dtype_rtol`."""
        rtol = self.rtol
        if rtol is None:
            rtol = dtype_rtol(self.default_rtol, dtype)
        return rtol, self.atol

    def inverse_hessian_operator(self, state: InnerState) -> Any:
        """An approximation of the inverse Hessian at the solution built from the
        solver's own memory (a `lineax` operator), or `None` when the solver keeps
        none (the default). `LBFGSPreconditioner` asks for it."""
        del state
        return None

    @abc.abstractmethod
    def init(self, fn: Objective, x: X, args: Args) -> InnerState:
        """The state at the initial iterate ``x`` (evaluates `fn` and its gradient)."""

    @abc.abstractmethod
    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        """One iteration: the next iterate and the state at it."""

    def converged(self, state: InnerState) -> BoolScalar:
        """Convergence test ``residual <= atol + rtol * residual0``: a boolean
        scalar (tolerances from `tolerances` for the residual's dtype)."""
        rtol, atol = self.tolerances(state.residual.dtype)
        return state.residual <= atol + rtol * state.residual0

    def optimality(self, fn: Objective, x: X, args: Args) -> X:
        """The function ``F(x, args)`` that vanishes at the solution (same tree as x).

        Smooth solvers: the gradient of `fn`. The implicit hypergradient
        differentiates this condition (implicit function theorem).
        """
        return jax.grad(fn)(x, args)

    def refresh(self, fn: Objective, x: X, args: Args, state: InnerState) -> InnerState:
        """Re-evaluate `fn` and its gradient at ``x`` with (possibly live) ``args``.

        `Truncated` calls this so that the differentiated tail of the iteration sees
        the parameters, while solver-specific memory in `extra` is kept as it is.
        """
        value, grad = value_and_grad(fn, x, args)
        return InnerState(value, grad, state.residual, state.residual0, state.extra)

    def check_problem(self, fn: Objective, x0: X, args: Args) -> None:
        """Eager check of what `fn` returns at `x0`: a real scalar objective for a
        minimiser (root solvers override it: a residual shaped like ``x0``)."""
        check_scalar_objective(fn, x0, args)

    def check_objective(self, fn: Objective, x0: X, args: Args) -> None:
        """Eager, trace-time checks of what this solver needs from `fn` (override)."""
        del fn, x0, args
