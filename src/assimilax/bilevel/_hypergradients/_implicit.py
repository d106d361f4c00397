"""Implicit differentiation of the minimiser (implicit function theorem).

At a solution ``F(x*, θ) = 0`` (``F = ∇ₓU`` for smooth problems), the derivative is
``dx*/dθ = -(∂ₓF)^{-1} ∂θF``. For a cotangent ``x̄`` the hypergradient is
``θ̄ = -(∂θF)^T w`` with ``(∂ₓF)^T w = x̄``: one matrix-free linear solve with
Hessian-vector products; the Hessian is never formed (unless a dense lineax solver
is asked for).
"""

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import PyTree

from ..._custom_types import Args, IntScalar, Objective, Scalar, X
from ..._results import RESULTS
from .._hvp import AbstractHVP, AutodiffHVP
from .._iterate import iterate_while, stop_gradient_tree
from .._outer_state import (
    HypergradInfo,
    OuterState,
    reference_residual,
    tree_add,
)
from .._preconditioners import AbstractPreconditioner, NoPreconditioner
from .._solution import LinearSolveInfo, Solution, Stats
from .._solve import finish, prepare
from .._solvers._base import (
    AbstractInnerSolver,
    dtype_rtol,
    InnerState,
    tree_norm,
    tree_vdot,
)
from ._base import AbstractHypergradient, OuterLoss


_SYMMETRIC_SOLVERS = (lx.CG,)


