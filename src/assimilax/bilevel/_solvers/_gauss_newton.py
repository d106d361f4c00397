"""Gauss-Newton for sum-of-squares costs: adaptive Levenberg-Marquardt damping,
matrix-free CG inner loops."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, PyTree

from ..._custom_types import Args, BoolScalar, IntScalar, Objective, Scalar, X
from .._checks import eval_shape
from ._base import AbstractInnerSolver, InnerState, tree_norm, tree_vdot


Residuals = Callable[[X, Args], PyTree[Array]]

# Gain-ratio constants (Madsen, Nielsen and Tingleff 2004, Algorithm 3.16, with
# optimistix's acceptance cutoff): accept a trial when the actual reduction is at
# least `_ACCEPT` times the predicted one.
_ACCEPT = 0.01
# The cost's rounding error, in units of eps * |cost| (a sum of n squares summed
# pairwise errs by about log2(n) eps |cost|). Below it the actual reduction is
# noise: near a minimum the predicted one, O(|grad|^2), falls there while the
# gradient is still well resolved.
_ROUNDING = 16


def _sum_of_squares(residuals: Residuals, x: X, args: Args):
    """``0.5 |r|^2``, ``r``, and the gradient ``J^T r`` (one evaluation of `r`)."""
    r, vjp = jax.vjp(lambda y: residuals(y, args), x)
    return _half_square(r), r, vjp(r)[0]


def _half_square(tree: PyTree[Array]) -> Scalar:
    return 0.5 * sum(jnp.sum(jnp.square(leaf)) for leaf in jtu.tree_leaves(tree))


def _all_finite(tree: PyTree[Array]) -> BoolScalar:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jtu.tree_leaves(tree)]))


def _no_gradient(tree: PyTree) -> PyTree:
    dynamic, static = eqx.partition(tree, eqx.is_array)
    return eqx.combine(lax.stop_gradient(dynamic), static)


class _GaussNewtonExtra(eqx.Module):
    """`state.extra` of `GaussNewton` (see its docstring)."""

    damping: Scalar
    growth: Scalar
    linear_steps: IntScalar
    failed_linear_solves: IntScalar
    rejected_steps: IntScalar


class GaussNewton(AbstractInnerSolver):
    """Gauss-Newton with adaptive Levenberg-Marquardt damping, for
    ``fn = 0.5 |residuals|^2``.

    Each step solves the damped normal equations
    ``(J^T J + mu I) dx = -J^T r`` with ``J = d residuals / dx`` at the current
    iterate, matrix-free: `linear_solver` (CG by default) only applies
    ``v -> J^T (J v) + mu v`` through a Jacobian-vector and a vector-Jacobian
    product. This is the "incremental 4DVar" scheme: an outer linearisation loop
    around an inner CG loop on the linearised cost.

    **Globalisation (Levenberg-Marquardt).** Each step is a trial ``x + dx``,
    judged by the gain ratio ``rho = (fn(x) - fn(x + dx)) / (m(0) - m(dx))`` of
    the actual to the predicted reduction, ``m`` the Gauss-Newton model
    ``0.5 |r + J dx|^2``:

    - accepted when ``rho >= 0.01``; then
      ``mu <- max(damping, mu * clip(1 - (2 rho - 1)^3, 1/3, 2))``: a good model
      lowers the damping towards `damping`, a poor one raises it (Nielsen's rule);
    - rejected otherwise, or when the trial's cost or step is not finite: ``x``
      and its state stay as they are, and
      ``mu <- max(nu mu, |J dx|^2 / |dx|^2)``, ``nu <- 2 nu`` (``nu`` is reset
      to 2 after an acceptance). The second term jumps at once from a tiny
      damping to the curvature along the rejected step, which about halves the
      next step where it overshot.

    Near a minimum the predicted reduction, ``O(|J^T r|^2)``, falls below the
    cost's round-off (taken as ``16 eps |fn|``) while the gradient is still
    resolved; there a trial is accepted when it lowers ``|J^T r|`` and raises
    the cost by no more than that round-off. A step from an iterate that already
    passes the convergence test (only `Truncated` takes those: they carry its
    derivative) is always accepted. Otherwise the cost never increases. The first
    trial uses ``mu = damping``: the plain Gauss-Newton step, so linear least
    squares still take one step, and fast local convergence is kept once steps
    are accepted. A rejected trial counts as one of `max_steps`.

    Why damping, not a line search or a trust-region radius: the damped system
    is the one CG solves anyway (no extra cost evaluations in a step, and a step
    of fixed shape that `Unrolled` can reverse), and damping also regularises
    the rank-deficient ``J^T J`` of 4DVar with few observations. Why built in,
    not a strategy field: it is the only rule offered, and it contains the
    fixed-damping iteration (its steps, whenever they lower the cost); a
    fixed-damping option would differ only by taking steps that raise it.

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
      forcing term). A solve that stops at `max_steps` is still used (truncated
      CG from zero gives a descent direction) but is counted as failed.
    - `damping`: the smallest Levenberg-Marquardt damping ``mu >= 0``, and the
      first one tried. Default 1e-8: keeps CG well-posed when ``J`` is
      rank-deficient while hardly slowing convergence.
    - `max_steps`: outer iterations, trials included (static). Default 50.
    - `rtol`, `atol`: stop when ``|J^T r| <= atol + rtol * |J^T r(x0)|``.
      The default ``rtol=None`` follows the dtype: 1e-8 in float64, 2.4e-5 in
      float32 (see `AbstractInnerSolver.tolerances`).

    **Diagnostics:** `state.extra` (so ``sol.state.extra``) has the fields

    - `linear_steps`: linear-solver iterations, all steps together;
    - `failed_linear_solves`: linear solves that did not reach their tolerance
      within the solver's `max_steps` (or another lineax failure) or returned
      NaN/inf. A non-finite step is rejected; a truncated one is used;
    - `rejected_steps`: trials rejected (the iterate did not move);
    - `damping`: the damping ``mu`` of the next trial; `growth`: ``nu``.

    **Cost:** per step, one linearisation of the residuals, one evaluation with
    its vector-Jacobian product at the trial point, one Jacobian-vector product
    for the predicted reduction, and one Jacobian-vector and one
    vector-Jacobian product per CG iteration. One step (up to the CG tolerance)
    on linear least squares; quadratic-like convergence near solutions with small
    residuals, linear with large ones.

    **Limits:** Gauss-Newton's model ignores the residuals' curvature, so on
    large-residual problems the local rate is linear and can be slow (LBFGS may
    then need fewer cost evaluations). The acceptance test trusts the cost to
    ``16 eps |fn|``: where its round-off is larger (residuals computed by
    cancellation, e.g. ``H(x) - y`` with ``|H(x)| >> |r|``, in float32) trials
    near the minimum are rejected, the damping grows, and the iterate stays where
    it is; a `rtol` below that level then ends in `inner_max_steps`.

    Every hypergradient strategy applies: `Unrolled`, `Truncated` and
    `ForwardMode` differentiate each linear solve implicitly
    (`jax.lax.custom_linear_solve`: one more normalised solve per step), the
    derivative of the exact solution of each system, so it matches the computed
    iterates up to the linear solver's tolerance. The acceptance test and the
    damping carry no derivative (a rejected step passes the tangent on
    unchanged); `Implicit` differentiates the optimality condition and is
    unaffected.

    ??? cite "References"

        Madsen, Nielsen, Tingleff. *Methods for non-linear least squares
        problems*, 2nd ed., IMM, DTU, 2004 (Section 3.2, Algorithm 3.16).

        Nocedal, Wright. *Numerical Optimization*, 2nd ed., Springer 2006
        (Sections 4.1 and 10.3).
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
        if isinstance(self.damping, (int, float)) and not self.damping >= 0:
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
        zero = jnp.array(0)
        extra = _GaussNewtonExtra(
            damping=jnp.asarray(self.damping, dtype=value.dtype),
            growth=jnp.asarray(2, dtype=value.dtype),
            linear_steps=zero,
            failed_linear_solves=zero,
            rejected_steps=zero,
        )
        return InnerState(value, grad, norm, norm, extra)

    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        del fn
        residuals = self._residuals()
        extra = state.extra
        r, jvp = jax.linearize(lambda y: residuals(y, args), x)
        vjp = jax.linear_transpose(jvp, x)
        grad = vjp(r)[0]
        # The damping is a heuristic of the iteration, not a function of `args`.
        mu = lax.stop_gradient(extra.damping)

        def normal_matvec(v):
            jtjv = vjp(jvp(v))[0]
            return jtu.tree_map(lambda a, b: a + mu * b, jtjv, v)

        # `custom_linear_solve` differentiates the solution implicitly (one more
        # solve with the same normalised solver), never through the CG iterations,
        # so forward and reverse mode stay accurate whatever the size of ``J^T r``.
        minus_grad = jtu.tree_map(jnp.negative, grad)
        dx, (num_steps, failed) = lax.custom_linear_solve(
            normal_matvec,
            minus_grad,
            self._normalised_solve,
            symmetric=True,
            has_aux=True,
        )
        finite_step = _all_finite(dx)
        failed = failed | jnp.logical_not(finite_step)
        # A NaN step is rejected below; zeroing it also keeps NaN out of the
        # cotangents (`where` would pass 0 * NaN back).
        dx = jtu.tree_map(lambda d: jnp.where(finite_step, d, jnp.zeros_like(d)), dx)

        # The trial, evaluated without derivatives: the acceptance test and the
        # next state's value and gradient carry none (each step re-linearises at
        # its own iterate), so a trial that overflows cannot poison them.
        x_trial = lax.stop_gradient(jtu.tree_map(jnp.add, x, dx))
        frozen_args = _no_gradient(args)
        trial_value, _, trial_grad = _sum_of_squares(residuals, x_trial, frozen_args)
        r, dx_fixed = lax.stop_gradient((r, dx))
        old_value, old_grad, old_residual = lax.stop_gradient(
            (state.value, state.grad, state.residual)
        )
        # Predicted reduction m(0) - m(dx) = -(r . J dx + 0.5 |J dx|^2), written
        # without |r|^2 so that it does not cancel for small steps.
        j_dx = lax.stop_gradient(jvp(dx_fixed))
        predicted = -(tree_vdot(r, j_dx) + 0.5 * tree_vdot(j_dx, j_dx))
        actual = old_value - trial_value
        # Below the cost's rounding error, the gain ratio means nothing: accept a
        # trial that lowers the gradient norm without raising the cost beyond it.
        noise = _ROUNDING * jnp.finfo(old_value.dtype).eps * jnp.abs(old_value)
        decrease = jnp.where(
            predicted > noise,
            actual >= _ACCEPT * predicted,
            (actual >= -noise) & (tree_norm(trial_grad) < old_residual),
        )
        # From an iterate that already passes the convergence test (only
        # `Truncated` steps from there: its last steps carry the derivative) the
        # step is taken.
        accept = (
            finite_step & jnp.isfinite(trial_value) & (decrease | self.converged(state))
        )
        damping, growth = self._new_damping(
            accept, actual, predicted, dx_fixed, j_dx, extra
        )
        new_extra = _GaussNewtonExtra(
            damping=damping,
            growth=growth,
            linear_steps=extra.linear_steps
            + jnp.asarray(num_steps, extra.linear_steps.dtype),
            failed_linear_solves=extra.failed_linear_solves
            + failed.astype(extra.failed_linear_solves.dtype),
            rejected_steps=extra.rejected_steps
            + jnp.logical_not(accept).astype(extra.rejected_steps.dtype),
        )
        # A rejected trial leaves the iterate and its state exactly as they were.
        x = jtu.tree_map(lambda a, b: jnp.where(accept, a + b, a), x, dx)
        new_state = InnerState(
            jnp.where(accept, trial_value, old_value),
            jtu.tree_map(lambda a, b: jnp.where(accept, a, b), trial_grad, old_grad),
            jnp.where(accept, tree_norm(trial_grad), old_residual),
            state.residual0,
            new_extra,
        )
        return x, new_state

    def _new_damping(
        self, accept, actual, predicted, dx, j_dx, extra
    ) -> tuple[Scalar, Scalar]:
        """The damping ``mu`` and growth factor ``nu`` of the next trial."""
        mu, nu = lax.stop_gradient((extra.damping, extra.growth))
        # Accepted: Nielsen's rule on the gain ratio (1 when the model predicts
        # no reduction: a converged iterate).
        safe = jnp.where(predicted > 0, predicted, 1)
        rho = jnp.where(predicted > 0, actual / safe, 1)
        factor = jnp.clip(1 - (2 * rho - 1) ** 3, 1 / 3, 2)
        floor = jnp.asarray(self.damping, dtype=mu.dtype)
        mu_accept = jnp.maximum(floor, mu * factor)
        # Rejected: grow geometrically, but at least to the curvature along the
        # rejected step (from a tiny damping, doublings alone would need a dozen
        # rejected trials to shorten the step).
        dx_sq = tree_vdot(dx, dx)
        safe_sq = jnp.where(dx_sq > 0, dx_sq, 1)
        curvature = jnp.where(dx_sq > 0, tree_vdot(j_dx, j_dx) / safe_sq, 0)
        ceiling = jnp.sqrt(jnp.finfo(mu.dtype).max)  # no inf in the matvec
        mu_reject = jnp.minimum(ceiling, jnp.maximum(nu * mu, curvature))
        # nu is capped: no overflow to inf (and 0 * inf) over many rejections.
        nu_reject = jnp.minimum(2 * nu, 2**30)
        return (
            jnp.where(accept, mu_accept, mu_reject),
            jnp.where(accept, jnp.full_like(nu, 2), nu_reject),
        )

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
        failed = sol.result != lx.RESULTS.successful
        return dx, (jnp.asarray(sol.stats.get("num_steps", 0)), failed)

    def refresh(self, fn: Objective, x: X, args: Args, state: InnerState) -> InnerState:
        del fn
        value, _, grad = _sum_of_squares(self._residuals(), x, args)
        return InnerState(value, grad, state.residual, state.residual0, state.extra)
