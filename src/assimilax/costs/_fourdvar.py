"""Strong- and weak-constraint 4DVar over one assimilation window."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from .._custom_types import Scalar
from ..priors import AbstractBackground, AbstractPrior
from ..priors._gaussian import broadcast, check_positive
from ._base import AbstractVariationalProblem, check_fits, check_parts
from ._control import AbstractControl, DirectControl
from ._window import grid_array, index_array, window_grid


def _check_window(owner: str, problem) -> None:
    check_parts(owner, problem.background, problem.priors, problem.control)
    xb = problem.background.xb
    shape = (len(problem.observation_steps),) + xb.shape
    check_fits(owner, problem.observations, jax.ShapeDtypeStruct(shape, xb.dtype))


class _AbstractWindowProblem(AbstractVariationalProblem):
    """A problem over a window: its static time grid as arrays, and the states
    at the observation times."""

    observations: eqx.AbstractVar[eqx.Module]
    time_grid: eqx.AbstractVar[tuple[float, ...]]
    observation_steps: eqx.AbstractVar[tuple[int, ...]]

    @property
    def times(self) -> Float[Array, " grid"]:
        """The model time grid of the window, shape ``(grid,)`` (a concrete array,
        also under `jit`)."""
        return grid_array(self.time_grid, jnp.result_type(self.observations.times))

    @property
    def observation_index(self) -> Int[Array, " time"]:
        """Where each observation time sits on `times`: integers, shape
        ``(time,)``."""
        return index_array(self.observation_steps)

    def _at_observations(
        self, trajectory: Float[Array, " grid *state"]
    ) -> Float[Array, " time *state"]:
        # Every grid time observed (the usual case): no gather, and no scatter in
        # the adjoint.
        if self.observation_steps == tuple(range(trajectory.shape[0])):
            return trajectory
        return trajectory[np.asarray(self.observation_steps)]


class StrongConstraint4DVar(_AbstractWindowProblem):
    """Strong-constraint 4DVar: the model is exact, the control is the initial state.

    ``U(x0) = 0.5 |x0 - xb|²_B⁻¹ + sum_k 0.5 |y_k - H(M_{t0→t_k}(x0))|²_R⁻¹
    + priors(x0)``, with the trajectory from ``dynamics.integrate(x0, times)``.

    **Arguments:**

    - `dynamics`: an `assimilax.dynamics.AbstractDynamics`.
    - `observations`: an `assimilax.observations.Observations`; its `times` may
      fall anywhere in the window (the integrator saves there).
    - `background`: the background term at `t0` (its `xb` fixes the state shape).
    - `t0`: the window start (keyword; default the first observation time). The
      model grid `times` is `t0` followed by the observation times (`t0` only once
      when an observation is at `t0`). Observations before `t0` raise.
    - `priors`, `control`: as for `ThreeDVar` (priors act on the initial state).

    The grid is static (fields `time_grid` and `observation_steps`, tuples of
    Python numbers; read it as arrays with `times` and `observation_index`): it
    fixes shapes, is not learnable, and stays concrete under `jit`, so that
    `FixedStepRK4` (Lorenz models) runs its cheap `lax.scan`.

    **Cost and limits:** one integration per cost; `jax.grad` adds the adjoint
    (reverse-mode through the integrator, whose `adjoint` choice sets its memory).
    Nonlinear dynamics make the cost non-convex: long windows have local minima
    (start from the background, or use a quasi-static schedule).

    ??? cite "References"

        Le Dimet, Talagrand. *Variational algorithms for analysis and assimilation
        of meteorological observations*. Tellus 1986.
    """

    dynamics: eqx.Module
    observations: eqx.Module
    background: AbstractBackground
    priors: tuple[AbstractPrior, ...]
    control: AbstractControl
    time_grid: tuple[float, ...] = eqx.field(static=True)
    observation_steps: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self,
        dynamics: eqx.Module,
        observations: eqx.Module,
        background: AbstractBackground,
        *,
        t0: float | Float[ArrayLike, ""] | None = None,
        priors: tuple[AbstractPrior, ...] = (),
        control: AbstractControl = DirectControl(),
    ):
        self.dynamics = dynamics
        self.observations = observations
        self.background = background
        self.priors = priors
        self.control = control
        owner = "StrongConstraint4DVar"
        self.time_grid, self.observation_steps = window_grid(
            owner, observations.times, t0
        )

    def __check_init__(self):
        _check_window("StrongConstraint4DVar", self)

    def to_state(self, control: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """The initial state ``x0`` at ``times[0]``, shape ``(*state)``."""
        return self.control.to_state(control, self.background)

    def first_guess(self) -> Float[Array, "*state"]:
        return self.control.first_guess(self.background)

    def trajectory(
        self, control: Float[Array, "*state"]
    ) -> Float[Array, " grid *state"]:
        """The model states at every time of `times`, shape ``(grid, *state)``."""
        x0 = self.to_state(control)
        if len(self.time_grid) == 1:  # a single observation at t0: nothing to run
            return x0[None]
        # Concrete times in the state's dtype: fixed-step integrators can then
        # take their `lax.scan` path under `jit` too.
        return self.dynamics.integrate(x0, grid_array(self.time_grid, x0.dtype))

    def states_and_times(
        self, control: Float[Array, "*state"]
    ) -> tuple[Float[Array, " grid *state"], Float[Array, " grid"]]:
        """The trajectory from the control's initial state, shape ``(grid,
        *state)``, and the window's time grid `times`, shape ``(grid,)``."""
        return self.trajectory(control), self.times

    def _components(self, control: Float[Array, "*state"]) -> dict[str, Scalar]:
        residual = self.control.background_residual(control, self.background)
        states = self._at_observations(self.trajectory(control))
        return {
            "background": 0.5 * jnp.sum(jnp.square(residual)),
            "observations": self.observations.misfit(states),
        }

    def _residuals(self, control: Float[Array, "*state"]) -> dict[str, PyTree[Array]]:
        states = self._at_observations(self.trajectory(control))
        return {
            "background": self.control.background_residual(control, self.background),
            "observations": self.observations.residuals(states),
        }


