"""The gradient flow ``dx/dt = -grad_x fn(x, args)`` as an inner solver."""

import math
from collections.abc import Callable

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import optimistix as optx
from jaxtyping import PyTree

from ..._custom_types import (
    Args,
    BoolScalar,
    IntScalar,
    Objective,
    Scalar,
    ScalarLike,
    X,
)
from ._base import AbstractInnerSolver, InnerState, tree_norm, value_and_grad


# Flow times: Python ints are accepted too (``t1=5``), as are 0-d arrays.
TimeLike = int | ScalarLike


# Step k + 1 is the last one (it lands on t1 exactly) once (k + 1) * dt is within
# this relative amount of t1. It absorbs round-off (1.5 / 0.05 = 30.000000000000004),
# so `max_steps = ceil(t1 / dt)` steps always reach t1 instead of leaving a sliver
# of 1e-16 for one more step. In-graph the slack is at least 64 machine epsilons
# of the time dtype (float32 times round at ~1e-7).
_LAST_STEP_SLACK = 1e-9


class FlowState(eqx.Module):
    """The `extra` of a `GradientFlow` state: the flow time ``t`` reached, the final
    time ``t1`` it runs to, the number of steps taken and the diffrax solver's own
    state (e.g. the first-same-as-last stage).
    """

    t: Scalar
    t1: Scalar
    step: IntScalar
    solver_state: PyTree


def negative_gradient(t: ScalarLike, x: X, params: tuple[Objective, Args]) -> X:
    """The vector field ``-grad_x fn(x, args)``, with ``params = (fn, args)``.

    `fn` and `args` travel as the ODE's `args` (never closed over), so that diffrax's
    adjoints see them as differentiable inputs.
    """
    del t
    fn, args = params
    return jtu.tree_map(jnp.negative, jax.grad(fn)(x, args))


def time_dtype(x: X) -> jnp.dtype:
    """The dtype used for flow times: that of ``x``'s first leaf.

    Times multiply the vector field inside the diffrax step; under strict dtype
    promotion a float64 time times a float32 state would fail (or silently upcast
    the iterate), so times follow the state.
    """
    return jnp.result_type(jtu.tree_leaves(x)[0])


