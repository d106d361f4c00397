"""How one window of a cycle is analysed: 3DVar or strong-constraint 4DVar."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ..bilevel import AbstractInnerSolver, argmin
from ..costs import (
    AbstractControl,
    ControlVariable,
    StrongConstraint4DVar,
    ThreeDVar,
)
from ..observations import AbstractNoise, Observations
from ..priors import AbstractBackground


class WindowAnalysis(eqx.Module):
    """The result of one window: states on the window grid ``0, Δ, ..., L Δ``."""

    analysis: Float[Array, " grid *state"]
    forecast: Float[Array, " grid *state"]
    converged: Bool[Array, ""]
    num_steps: Int[Array, ""]


def static_grid(times: np.ndarray, dtype) -> Float[Array, " grid"]:
    """`times` as an array that stays concrete while tracing.

    Under `jit`, `jnp.asarray` of a constant gives a tracer; fixed-step
    integrators (`FixedStepRK4`) need known times for their cheap `lax.scan`, and
    4DVar problems need them to build their (static) window grid.
    """
    with jax.ensure_compile_time_eval():
        return jnp.asarray(times, dtype)


class _InflatedNoise(AbstractNoise):
    """``R`` multiplied by `factor`: multiple data assimilation (each observation
    assimilated `factor` times, each time with weight ``1 / factor``)."""

    noise: AbstractNoise
    factor: float = eqx.field(static=True)

    def whiten(self, residual: Float[Array, "*obs"]) -> Float[Array, "*obs"]:
        return self.noise.whiten(residual) / np.sqrt(self.factor)


def _cost(control, problem):
    return problem.cost(control)


def _with_mean(background: AbstractBackground, xb: Float[Array, "*state"]):
    # The template's B (its std, length scale...) with this window's mean.
    return eqx.tree_at(lambda b: b.xb, background, xb)


class AbstractCyclingMethod(eqx.Module):
    """How `cycle` analyses one window; concrete methods are final.

    A window starts at the time of its background ``xb`` and spans `window`
    observation intervals ``Δ``; consecutive windows start `shift` intervals
    apart. A window assimilates its last `assimilated` observation times: by
    default only those that no earlier window has seen (``(window - shift + 1) Δ,
    ..., window Δ``; `assimilated` is `shift`).

    `background` is a template: its ``B`` (the `std` and any other field) is used
    in every window, its `xb` replaced by the cycled background.
    """

    background: eqx.AbstractVar[AbstractBackground]
    control: eqx.AbstractVar[AbstractControl]
    # Observation intervals per window, and between consecutive window starts.
    window: eqx.AbstractVar[int]
    shift: eqx.AbstractVar[int]

    @property
    def assimilated(self) -> int:
        """Observation times each window assimilates (the last ones of the window)."""
        return self.shift

    @abc.abstractmethod
    def analyse(
        self,
        dynamics: eqx.Module,
        xb: Float[Array, "*state"],
        observations: Observations,
        interval: float,
        solver: AbstractInnerSolver,
    ) -> WindowAnalysis:
        """Analyse one window from the background `xb`, shape ``(*state)``;
        `observations` have times relative to its start.

        **Returns:** a `WindowAnalysis`: the analysis and forecast trajectories on
        the window grid, shape ``(grid, *state)``, and the inner solve's
        convergence flag and step count (scalars).
        """

    def _check(self, owner: str) -> None:
        if not isinstance(self.background, AbstractBackground):
            raise TypeError(
                f"{owner}(background=...) must be a background term such as "
                f"DiagonalBackground(xb, std), got {type(self.background).__name__}."
            )
        if not isinstance(self.control, AbstractControl):
            raise TypeError(
                f"{owner}(control=...) must be ControlVariable() or DirectControl(), "
                f"got {self.control!r}."
            )


class ThreeDVarCycling(AbstractCyclingMethod):
    """Cycled 3DVar: forecast the last analysis one interval, then a 3DVar there.

    **Fields:** `background` (the static ``B``; its `xb` is a placeholder of the
    state's shape), `control` (default `ControlVariable()`: the Hessian of the
    cost in ``v`` is ``I + Sᵀ Hᵀ R⁻¹ H S``, well conditioned).

    **Cost:** one forecast over ``Δ`` and one inner solve of a quadratic (linear
    ``H``) per observation time.
    """

    background: AbstractBackground
    control: AbstractControl = ControlVariable()

    def __check_init__(self):
        self._check("ThreeDVarCycling")

    @property
    def window(self) -> int:
        """Observation intervals per window: always 1 (the analysis time)."""
        return 1

    @property
    def shift(self) -> int:
        """Intervals between window starts: always 1 (every observation time)."""
        return 1

    def analyse(self, dynamics, xb, observations, interval, solver):
        grid = static_grid(np.asarray([0.0, interval]), xb.dtype)
        forecast = dynamics.integrate(xb, grid)
        background = _with_mean(self.background, forecast[-1])
        problem = ThreeDVar(observations, background, control=self.control)
        sol = argmin(_cost, problem.first_guess(), problem, solver=solver, throw=False)
        analysis = jnp.stack([xb, problem.to_state(sol.value)])
        return WindowAnalysis(
            analysis, forecast, sol.stats.converged, sol.stats.num_steps
        )


class FourDVarCycling(AbstractCyclingMethod):
    """Cycled strong-constraint 4DVar, with windows of `window` observation
    intervals that start `shift` intervals apart.

    **Fields:**

    - `background`: the static ``B`` at the window start (its `xb` is a
      placeholder of the state's shape).
    - `window`: observation intervals per window (static, >= 1).
    - `shift`: intervals between window starts (static, ``1 <= shift <=
      window``; default `window`: consecutive, non-overlapping windows). With
      ``shift < window`` the windows overlap.
    - `mda`: multiple data assimilation (static, default `False`). `False`
      (single data assimilation, "SDA"): each window assimilates only its last
      `shift` observation times, the others being already in its background
      (with ``shift=1``, the cycling of DAPPER's ``Var4D(Lag=window)``).
      `True`: each window assimilates all its `window` observation times with
      ``R`` inflated by ``window / shift``, so that every observation, seen by
      ``window / shift`` windows, has total weight one. With a long window
      sliding by one interval, MDA starts every inner solve close to its
      minimum (the quasi-static idea), which keeps long, non-convex windows
      tractable; `shift` must divide `window`.
    - `control`: default `ControlVariable()`.

    **Cost:** per window one inner solve, each cost evaluation integrating
    ``window`` intervals (``window / shift`` integrations per observation time).
    The dynamics must be autonomous: every window is integrated on the relative
    grid ``0, Δ, ..., window Δ`` (so that the grid is static; all built-in models
    are autonomous).

    ??? cite "References"

        Bocquet, Sakov. *An iterative ensemble Kalman smoother*. QJRMS 2014 (SDA
        and MDA cycling of 4DVar and of the iEnKS).
    """

    background: AbstractBackground
    window: int = eqx.field(static=True)
    shift: int = eqx.field(static=True)
    mda: bool = eqx.field(static=True)
    control: AbstractControl

    def __init__(
        self,
        background: AbstractBackground,
        *,
        window: int = 1,
        shift: int | None = None,
        mda: bool = False,
        control: AbstractControl = ControlVariable(),
    ):
        self.background = background
        self.window = window
        self.shift = window if shift is None else shift
        self.mda = mda
        self.control = control

    def __check_init__(self):
        self._check("FourDVarCycling")
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(
                f"FourDVarCycling(window=...) must be an int >= 1, got {self.window!r}."
            )
        if not isinstance(self.shift, int) or not 1 <= self.shift <= self.window:
            raise ValueError(
                "FourDVarCycling(shift=...) must be an int in "
                f"[1, window={self.window}], got {self.shift!r}."
            )
        if not isinstance(self.mda, bool):
            raise TypeError(
                f"FourDVarCycling(mda=...) must be a bool, got {self.mda!r}."
            )
        if self.mda and self.window % self.shift:
            raise ValueError(
                f"FourDVarCycling(mda=True): shift={self.shift} must divide "
                f"window={self.window} (each observation is then seen by the same "
                "number of windows)."
            )

    @property
    def assimilated(self) -> int:
        return self.window if self.mda else self.shift

    def analyse(self, dynamics, xb, observations, interval, solver):
        background = _with_mean(self.background, xb)
        if self.mda and self.window > self.shift:
            factor = self.window / self.shift
            noise = _InflatedNoise(observations.noise, factor)
            observations = eqx.tree_at(lambda o: o.noise, observations, noise)
        problem = StrongConstraint4DVar(
            dynamics, observations, background, t0=0.0, control=self.control
        )
        sol = argmin(_cost, problem.first_guess(), problem, solver=solver, throw=False)
        grid = static_grid(np.arange(self.window + 1) * interval, xb.dtype)
        analysis = dynamics.integrate(problem.to_state(sol.value), grid)
        forecast = dynamics.integrate(xb, grid)
        return WindowAnalysis(
            analysis, forecast, sol.stats.converged, sol.stats.num_steps
        )
