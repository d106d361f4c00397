"""The continuous adjoint of a gradient flow, through `diffrax.diffeqsolve`."""

import diffrax as dfx
import equinox as eqx
import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.tree_util as jtu

from ..._custom_types import Args, IntScalar, Objective, X
from .._iterate import stop_gradient_tree
from .._solvers._base import AbstractInnerSolver, InnerState
from .._solvers._gradient_flow import GradientFlow, time_dtype
from ._base import AbstractHypergradient


def _rescaled_flow(s, x, params):
    # The flow on the unit interval: with t = s * t1, dx/ds = -t1 grad_x fn(x, args).
    # diffrax's adjoints differentiate w.r.t. `args` but not w.r.t. the end time, so
    # the end time is moved into `args` as the factor t1.
    del s
    fn, args, t1 = params
    grad = jax.grad(fn)(x, args)
    return jtu.tree_map(lambda g: -t1.astype(g.dtype) * g, grad)


class GradientFlowAdjoint(AbstractHypergradient):
    """Solve a `GradientFlow` with `diffrax.diffeqsolve` and differentiate it by the
    continuous adjoint ("optimise then discretise").

    The reverse pass integrates the adjoint ODE backwards in time, so memory does
    not grow with the number of steps. The flow time `t1` is differentiable when
    `GradientFlow(t1=callable)` reads it from `args`:
    ``d x(t1) / d t1 = -grad_x fn(x(t1), args)``. Internally the flow is solved on
    ``s in [0, 1]`` with ``t = s * t1``, which makes `t1` an ODE argument (diffrax's
    adjoints differentiate w.r.t. `args`, not w.r.t. the end time).

    **Fields:**

    - `adjoint`: a diffrax adjoint. Default `dfx.BacksolveAdjoint()`: the backward
      solve uses the same diffrax solver, step-size controller and `max_steps` as
      the forward one (pass e.g. ``dfx.BacksolveAdjoint(stepsize_controller=...)``
      to change them). `dfx.RecursiveCheckpointAdjoint()` differentiates the
      discretised solve instead ("discretise then optimise": the exact gradient of
      the computed ``x(t1)``, memory O(log max_steps) checkpoints, about twice the
      compute) and has none of the instability below. `dfx.ForwardMode()` enables
      `jax.jvp` / `jax.jacfwd`, which `BacksolveAdjoint` does not support.
    - `stepsize_controller`: default ``dfx.PIDController(rtol=1e-8, atol=1e-8)``:
      adaptive steps, so ``x(t1)`` and the adjoint are accurate to about the
      tolerance whatever `GradientFlow.dt` is (`dt` only seeds the first step;
      needs a solver with an error estimate, e.g. `Tsit5` or `Heun`). With
      `dfx.ConstantStepSize()` the steps are the solver's fixed `dt`, as with the
      generic strategies (then the continuous adjoint is only O(dt^order)
      accurate, and not the exact derivative of the computed iterate).
    - `max_steps`: diffrax's step cap (static) for the forward solve and for each
      backward segment. Default 16384.
    - `checkpoints`: number of states stored on the forward pass, equally spaced
      in time (static, default 32; memory is this many copies of ``x``).
      `BacksolveAdjoint` restarts its backward reconstruction of ``x(t)`` from each.

    **Returns** the ``(x, state, num_steps)`` of every strategy, ``num_steps``
    being the forward diffrax steps (accepted and rejected).

    **Cost:** forward, the adaptive solve; backward, one solve of the state, the
    adjoint vector and the parameter cotangents together (about 2-3x the forward
    cost: each stage needs a vector-Jacobian product of ``grad_x fn``, i.e. a
    Hessian-vector product).

    **Limits:** only `GradientFlow` (others are refused). `BacksolveAdjoint`
    reconstructs ``x(t)`` by integrating the flow *backwards*; the flow is
    dissipative, so errors grow like ``exp(L t1 / checkpoints)`` (``L`` the
    largest Hessian eigenvalue). Keep ``L t1 / checkpoints`` at most about 2-3,
    or use `RecursiveCheckpointAdjoint`. (On a 3-d nonlinear problem with
    ``L ~ 3``: relative hypergradient error 3e-2 at ``t1 = 2`` with a single
    checkpoint; 1e-9 with 32; at ``t1 = 30``, 9e-6 with 32 and 1e-7 with 64. When
    the reconstruction blows up, the backward solve usually stops at `max_steps`
    with an error.) For a quadratic the adjoint equation does not involve
    ``x(t)``, so the gradient stays accurate. At steady state `Implicit()` is
    cheaper.

    ??? cite "References"

        Chen, Rubanova, Bettencourt, Duvenaud. *Neural Ordinary Differential
        Equations*. NeurIPS 2018.
        Kidger. *On Neural Differential Equations*. PhD thesis, 2021 (section 5).
    """

    adjoint: dfx.AbstractAdjoint = dfx.BacksolveAdjoint()
    stepsize_controller: dfx.AbstractStepSizeController = dfx.PIDController(
        rtol=1e-8, atol=1e-8
    )
    max_steps: int = eqx.field(static=True, default=16384)
    checkpoints: int = eqx.field(static=True, default=32)

    def __check_init__(self):
        if not isinstance(self.adjoint, dfx.AbstractAdjoint):
            raise TypeError(
                "GradientFlowAdjoint(adjoint=...) must be a diffrax adjoint such as "
                f"dfx.BacksolveAdjoint(); got {self.adjoint!r}."
            )
        if not isinstance(self.stepsize_controller, dfx.AbstractStepSizeController):
            raise TypeError(
                "GradientFlowAdjoint(stepsize_controller=...) must be a diffrax "
                "controller such as dfx.PIDController(rtol=1e-8, atol=1e-8); got "
                f"{self.stepsize_controller!r}."
            )
        if self.max_steps < 1:
            raise ValueError(
                "GradientFlowAdjoint(max_steps=...) must be >= 1, got "
                f"{self.max_steps}."
            )
        if self.checkpoints < 1:
            raise ValueError(
                "GradientFlowAdjoint(checkpoints=...) must be >= 1, got "
                f"{self.checkpoints}."
            )

    def check_compatible(self, solver: AbstractInnerSolver) -> None:
        if not isinstance(solver, GradientFlow):
            raise ValueError(
                "GradientFlowAdjoint() integrates the adjoint of a gradient flow and "
                f"works only with GradientFlow; got {type(solver).__name__}. Use "
                "GradientFlowAdjoint() with GradientFlow(t1=..., dt=...), or "
                f"Implicit() / Unrolled() with {type(solver).__name__}."
            )
        adaptive = isinstance(solver.diffrax_solver, dfx.AbstractAdaptiveSolver)
        if isinstance(self.stepsize_controller, dfx.PIDController) and not adaptive:
            raise ValueError(
                "GradientFlowAdjoint(stepsize_controller=PIDController(...)) needs an "
                "error estimate, but GradientFlow(diffrax_solver="
                f"{type(solver.diffrax_solver).__name__}()) has none. Use "
                "GradientFlow(diffrax_solver=dfx.Tsit5()) or "
                "GradientFlowAdjoint(stepsize_controller=dfx.ConstantStepSize())."
            )
        fixed = isinstance(self.stepsize_controller, dfx.ConstantStepSize)
        if fixed and self.max_steps < solver.max_steps:
            raise ValueError(
                f"GradientFlowAdjoint(max_steps={self.max_steps}) is below the "
                f"{solver.max_steps} fixed steps of GradientFlow(dt={solver.dt}); "
                f"use GradientFlowAdjoint(max_steps={solver.max_steps})."
            )

    def _saveat(self, dtype: jnp.dtype) -> dfx.SaveAt:
        # The interior saved states are where `BacksolveAdjoint` restarts its
        # backward reconstruction of x(t). The last save (`t1=True`) is the state at
        # the time reached, which is s = 1 unless `max_steps` stopped the solve.
        if self.checkpoints == 1:
            return dfx.SaveAt(t1=True)
        ts = jnp.linspace(0.0, 1.0, self.checkpoints + 1, dtype=dtype)[1:-1]
        return dfx.SaveAt(ts=ts, t1=True)

    def solve(
        self,
        fn: Objective,
        solver: AbstractInnerSolver,
        x0: X,
        args: Args,
        *,
        throw: bool,
    ) -> tuple[X, InnerState, IntScalar]:
        assert isinstance(solver, GradientFlow)  # `check_compatible` ran in `argmin`
        dtype = time_dtype(x0)
        t1 = solver.final_time(args, dtype)
        # On the unit interval the first step is dt / t1. It is only a step-size
        # hint, so it carries no derivative (diffrax's adjoints refuse one there).
        dt0 = lax.stop_gradient(jnp.asarray(solver.dt, dtype) / t1)
        sol = dfx.diffeqsolve(
            dfx.ODETerm(_rescaled_flow),
            solver.diffrax_solver,
            t0=jnp.zeros((), dtype),
            t1=jnp.ones((), dtype),
            dt0=dt0,
            y0=x0,
            args=(fn, args, t1),
            saveat=self._saveat(dtype),
            stepsize_controller=self.stepsize_controller,
            adjoint=self.adjoint,
            max_steps=self.max_steps,
            throw=throw,
        )
        # The last save is the end state; if `max_steps` stopped the solve early
        # (throw=False) diffrax fills the unreached saves with inf, and the end
        # state is the last finite one.
        last = jnp.sum(jnp.isfinite(sol.ts)) - 1
        x = jtu.tree_map(lambda y: y[last], sol.ys)
        # The state is diagnostics only: no derivative. The time reached is s * t1
        # (s < 1 if diffrax stopped at max_steps with throw=False), so the
        # solver's `converged` (t >= t1) reports the failure. On success s is 1 up
        # to round-off: snap it, so that `converged` holds exactly.
        fn_, args_, x_, t1_, s_reached = stop_gradient_tree(
            (fn, args, x, t1, sol.ts[last])
        )
        successful = sol.result == dfx.RESULTS.successful
        t_reached = jnp.where(successful, t1_, s_reached * t1_)
        num_steps = jnp.asarray(sol.stats["num_steps"])
        residual0 = solver.init(fn_, stop_gradient_tree(x0), args_).residual0
        state = solver.state_at(fn_, x_, args_, t_reached, t1_, num_steps, residual0)
        return x, state, num_steps