class GradientFlow(AbstractInnerSolver):
    """Integrate the gradient flow ``dx/dt = -grad_x fn(x, args)`` from ``t = 0``.

    One `step` is one step of the diffrax solver `diffrax_solver` (its own
    `init`/`step`) of fixed size `dt`, the last step shortened to land exactly on
    `t1`. So every generic strategy (`Unrolled`, `Truncated`, `Implicit`,
    `ForwardMode`) works with it unchanged; `GradientFlowAdjoint` instead hands the
    whole interval to `diffrax.diffeqsolve` and a continuous adjoint.

    **Early stopping as regularisation.** With a finite `t1` the result is
    ``x(t1)``, not the minimiser. For a quadratic ``0.5 x'Ax - theta'x`` from
    ``x0 = 0``, ``x(t) = (I - exp(-At)) A^{-1} theta``: eigen-directions with
    ``lambda t << 1`` are damped like Tikhonov regularisation of strength about
    ``1 / t``. Small `t1` = strong regularisation; ``t1 -> inf`` gives the
    minimiser, which `rtol`/`atol` detect (steady state).

    **Fields:**

    - `t1`: the final flow time: a positive number (or a scalar array), or a
      callable ``args -> t1`` returning a scalar
      (then the flow time is a hyperparameter, differentiable with `Unrolled`,
      `Truncated` and `GradientFlowAdjoint`; `max_steps` must then be given).
    - `dt`: the fixed step (explicit solvers are stable only for ``dt`` below
      about ``c / L``, ``L`` the largest Hessian eigenvalue; ``c = 2`` for `Euler`
      and `Heun`, about 3.5 for `Tsit5`).
    - `diffrax_solver`: any single-term ODE solver. Default `dfx.Tsit5()` (5th
      order, so ``x(t1)`` is accurate to ~1e-7 at ``dt = 0.1`` on O(1) time
      scales). `dfx.Heun()` is cheaper per step for steady-state use;
      `dfx.Euler()` is exactly `GradientDescent(learning_rate=dt)`. Implicit
      solvers (`dfx.ImplicitEuler()`, `dfx.Kvaerno5()`: A-stable, so no limit
      on `dt` for a convex `fn`) work too: the root-finder tolerances that
      diffrax leaves to an adaptive step-size controller are, in `step`,
      ``rtol = atol = sqrt(eps)`` of the state's dtype with `optx.max_norm`
      (set them on the solver's `root_finder` to change that).
    - `max_steps`: static cap; default ``ceil(t1 / dt)`` (the number of steps to
      reach `t1`). Required when `t1` is a callable.
    - `rtol`, `atol`: also stop once ``|grad| <= atol + rtol * |grad(x0)|``
      (default 0: integrate to `t1` exactly). Stopping is ``t >= t1`` *or* this.

    **Cost:** per step, the solver's stages (6 gradient evaluations for `Tsit5`,
    2 for `Heun`) plus one value-and-gradient for the state. `Implicit` at a
    finite `t1` returns the *steady-state* hypergradient, not that of ``x(t1)``.
    """

    t1: TimeLike | Callable[[Args], ScalarLike]
    dt: float | int
    diffrax_solver: dfx.AbstractSolver
    max_steps: int = eqx.field(static=True)
    rtol: float
    atol: float

    def __init__(
        self,
        *,
        t1: TimeLike | Callable[[Args], ScalarLike] = 10.0,
        dt: float | int = 0.1,
        diffrax_solver: dfx.AbstractSolver = dfx.Tsit5(),
        max_steps: int | None = None,
        rtol: float = 0.0,
        atol: float = 0.0,
    ):
        self.t1 = t1
        self.dt = dt
        self.diffrax_solver = diffrax_solver
        self.rtol = rtol
        self.atol = atol
        if max_steps is None:
            max_steps = _steps_to_reach(t1, dt)
        self.max_steps = max_steps

    def __check_init__(self):
        if not isinstance(self.diffrax_solver, dfx.AbstractSolver):
            raise TypeError(
                "GradientFlow(diffrax_solver=...) must be a diffrax solver such as "
                f"dfx.Tsit5() or dfx.Heun(); got {self.diffrax_solver!r}."
            )
        if isinstance(self.dt, (int, float)) and not self.dt > 0:
            raise ValueError(f"GradientFlow(dt=...) must be positive, got {self.dt}.")
        if isinstance(self.t1, (int, float)) and not 0 < self.t1 < math.inf:
            raise ValueError(
                f"GradientFlow(t1=...) must be positive and finite, got {self.t1}; "
                "for the minimiser use a large t1 with rtol/atol to stop at steady "
                "state."
            )

    def final_time(self, args: Args, dtype: jnp.dtype | None = None) -> Scalar:
        """The flow time `t1` for these `args`, a scalar of `dtype` (default: the
        default float dtype); differentiable if `t1` is a callable.

        **Raises:** at run time, if a callable `t1` returns a non-positive or
        non-finite time.
        """
        t1 = self.t1(args) if callable(self.t1) else self.t1
        # An integer t1 (t1=5) must not make the flow times integers.
        t1 = jnp.asarray(t1, dtype=jnp.result_type(float) if dtype is None else dtype)
        if callable(self.t1):
            t1 = eqx.error_if(
                t1,
                ~((t1 > 0) & jnp.isfinite(t1)),
                "GradientFlow(t1=callable) returned a non-positive or non-finite time.",
            )
        return t1

    def state_at(
        self,
        fn: Objective,
        x: X,
        args: Args,
        t: Scalar,
        t1: Scalar,
        step: IntScalar,
        residual0: Scalar | None = None,
    ) -> InnerState:
        """The state at ``x`` reached at flow time ``t`` after `step` steps.

        `t`, `t1`, `step` and `residual0` are scalars; `residual0` defaults to the
        gradient norm at ``x`` (i.e. ``x`` is the initial point).
        """
        value, grad = value_and_grad(fn, x, args)
        norm = tree_norm(grad)
        residual0 = norm if residual0 is None else residual0
        terms = dfx.ODETerm(negative_gradient)
        solver_state = self.diffrax_solver.init(terms, t, t1, x, (fn, args))
        extra = FlowState(t, t1, step, solver_state)
        return InnerState(value, grad, norm, residual0, extra)

    def init(self, fn: Objective, x: X, args: Args) -> InnerState:
        dtype = time_dtype(x)
        t1 = self.final_time(args, dtype)
        return self.state_at(fn, x, args, jnp.zeros((), dtype), t1, jnp.array(0))

    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        extra = state.extra
        t = extra.t
        # Re-read t1 from the live `args` (not `extra.t1`) so that its derivative
        # flows through the last, shortened step: d x(t1) / d t1 = -grad(x(t1)).
        t1 = self.final_time(args, t.dtype)
        # The grid time from the step count, not `t + dt`: one rounding instead of
        # an accumulation of them.
        step = extra.step + 1
        t_grid = step.astype(t.dtype) * jnp.asarray(self.dt, t.dtype)
        slack = max(_LAST_STEP_SLACK, 64 * float(jnp.finfo(t.dtype).eps))
        t_next = jnp.where(t_grid >= t1 * (1 - slack), t1, t_grid)
        terms = dfx.ODETerm(negative_gradient)
        diffrax_solver = _with_root_tolerances(
            _forward_differentiable(self.diffrax_solver), t.dtype
        )
        x, _, _, solver_state, _ = diffrax_solver.step(
            terms, t, t_next, x, (fn, args), extra.solver_state, False
        )
        value, grad = value_and_grad(fn, x, args)
        new_extra = FlowState(t_next, extra.t1, step, solver_state)
        return x, InnerState(value, grad, tree_norm(grad), state.residual0, new_extra)

    def converged(self, state: InnerState) -> BoolScalar:
        """Stop at the final time, or earlier at a stationary point (rtol/atol): a
        boolean scalar."""
        stationary = state.residual <= self.atol + self.rtol * state.residual0
        return (state.extra.t >= state.extra.t1) | stationary

    def refresh(self, fn: Objective, x: X, args: Args, state: InnerState) -> InnerState:
        # A first-same-as-last solver (Tsit5) carries the vector field at `x` in its
        # state: recompute it with the live `args` too, or `Truncated` would lose
        # that stage's dependence on the parameters.
        extra = state.extra
        new = self.state_at(fn, x, args, extra.t, extra.t1, extra.step, state.residual0)
        return InnerState(
            new.value, new.grad, state.residual, state.residual0, new.extra
        )