class Implicit(AbstractHypergradient):
    """Implicit-function-theorem hypergradient, matrix-free.

    The inner solve runs without derivatives (a `while_loop` that stops at
    convergence); the backward pass solves one linear system with the Hessian at
    ``x*``. Memory is flat in the number of inner steps.

    **Fields:**

    - `linear_solver`: any lineax solver. Default (`None`): ``lx.CG(rtol=tol,
      atol=tol)`` with ``tol`` 1e-6 in float64 and 2.4e-5 in float32 (the
      dtype of the solution; `dtype_rtol`), a relative residual each can reach:
      the Hessian at a strict minimum is symmetric positive definite (the PSD tag is
      only valid there, which is why the solve's outcome is checked and reported).
      For solvers whose condition is not a gradient (proximal solvers, the root
      solvers of `root_find` / `fixed_point`: a non-symmetric Jacobian) the
      default is ``lx.GMRES`` with the same tolerances, and an explicit `lx.CG`
      is refused. Also `lx.BiCGStab`, `Neumann(k)`, or dense `lx.LU()`.
    - `hvp`: `AutodiffHVP()` (default) or `FiniteDifferenceHVP(eps)`.
    - `warm_start`: start the backward solve from the best combination of the
      previous outer steps' adjoint vectors (used by `value_and_hypergrad`;
      `jax.grad` keeps no state across calls). See `warm_start_memory`.
    - `warm_start_memory`: how many previous adjoints to keep (static, >= 1). The
      initial guess is ``W c`` with ``c = argmin |A W c - x̄|`` over the stored
      adjoints ``W``: a small Galerkin-type projection costing `warm_start_memory`
      extra Hessian-vector products. With two or more it extrapolates along the
      outer trajectory (the error of the guess is second order in the parameter
      step, against first order for reusing the last adjoint alone).
    - `preconditioner`: `NoPreconditioner()` (default), `OperatorPreconditioner`,
      `LBFGSPreconditioner()` (reuses the inner L-BFGS memory, raced against
      plain CG so that it never costs iterations), or one built from the
      problem, such as
      `assimilax.costs.BackgroundPreconditioner()`. `LinearSolveInfo.preconditioned`
      reports whether one was applied.
    - `damping`: solve ``(H + damping I) w = x̄`` (regularises near-singular H).

    **Bias:** exact at an exact minimiser; the error is proportional to the inner
    solver's residual and the linear solve's residual. **Cost:** one linear solve
    (k Hessian-vector products) per cotangent.

    ??? cite "References"

        Pedregosa. *Hyperparameter optimization with approximate gradient*. ICML 2016.
        Blondel et al. *Efficient and modular implicit differentiation*. NeurIPS 2022.
    """

    warm_start_default: ClassVar[bool] = True

    linear_solver: lx.AbstractLinearSolver | None = None
    hvp: AbstractHVP = AutodiffHVP()
    warm_start: bool = eqx.field(static=True, default=True)
    warm_start_memory: int = eqx.field(static=True, default=4)
    preconditioner: AbstractPreconditioner = NoPreconditioner()
    damping: float = 0.0

    def __check_init__(self):
        if self.linear_solver is not None and not isinstance(
            self.linear_solver, lx.AbstractLinearSolver
        ):
            raise TypeError(
                "Implicit(linear_solver=...) must be a lineax solver such as "
                f"lx.CG(rtol=1e-8, atol=1e-8); got {self.linear_solver!r}."
            )
        if not isinstance(self.hvp, AbstractHVP):
            raise TypeError(
                "Implicit(hvp=...) must be AutodiffHVP() or FiniteDifferenceHVP(); "
                f"got {self.hvp!r}."
            )
        if self.warm_start_memory < 1:
            raise ValueError(
                "Implicit(warm_start_memory=...) must be >= 1, got "
                f"{self.warm_start_memory}."
            )
        if isinstance(self.damping, (int, float)) and self.damping < 0:
            raise ValueError(f"Implicit(damping=...) must be >= 0, got {self.damping}.")

    def linear_solver_for(
        self, dtype, symmetric: bool = True
    ) -> lx.AbstractLinearSolver:
        """The backward solve's lineax solver for a solution of `dtype`: the
        field, or by default CG (`symmetric`: the Hessian of a smooth problem)
        or GMRES (the non-symmetric Jacobian of a fixed-point or root
        condition), with tolerances that follow the dtype."""
        if self.linear_solver is not None:
            return self.linear_solver
        tol = dtype_rtol(1e-6, dtype)
        if symmetric:
            return lx.CG(rtol=tol, atol=tol)
        return lx.GMRES(rtol=tol, atol=tol)

    def check_differentiable(self, solver: AbstractInnerSolver) -> None:
        """Raise a `ValueError` if this strategy cannot differentiate `solver`.

        Called when a derivative is taken (the backward pass), not at `argmin`'s
        entry: `Implicit()` is the default strategy, and a forward-only solve with
        a solver it cannot differentiate must still run.
        """
        name = type(solver).__name__
        if not solver.implicit_differentiable:
            raise ValueError(
                f"Implicit() cannot differentiate {name}: its solution is not "
                "characterised by a condition on x alone. Use Unrolled(), "
                "Truncated(k), ForwardMode() or FiniteDifference() with it."
            )
        if solver.optimality_is_gradient:
            return
        if isinstance(self.linear_solver, _SYMMETRIC_SOLVERS):
            name_solver = type(self.linear_solver).__name__
            raise ValueError(
                f"Implicit(linear_solver={name_solver}) needs a "
                f"symmetric system, but {name}'s optimality condition is a fixed-point "
                "equation with a non-symmetric Jacobian. Use "
                "Implicit(linear_solver=lx.GMRES(rtol=1e-8, atol=1e-8)), lx.BiCGStab, "
                "or the default (GMRES for such solvers)."
            )
        if not isinstance(self.hvp, AutodiffHVP):
            raise ValueError(
                f"Implicit(hvp={type(self.hvp).__name__}()) works only for smooth "
                f"solvers; {name} needs the default AutodiffHVP()."
            )

    def solve(
        self,
        fn: Objective,
        solver: AbstractInnerSolver,
        x0: X,
        args: Args,
        *,
        throw: bool,
    ) -> tuple[X, InnerState, IntScalar]:
        x, state, steps = _solve_frozen(fn, solver, x0, args)
        x = _attach_implicit((fn, args), x, state, solver, self, throw)
        return x, state, steps

    def argmin(
        self,
        fn: Objective,
        x0: X,
        args: Args,
        *,
        solver: AbstractInnerSolver,
        throw: bool,
    ) -> Solution:
        # The custom VJP is attached outside the compiled forward solve. Under an
        # eager `jax.grad`, JAX then calls its backward rule with concrete arrays,
        # and the backward linear solve runs as a `filter_jit` program of its own:
        # a failure is one clean `EquinoxRuntimeError` naming the problem. Inside
        # the forward's jit the rule would be traced into the transposed program,
        # which JAX runs itself: a failure would print `jax.pure_callback failed`
        # with a traceback and Equinox's "not using filter_jit" notice. (Under an
        # outer `jax.jit` that is still so: wrap the caller in `eqx.filter_jit`.)
        solution, fn = _forward(fn, x0, args, solver, throw)
        params = (fn, args)
        if not any(
            isinstance(leaf, jax.core.Tracer) for leaf in jtu.tree_leaves(params)
        ):
            # Concrete inputs outside any transformation: nothing can differentiate
            # the result, and an eager custom VJP costs milliseconds per call.
            return solution
        x = _attach_implicit(
            params, solution.value, solution.state, solver, self, throw
        )
        return eqx.tree_at(lambda s: s.value, solution, x)

    def init_outer_state(self, x: X, stats: Stats) -> OuterState:
        # Zero adjoints of the fixed memory length: the structure that
        # `value_and_grad` returns, so the first outer step compiles once.
        zeros = jtu.tree_map(jnp.zeros_like, x)
        adjoints = (zeros,) * self.warm_start_memory if self.warm_start else ()
        return OuterState(x, adjoints, stats.initial_grad_norm)

    def value_and_grad(
        self,
        outer_loss: OuterLoss,
        fn: Objective,
        x0: X,
        args: Args,
        *,
        solver: AbstractInnerSolver,
        state: OuterState | None,
        throw: bool,
    ) -> tuple[Scalar, Args, OuterState, HypergradInfo]:
        # One backward solve with the cotangent of the outer loss, explicitly
        # (not through `jax.grad`) so that it can start from the stored adjoints
        # and return the new one.
        solution, fn = _forward(fn, x0, args, solver, throw=False)
        x, inner, result, stats = (
            solution.value,
            solution.state,
            solution.result,
            solution.stats,
        )
        loss, (x_bar, args_bar_direct) = eqx.filter_value_and_grad(
            lambda xa: outer_loss(*xa)
        )((x, args))
        x_bar = _zeros_for_none(x_bar, x)
        history = state.adjoints if self.warm_start and state is not None else ()
        params = stop_gradient_tree((fn, args))
        (_, args_bar), w, linear = self.backward(
            solver, params, x, inner, x_bar, history
        )
        grads = tree_add(args_bar_direct, args_bar)
        result = RESULTS.where(
            (result == RESULTS.successful) & linear.failed,
            RESULTS.linear_solve_failed,
            result,
        )
        if throw:
            grads = result.error_if(grads, result != RESULTS.successful)
        adjoints = ()
        if self.warm_start:
            # Fixed length (zero-padded) so that the state's structure, and hence
            # the compiled function, is the same from the second outer step on.
            zeros = jtu.tree_map(jnp.zeros_like, w)
            padded = (w, *history, *(zeros,) * self.warm_start_memory)
            adjoints = padded[: self.warm_start_memory]
        new_state = OuterState(x, adjoints, reference_residual(state, stats))
        return loss, grads, new_state, HypergradInfo(result, stats, linear)

    def backward(
        self,
        solver: AbstractInnerSolver,
        params: PyTree,
        x: X,
        state: InnerState,
        x_bar: X,
        history: tuple[X, ...] = (),
    ) -> tuple[PyTree, X, LinearSolveInfo]:
        """The hypergradient for cotangent ``x_bar`` at the inner solution ``x``.

        **Arguments:** the inner `solver`, ``params = (fn, args)``, the solution
        ``x`` and solver `state`, the cotangent ``x_bar`` (tree like ``x``), and
        previous adjoint vectors `history` (trees like ``x``) to warm-start from.

        **Returns:** ``(params_bar, w, info)``: the gradient w.r.t. ``params``
        (`None` on non-floating leaves), the adjoint vector ``w`` and a
        `LinearSolveInfo`.
        """
        self.check_differentiable(solver)
        fn, args = params
        operator, mixed = self._operator_and_mixed(solver, params, x)
        # Solve for the unit right-hand side and rescale: lineax's tolerances are
        # ``atol + rtol * |b_i|`` per entry, so an absolute `atol` would otherwise
        # stop the solve early whenever the cotangent happens to be small.
        scale = tree_norm(x_bar)
        scale = jnp.where(scale > 0, scale, 1.0)
        unit_b = jtu.tree_map(lambda b: b / scale, x_bar)
        preconditioner = self.preconditioner.build(solver, fn, x, args, state)
        y0 = jtu.tree_map(jnp.zeros_like, unit_b)
        if history:
            applied = tuple(operator.mv(w) for w in history)
            guess = _warm_start_guess(applied, x_bar, history)
            y0 = jtu.tree_map(lambda g: g / scale, guess)
        # The preconditioner runs the solve: it may decline its operator at run
        # time, and reports whether it applied it.
        linear_solver = self.linear_solver_for(
            jnp.result_type(*jtu.tree_leaves(x)), solver.optimality_is_gradient
        )
        value, result, num_steps, preconditioned = self.preconditioner.solve(
            operator, unit_b, y0, linear_solver, preconditioner
        )
        misfit = tree_norm(jtu.tree_map(jnp.subtract, operator.mv(value), unit_b))
        residual = misfit  # relative: |A w - x̄| / |x̄| with |unit_b| = 1
        w = jtu.tree_map(lambda v: v * scale, value)
        failed = (result != lx.RESULTS.successful) | ~jnp.isfinite(residual)
        params_bar = jtu.tree_map(
            lambda g: None if g is None else -g, mixed(w), is_leaf=lambda g: g is None
        )
        info = LinearSolveInfo(num_steps, residual, failed, preconditioned)
        return params_bar, w, info

    def _operator_and_mixed(self, solver, params, x):
        structure = jax.eval_shape(lambda: x)

        def objective(y, p):
            return p[0](y, p[1])

        if solver.optimality_is_gradient:

            def matvec(v):
                hv = self.hvp.hvp(objective, x, params, v)
                return jtu.tree_map(lambda a, b: a + self.damping * b, hv, v)

            tags = (lx.symmetric_tag, lx.positive_semidefinite_tag)

            def mixed(w):
                return self.hvp.mixed(objective, x, params, w)

        else:

            def optimality(y, p):
                return solver.optimality(p[0], y, p[1])

            _, vjp_x = jax.vjp(lambda y: optimality(y, params), x)

            def matvec(v):
                jtv = vjp_x(v)[0]
                return jtu.tree_map(lambda a, b: a + self.damping * b, jtv, v)

            tags = ()

            def mixed(w):
                _, vjp_p = eqx.filter_vjp(lambda p: optimality(x, p), params)
                return vjp_p(w)[0]

        operator = lx.FunctionLinearOperator(matvec, structure, tags)
        return operator, mixed


