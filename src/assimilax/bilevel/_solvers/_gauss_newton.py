"""Gauss-Newton for sum-of-squares costs, with matrix-free CG inner loops."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, PyTree

from ..._custom_types import Args, Objective, X
from .._checks import eval_shape
from ._base import AbstractInnerSolver, InnerState, tree_norm


Residuals = Callable[[X, Args], PyTree[Array]]


def _sum_of_squares(residuals: Residuals, x: X, args: Args):
    """``0.5 |r|^2``, ``r``, and the gradient ``J^T r`` (one evaluation of `r`)."""
    r, vjp = jax.vjp(lambda y: residuals(y, args), x)
    value = 0.5 * sum(jnp.sum(jnp.square(leaf)) for leaf in jtu.tree_leaves(r))
    return value, r, vjp(r)[0]


class GaussNewton(AbstractInnerSolver):
    """Gauss-Newton (Levenberg-Marquardt damped) for ``fn = 0.5 |residuals|^2``.

    Each step solves the normal equations
    ``(J^T J + damping I) dx = -J^T r`` with ``J = d residuals / dx`` at the current
    iterate, matrix-free: `linear_solver` (CG by default) only applies
    ``v -> J^T (J v) + damping v`` through a Jacobian-vector and a
    vector-Jacobian product. This is the "incremental 4DVar" scheme: an outer
    linearisation loop around an inner CG loop on the linearised cost.

    **The residuals.** `fn(x, args)` stays the objective that hypergradients
    differentiate; the solver also needs the residuals, passed as a field:
    ``GaussNewton(residuals=r)`` with ``r(x, args) -> pytree of arrays`` such that
    ``fn(x, args) == 0.5 * sum(jnp.sum(leaf**2) for leaf in leaves(r(x, args)))``.
    Weights go inside `r` (e.g. ``B^{-1/2} (x - x_b)`` and
    ``R^{-1/2} (H(x) - y)``). `r` must receive everything it depends on through
    `args` (not through closed-over traced values). `argmin` checks eagerly that `r`
    exists and accepts ``x0``, and at run time that ``fn(x0) == 0.5 |r(x0)|^2``.

    **Fields:**

    - `residuals`: the function above (required before use).
    - `linear_solver`: a lineax solver for the normal equations. Default
      ``lx.CG(rtol=1e-6, atol=1e-6, max_steps=100)``. The right-hand side is
      normalised to unit norm before the solve (also in derivative solves), so
      these tolerances are relative to the current gradient (an inexact-Newton
      forcing term). A solve that stops at `max_steps` is still used: truncated
      CG from zero gives a descent direction.
    - `damping`: ``mu >= 0`` in ``J^T J + mu I`` (fixed Levenberg-Marquardt
      damping). Default 1e-8: keeps CG well-posed when ``J`` is rank-deficient
      while hardly slowing convergence.
    - `max_steps`: outer (linearisation) iterations (static). Default 50.
    - `rtol`, `atol`: stop when ``|J^T r| <= atol + rtol * |J^T r(x0)|``.
      The default ``rtol=None`` follows the dtype: 1e-8 in float64, 2.4e-5 in
      float32 (see `AbstractInnerSolver.tolerances`).

    `state.extra` holds the total number of linear-solver iterations so far.

    **Cost:** per step, two evaluations of the residuals with their
    linearisation, plus one Jacobian-vector and one vector-Jacobian product per
    CG iteration. Converges in one step (up to the CG tolerance) on linear least
    squares, and quadratically-like near solutions with small residuals.

    **Limits:** no line search or trust region: on strongly nonlinear problems
    started far from the solution the full step can overshoot; raise `damping`
    to shorten steps. Every hypergradient strategy applies: `Unrolled`,
    `Truncated` and `ForwardMode` differentiate each linear solve implicitly
    (`jax.lax.custom_linear_solve`: one more normalised solve per step), which is
    the derivative of the exact solution of each system, so it matches the computed
    iterates up to the linear solver's tolerance.
    """

    residuals: Residuals | None = None
    linear_solver: lx.AbstractLinearSolver = lx.CG(rtol=1e-6, atol=1e-6, max_steps=100)
    damping: float = 1e-8
    max_steps: int = eqx.field(static=True, default=50)
    rtol: float | None = None
    atol: float = 0.0

    def __check_init__(self):
        if self.residuals is not None and not callable(self.residuals):
            raise TypeError(
                "GaussNewton(residuals=...) must be a function r(x, args) with "
                f"fn = 0.5 * |r|^2; got {self.residuals!r}."
            )
        if not isinstance(self.linear_solver, lx.AbstractLinearSolver):
            raise TypeError(
                "GaussNewton(linear_solver=...) must be a lineax solver such as "
                f"lx.CG(rtol=1e-6, atol=1e-6, max_steps=100); got "
                f"{self.linear_solver!r}."
            )
        if isinstance(self.damping, (int, float)) and self.damping < 0:
            raise ValueError(
                f"GaussNewton(damping=...) must be >= 0, got {self.damping}."
            )

    def check_objective(self, fn: Objective, x0: X, args: Args) -> None:
        if self.residuals is None:
            raise ValueError(
                "GaussNewton needs the residuals of the sum-of-squares cost: pass "
                "GaussNewton(residuals=r) with r(x, args) -> pytree of arrays and "
                "fn(x, args) = 0.5 * |r(x, args)|^2. For a cost that is not a sum "
                "of squares use LBFGS() or GradientDescent()."
            )
        try:
            out = eval_shape(self.residuals, x0, args)
        except Exception as error:  # re-raised with context: which call failed
            raise ValueError(
                "GaussNewton(residuals=...) failed when traced with x0 of shape "
                f"{jtu.tree_map(jnp.shape, x0)}: {type(error).__name__}: {error}. "
                "`residuals(x, args)` must accept the same `x0` and `args` as `fn`."
            ) from error
        leaves = jtu.tree_leaves(out)
        if not leaves:
            raise ValueError("GaussNewton(residuals=...) returned no arrays.")
        for leaf in leaves:
            if not jnp.issubdtype(leaf.dtype, jnp.floating):
                raise ValueError(
                    "GaussNewton(residuals=...) must return floating arrays, got "
                    f"dtype {leaf.dtype}."
                )

    def _residuals(self) -> Residuals:
        if self.residuals is None:  # `argmin` rejects this earlier, with context
            raise ValueError("GaussNewton(residuals=...) is required.")
        return self.residuals

    def init(self, fn: Objective, x: X, args: Args) -> InnerState:
        value, _, grad = _sum_of_squares(self._residuals(), x, args)
        # A wrong factor (|r|^2 instead of 0.5 |r|^2) or mismatched residuals would
        # make the solver minimise something else than what is differentiated.
        expected = fn(x, args)
        tol = jnp.sqrt(jnp.finfo(value.dtype).eps) * (1 + jnp.abs(expected))
        value = eqx.error_if(
            value,
            jnp.abs(value - expected) > tol,
            "GaussNewton: fn(x0, args) != 0.5 * |residuals(x0, args)|^2. Make "
            "`residuals` return r with fn = 0.5 * sum of r**2.",
        )
        norm = tree_norm(grad)
        return InnerState(value, grad, norm, norm, jnp.array(0))

    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        del fn
        residuals = self._residuals()
        r, jvp = jax.linearize(lambda y: residuals(y, args), x)
        vjp = jax.linear_transpose(jvp, x)
        grad = vjp(r)[0]

        def normal_matvec(v):
            jtjv = vjp(jvp(v))[0]
            return jtu.tree_map(lambda a, b: a + self.damping * b, jtjv, v)

        def solve(matvec, rhs):
            return self._normalised_solve(matvec, rhs)

        # `custom_linear_solve` differentiates the solution implicitly (one more
        # solve with the same normalised solver), never through the CG iterations,
        # so forward and reverse mode stay accurate whatever the size of ``J^T r``.
        minus_grad = jtu.tree_map(jnp.negative, grad)
        dx, num_steps = lax.custom_linear_solve(
            normal_matvec, minus_grad, solve, symmetric=True, has_aux=True
        )
        x = jtu.tree_map(jnp.add, x, dx)
        value, _, grad = _sum_of_squares(residuals, x, args)
        linear_steps = state.extra + jnp.asarray(num_steps, dtype=state.extra.dtype)
        new_state = InnerState(
            value, grad, tree_norm(grad), state.residual0, linear_steps
        )
        return x, new_state

    def _normalised_solve(self, matvec, rhs):
        # Solve for a unit right-hand side and rescale: lineax's tolerances are
        # absolute per entry, and would otherwise stop CG after one iteration once
        # the gradient (or, in reverse mode, the cotangent) is small.
        structure = jax.eval_shape(lambda: rhs)
        operator = lx.FunctionLinearOperator(
            matvec, structure, (lx.symmetric_tag, lx.positive_semidefinite_tag)
        )
        scale = tree_norm(rhs)
        safe_scale = jnp.where(scale > 0, scale, 1)
        unit = jtu.tree_map(lambda b: b / safe_scale, rhs)
        sol = lx.linear_solve(operator, unit, self.linear_solver, throw=False)
        dx = jtu.tree_map(lambda d: scale * d, sol.value)
        return dx, jnp.asarray(sol.stats.get("num_steps", 0))

    def refresh(self, fn: Objective, x: X, args: Args, state: InnerState) -> InnerState:
        del fn
        value, _, grad = _sum_of_squares(self._residuals(), x, args)
        return InnerState(value, grad, state.residual, state.residual0, state.extra)
