"""How one window of a cycle is analysed: 3DVar or strong-constraint 4DVar."""

import abc
from typing import Literal

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
from ..priors import AbstractBackground, CovarianceBackground
from ._cycled_covariance import (
    analysis_covariance,
    dense_covariance,
    propagate_covariance,
)


class WindowAnalysis(eqx.Module):
    """The result of one window: states on the window grid ``0, Δ, ..., L Δ``,
    and with a cycled ``B`` the next window's ``B`` (`None` for a static ``B``)."""

    analysis: Float[Array, " grid *state"]
    forecast: Float[Array, " grid *state"]
    converged: Bool[Array, ""]
    num_steps: Int[Array, ""]
    next_covariance: Float[Array, "n n"] | None = None


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

    def initial_covariance(self) -> Float[Array, "n n"] | None:
        """The first window's ``B`` when the method cycles it, shape ``(n, n)``;
        `None` (the default) for a static ``B``."""
        return None

    @abc.abstractmethod
    def analyse(
        self,
        dynamics: eqx.Module,
        xb: Float[Array, "*state"],
        observations: Observations,
        interval: float,
        solver: AbstractInnerSolver,
        covariance: Float[Array, "n n"] | None = None,
    ) -> WindowAnalysis:
        """Analyse one window from the background `xb`, shape ``(*state)``;
        `observations` have times relative to its start; `covariance` is this
        window's cycled ``B`` (`None` for a static ``B``).

        **Returns:** a `WindowAnalysis`: the analysis and forecast trajectories on
        the window grid, shape ``(grid, *state)``, the inner solve's convergence
        flag and step count (scalars), and with a cycled ``B`` the next one.
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

    def analyse(self, dynamics, xb, observations, interval, solver, covariance=None):
        grid = static_grid(np.asarray([0.0, interval]), xb.dtype)
        forecast = dynamics.integrate(xb, grid)
        background = _with_mean(self.background, forecast[-1])
        problem = ThreeDVar(observations, background, control=self.control)
        sol = argmin(_cost, problem.first_guess(), problem, solver=solver, throw=False)
        analysis = jnp.stack([xb, problem.to_state(sol.value)])
        return WindowAnalysis(
            analysis, forecast, sol.stats.converged, sol.stats.num_steps
        )


COVARIANCE_MODES = ("static", "cycled")
DEFAULT_INFLATION = 1.0
DEFAULT_ADDITIVE = 1e-3


class FourDVarCycling(AbstractCyclingMethod):
    """Cycled strong-constraint 4DVar, with windows of `window` observation
    intervals that start `shift` intervals apart.

    **Fields:**

    - `background`: ``B`` at the window start (its `xb` is a placeholder of the
      state's shape): every window's ``B`` (static), or the first window's
      (cycled).
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
    - `covariance`: how ``B`` evolves (static, default ``"static"``).
      ``"static"``: every window uses the template's ``B``. ``"cycled"``: a
      flow-dependent ``B``. After each window's solve, the analysis error
      covariance at the window start, the inverse Gauss-Newton Hessian ``A =
      (B⁻¹ + Gᵀ R⁻¹ G)⁻¹`` (``G`` the Jacobian of the observed trajectory in
      ``x0``), is propagated to the next window start with the tangent-linear
      model ``M`` over `shift` intervals:
      ``B_next = inflation · M A Mᵀ + additive · B_template``.
      For a linear model, SDA and ``additive=0`` this is the Kalman filter
      (exactly, at the window ends); for a nonlinear one, an extended Kalman
      smoother in variational form. Needs a 1-D state and SDA (``mda=False``);
      costs ``O(n)`` tangent-linear integrations and an ``O(n³)`` factorisation
      per window, so it is meant for small states (Lorenz models). Give the
      first window a ``B`` as large as the first guess's error: with a small
      one, a long window's first analyses can settle in a wrong minimum, and the
      cycled ``B``, shrunk around it, never recovers (seen on Lorenz-96 with
      windows of 4 intervals and ``B = 0.02 C``).
    - `inflation`: multiplicative inflation of the cycled ``B`` (> 0; default
      1), only with ``covariance="cycled"``.
    - `additive`: the multiple of the template's ``B`` added to every cycled
      ``B`` (>= 0; default 1e-3), only with ``covariance="cycled"``. It plays
      the part of a model-error covariance and keeps ``B`` positive definite
      where chaotic dynamics contract the error to the unstable directions;
      with ``additive=0``, ``M`` must keep ``B`` well conditioned.

    **Cost:** per window one inner solve, each cost evaluation integrating
    ``window`` intervals (``window / shift`` integrations per observation time).
    The dynamics must be autonomous: every window is integrated on the relative
    grid ``0, Δ, ..., window Δ`` (so that the grid is static; all built-in models
    are autonomous).

    ??? cite "References"

        Bocquet, Sakov. *An iterative ensemble Kalman smoother*. QJRMS 2014 (SDA
        and MDA cycling of 4DVar and of the iEnKS).

        Fisher, Leutbecher, Kelly. *On the equivalence between Kalman smoothing
        and weak-constraint four-dimensional variational data assimilation*.
        QJRMS 2005 (the Hessian of 4DVar as the inverse analysis error
        covariance, and its propagation).
    """

    background: AbstractBackground
    window: int = eqx.field(static=True)
    shift: int = eqx.field(static=True)
    mda: bool = eqx.field(static=True)
    control: AbstractControl
    covariance: Literal["static", "cycled"] = eqx.field(static=True)
    inflation: float = eqx.field(static=True)
    additive: float = eqx.field(static=True)

    def __init__(
        self,
        background: AbstractBackground,
        *,
        window: int = 1,
        shift: int | None = None,
        mda: bool = False,
        control: AbstractControl = ControlVariable(),
        covariance: Literal["static", "cycled"] = "static",
        inflation: float | None = None,
        additive: float | None = None,
    ):
        if covariance == "static":
            for name, value in (("inflation", inflation), ("additive", additive)):
                if value is not None:
                    raise ValueError(
                        f"FourDVarCycling({name}=...) applies only to a cycled B; "
                        "pass covariance='cycled' or leave it out."
                    )
        self.background = background
        self.window = window
        self.shift = window if shift is None else shift
        self.mda = mda
        self.control = control
        self.covariance = covariance
        self.inflation = DEFAULT_INFLATION if inflation is None else inflation
        self.additive = DEFAULT_ADDITIVE if additive is None else additive

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
        if self.covariance not in COVARIANCE_MODES:
            raise ValueError(
                f"FourDVarCycling(covariance=...) must be one of {COVARIANCE_MODES}, "
                f"got {self.covariance!r}."
            )
        if self.covariance == "cycled":
            self._check_cycled()

    def _check_cycled(self) -> None:
        if self.mda:
            raise ValueError(
                "FourDVarCycling(covariance='cycled') needs single data "
                "assimilation (mda=False): with R inflated, the window's Hessian "
                "is not its analysis error covariance."
            )
        if self.background.xb.ndim != 1:
            raise ValueError(
                "FourDVarCycling(covariance='cycled') needs a 1-D state (a dense "
                f"B is cycled); the background's xb has shape "
                f"{self.background.xb.shape}."
            )
        if not (isinstance(self.inflation, (int, float)) and self.inflation > 0):
            raise ValueError(
                f"FourDVarCycling(inflation=...) must be a number > 0, got "
                f"{self.inflation!r}."
            )
        if not (isinstance(self.additive, (int, float)) and self.additive >= 0):
            raise ValueError(
                f"FourDVarCycling(additive=...) must be a number >= 0, got "
                f"{self.additive!r}."
            )

    @property
    def assimilated(self) -> int:
        return self.window if self.mda else self.shift

    def initial_covariance(self):
        if self.covariance == "static":
            return None
        return dense_covariance(self.background)

    def analyse(self, dynamics, xb, observations, interval, solver, covariance=None):
        cycled = self.covariance == "cycled"
        if cycled:
            background = CovarianceBackground(xb, covariance)
        else:
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
        x0 = problem.to_state(sol.value)
        analysis = dynamics.integrate(x0, grid)
        forecast = dynamics.integrate(xb, grid)
        stats = (sol.stats.converged, sol.stats.num_steps)
        if not cycled:
            return WindowAnalysis(analysis, forecast, *stats)
        to_next_start = static_grid(np.array([0.0, self.shift * interval]), xb.dtype)
        propagated = propagate_covariance(
            dynamics, x0, analysis_covariance(problem, sol.value), to_next_start
        )
        template = dense_covariance(self.background)
        next_covariance = self.inflation * propagated + self.additive * template
        return WindowAnalysis(analysis, forecast, *stats, next_covariance)