def _warm_start_guess(applied: tuple[X, ...], b: X, history: tuple[X, ...]) -> X:
    """``W c`` with ``c = argmin_c |A W c - b|`` over the stored adjoints ``W``.

    Least squares in the residual (not the energy norm) so that it also serves
    non-symmetric systems; its residual is never larger than the cold start's
    (``c = 0``). Unused slots hold zeros and get zero weight from the
    regularised normal equations.
    """
    gram = jnp.stack([jnp.stack([tree_vdot(u, v) for v in applied]) for u in applied])
    rhs = jnp.stack([tree_vdot(u, b) for u in applied])
    # Tikhonov-regularise relative to the Gram diagonal: stored adjoints may be
    # (nearly) collinear, or zero before the memory has filled.
    # The ridge is relative to rounding in the Gram's dtype: 1e-12 alone is below
    # float32's resolution, and the nearly collinear adjoints of consecutive outer
    # steps then made the solve return inf/NaN (a float32 `fit` stopped at step 4).
    info = jnp.finfo(gram.dtype)
    relative = max(1e-12, 100 * float(info.eps))
    ridge = relative * jnp.max(jnp.diag(gram)) + info.tiny
    coeffs = jnp.linalg.solve(
        gram + ridge * jnp.eye(len(history), dtype=gram.dtype), rhs
    )
    # A guess that is not finite (an overflowing Gram) is replaced by the cold
    # start: never worse than starting from zero.
    coeffs = jnp.where(jnp.all(jnp.isfinite(coeffs)), coeffs, 0.0)
    return jtu.tree_map(lambda *ws: sum(c * w for c, w in zip(coeffs, ws)), *history)