def _forward_differentiable(solver: dfx.AbstractSolver) -> dfx.AbstractSolver:
    # diffrax's Runge-Kutta stages run by default in a checkpointed loop with a
    # custom VJP, which `jax.jvp` cannot pass through (`ForwardMode` would fail);
    # "lax" is a plain `while_loop`, which reverse mode cannot pass through. The
    # "bounded" loop supports both, at a little more compile time.
    if isinstance(solver, dfx.AbstractRungeKutta) and solver.scan_kind is None:
        return eqx.tree_at(
            lambda s: s.scan_kind, solver, "bounded", is_leaf=lambda v: v is None
        )
    return solver


# The placeholder that `dfx.with_stepsize_controller_tols` puts in a root finder's
# rtol/atol/norm, obtained through the public API (the object itself is private).
_UNSET = dfx.with_stepsize_controller_tols(optx.Chord)().rtol


def _with_root_tolerances(
    solver: dfx.AbstractSolver, dtype: jnp.dtype
) -> dfx.AbstractSolver:
    # diffrax's implicit solvers (ImplicitEuler, Kvaerno*) leave their root finder's
    # tolerances unset: `diffeqsolve` copies them from an adaptive step-size
    # controller. `step` calls the solver's own `step` at fixed steps, where no
    # controller supplies them (the placeholders would reach the root finder), so
    # the unset ones get sqrt(eps) of the state's dtype and the max norm. The root
    # finder is the user's choice of any optimistix class, each with its own
    # fields, so its tolerance fields are probed by name (duck-typed).
    if not isinstance(solver, dfx.AbstractImplicitSolver):
        return solver
    tol = float(jnp.finfo(dtype).eps) ** 0.5
    defaults = {"rtol": tol, "atol": tol, "norm": optx.max_norm}
    names = [n for n in defaults if getattr(solver.root_finder, n, None) is _UNSET]
    if not names:
        return solver
    return eqx.tree_at(
        lambda s: tuple(getattr(s.root_finder, n) for n in names),
        solver,
        tuple(defaults[n] for n in names),
    )


def _steps_to_reach(t1, dt) -> int:
    if callable(t1):
        raise ValueError(
            "GradientFlow(max_steps=...) must be given when t1 is a callable "
            "(the step count is static and cannot be derived from traced args); "
            "use at least ceil(largest t1 / dt)."
        )
    try:
        t1, dt = float(t1), float(dt)
    except (TypeError, jax.errors.ConcretizationTypeError) as error:
        raise ValueError(
            "GradientFlow(max_steps=...) must be given when t1 or dt is a traced "
            f"array (max_steps is static); got t1={t1!r}, dt={dt!r}."
        ) from error
    if not (0 < t1 < math.inf and 0 < dt < math.inf):
        return 1  # `__check_init__` reports the bad t1 or dt.
    ratio = t1 / dt
    # Shave the round-off of t1 / dt (e.g. 0.3 / 0.1 = 2.9999999999999996 or
    # 10.000000000000002) before the ceiling: matches `_LAST_STEP_SLACK`.
    return max(1, math.ceil(ratio * (1 - _LAST_STEP_SLACK)))