class WeakConstraint4DVar(_AbstractWindowProblem):
    """Weak-constraint 4DVar: the control is the state at every time of `times`.

    ``U(x_0..x_K) = 0.5 |x_0 - xb|²_B⁻¹
    + sum_k 0.5 |x_k - M_{t_{k-1}→t_k}(x_{k-1})|²_Q⁻¹
    + sum_k 0.5 |y_k - H(x_k)|²_R⁻¹ + sum_k priors(x_k)``.

    **Arguments:** as `StrongConstraint4DVar`, plus

    - `model_error_std`: the model-error standard deviation (``Q = diag(std²)``,
      > 0): a scalar, an array of the state's shape, or of shape
      ``(len(times) - 1, *state)`` (one per segment). Learnable.
    - `times`: the time grid of the control (keyword; default `t0` and the
      observation times). Every observation time must be on it.

    With `ControlVariable()` only ``x_0`` is transformed. `to_state` gives the
    trajectory ``(grid, *state)``; `first_guess` the background forecast (zero
    model error).

    **Cost and limits:** one integration of each segment per cost, all segments
    at once (`vmap`): parallel in time, unlike strong-constraint 4DVar. The control
    is ``len(times)`` times larger, and as ``Q -> 0`` the problem becomes
    ill-conditioned (it tends to the strong-constraint one).

    ??? cite "References"

        Trémolet. *Accounting for an imperfect model in 4D-Var*. QJRMS 2006.
    """

    dynamics: eqx.Module
    observations: eqx.Module
    background: AbstractBackground
    model_error_std: Float[Array, "..."]
    priors: tuple[AbstractPrior, ...]
    control: AbstractControl
    time_grid: tuple[float, ...] = eqx.field(static=True)
    observation_steps: tuple[int, ...] = eqx.field(static=True)
    priors_per_time = True

    def __init__(
        self,
        dynamics: eqx.Module,
        observations: eqx.Module,
        background: AbstractBackground,
        model_error_std: Float[ArrayLike, "..."],
        *,
        t0: float | Float[ArrayLike, ""] | None = None,
        times: Float[ArrayLike, " grid"] | None = None,
        priors: tuple[AbstractPrior, ...] = (),
        control: AbstractControl = DirectControl(),
    ):
        owner = "WeakConstraint4DVar"
        self.dynamics = dynamics
        self.observations = observations
        self.background = background
        self.priors = priors
        self.control = control
        self.time_grid, self.observation_steps = window_grid(
            owner, observations.times, t0, times
        )
        xb = background.xb if isinstance(background, AbstractBackground) else None
        if xb is not None:
            segments = jax.ShapeDtypeStruct(
                (len(self.time_grid) - 1,) + xb.shape, xb.dtype
            )
            model_error_std = check_positive(
                owner,
                "model_error_std",
                model_error_std,
                segments,
                what="the model errors (len(times) - 1, *state)",
            )
        self.model_error_std = model_error_std

    def __check_init__(self):
        _check_window("WeakConstraint4DVar", self)

    def to_state(
        self, control: Float[Array, " grid *state"]
    ) -> Float[Array, " grid *state"]:
        first = self.control.to_state(control[0], self.background)
        return jnp.concatenate([first[None], control[1:]])

    def first_guess(self) -> Float[Array, " grid *state"]:
        first = self.control.first_guess(self.background)
        if len(self.time_grid) == 1:
            return first[None]
        xb = self.background.xb
        forecast = self.dynamics.integrate(xb, grid_array(self.time_grid, xb.dtype))
        return jnp.concatenate([first[None], forecast[1:]])

    def states_and_times(
        self, control: Float[Array, " grid *state"]
    ) -> tuple[Float[Array, " grid *state"], Float[Array, " grid"]]:
        """The control's trajectory, shape ``(grid, *state)`` (`to_state`), and
        the window's time grid `times`, shape ``(grid,)``."""
        return self.to_state(control), self.times

    def model_errors(
        self, control: Float[Array, " grid *state"]
    ) -> Float[Array, "..."]:
        """``x_k - M(x_{k-1})`` for each segment, shape ``(grid - 1, *state)``."""
        states = self.to_state(control)

        def forecast(x, start, end):
            return self.dynamics.integrate(x, jnp.stack([start, end]))[-1]

        # The segments run at once under `vmap`, so their times are traced there
        # (fixed-step integrators use their general path).
        times = grid_array(self.time_grid, states.dtype)
        ends = jax.vmap(forecast)(states[:-1], times[:-1], times[1:])
        return states[1:] - ends

    def _whitened_model_errors(self, control):
        errors = self.model_errors(control)
        return errors / broadcast(self.model_error_std, errors)

    def _components(self, control: Float[Array, " grid *state"]) -> dict[str, Scalar]:
        residual = self.control.background_residual(control[0], self.background)
        terms = {"background": 0.5 * jnp.sum(jnp.square(residual))}
        if len(self.time_grid) > 1:
            whitened = self._whitened_model_errors(control)
            terms["model_error"] = 0.5 * jnp.sum(jnp.square(whitened))
        states = self._at_observations(self.to_state(control))
        terms["observations"] = self.observations.misfit(states)
        return terms

    def _residuals(
        self, control: Float[Array, " grid *state"]
    ) -> dict[str, PyTree[Array]]:
        residual = self.control.background_residual(control[0], self.background)
        terms = {"background": residual}
        if len(self.time_grid) > 1:
            terms["model_error"] = self._whitened_model_errors(control)
        states = self._at_observations(self.to_state(control))
        terms["observations"] = self.observations.residuals(states)
        return terms