def _solve_frozen(fn: Objective, solver: AbstractInnerSolver, x0: X, args: Args):
    """The inner solve without derivatives: ``(x, state, num_steps)``."""
    fn_frozen, args_frozen = stop_gradient_tree((fn, args))
    state = solver.init(fn_frozen, x0, args_frozen)
    x, state, steps = iterate_while(
        fn_frozen, solver, x0, args_frozen, state, solver.max_steps
    )
    x, state = stop_gradient_tree((x, state))
    return x, state, steps


def _zeros_for_none(x_bar: X, x: X) -> X:
    return jtu.tree_map(
        lambda c, xi: jnp.zeros_like(xi) if c is None else c,
        x_bar,
        x,
        is_leaf=lambda c: c is None,
    )


@eqx.filter_custom_vjp
def _attach_implicit(params, x, state, solver, strategy, throw):
    del params, state, solver, strategy, throw
    return x


@_attach_implicit.def_fwd
def _attach_implicit_fwd(perturbed, params, x, state, solver, strategy, throw):
    del perturbed, params, state, solver, strategy, throw
    return x, None


@_attach_implicit.def_bwd
def _attach_implicit_bwd(
    residuals, x_bar, perturbed, params, x, state, solver, strategy, throw
):
    del residuals, perturbed
    return _backward(params, x, state, x_bar, solver, strategy, throw)


@eqx.filter_jit
def _forward(fn: Objective, x0: X, args: Args, solver: AbstractInnerSolver, throw):
    """`Implicit.argmin`'s compiled part: the checked inner solve without
    derivatives, and `fn` closure-converted (its closed-over arrays are leaves,
    differentiated by the custom VJP attached outside)."""
    fn, x0 = prepare(fn, x0, args, solver)
    x, state, num_steps = _solve_frozen(fn, solver, x0, args)
    return finish(solver, x, state, num_steps, throw), fn


@eqx.filter_jit
def _backward(params, x, state, x_bar, solver, strategy, throw):
    # A jit of its own, so that an eager backward pass raises a failed solve as a
    # clean `EquinoxRuntimeError` (see `Implicit.argmin`); traced in place otherwise.
    x_bar = _zeros_for_none(x_bar, x)
    params_bar, _, info = strategy.backward(solver, params, x, state, x_bar)
    if throw:
        params_bar = RESULTS.linear_solve_failed.error_if(params_bar, info.failed)
    return params_bar
