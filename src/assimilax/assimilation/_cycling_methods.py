"""How one window of a cycle is analysed: the interface, and cycled 3DVar."""

import abc

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree

from .._kinds import check_kind
from ..bilevel import AbstractInnerSolver, argmin
from ..costs import AbstractControl, ControlVariable, ThreeDVar
from ..costs._window import grid_array
from ..dynamics import AbstractDynamics
from ..observations import Observations
from ..priors import AbstractBackground
from ._assimilate import cost
from ._covariances import AbstractBackgroundCovariance, StaticB


class WindowAnalysis(eqx.Module):
    """The result of one window: states on the window grid ``0, Δ, ..., L Δ``,
    and the state of the covariance model for the next window (`None` for a
    static ``B``)."""

    analysis: Float[Array, " grid *state"]
    forecast: Float[Array, " grid *state"]
    converged: Bool[Array, ""]
    num_steps: Int[Array, ""]
    next_covariance: PyTree[Array] = None


class AbstractCyclingMethod(eqx.Module):
    """How `cycle` analyses one window; concrete methods are final.

    A window starts at the time of its background ``xb`` and spans `window`
    observation intervals ``Δ``; consecutive windows start `shift` intervals
    apart. A window assimilates its last `assimilated` observation times: by
    default only those that no earlier window has seen (``(window - shift + 1) Δ,
    ..., window Δ``; `assimilated` is `shift`).

    `background` is a template: `covariance` (an `AbstractBackgroundCovariance`)
    builds every window's background term from it and the window's ``xb``.
    """

    background: eqx.AbstractVar[AbstractBackground]
    control: eqx.AbstractVar[AbstractControl]
    covariance: eqx.AbstractVar[AbstractBackgroundCovariance]
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
        dynamics: AbstractDynamics,
        xb: Float[Array, "*state"],
        observations: Observations,
        interval: float,
        solver: AbstractInnerSolver,
        covariance_state: PyTree[Array] = None,
    ) -> WindowAnalysis:
        """Analyse one window from the background `xb`, shape ``(*state)``;
        `observations` have times relative to its start; `covariance_state` is
        the state of the method's `covariance` model for this window (`None` for a
        static ``B``; `CycledB`: this window's ``B``, shape ``(n, n)``).

        **Returns:** a `WindowAnalysis`: the analysis and forecast trajectories on
        the window grid, shape ``(grid, *state)``, the inner solve's convergence
        flag and step count (scalars), and the covariance model's next state.
        """

    def _check(self, owner: str) -> None:
        check_kind(
            owner,
            "background",
            self.background,
            AbstractBackground,
            "a background term such as DiagonalBackground(xb, std)",
        )
        check_kind(
            owner,
            "control",
            self.control,
            AbstractControl,
            "ControlVariable() or DirectControl()",
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

    @property
    def covariance(self) -> StaticB:
        """Always `StaticB()`: the template's ``B`` at every analysis time (a
        cycled ``B`` for 3DVar, the extended Kalman filter, is not provided)."""
        return StaticB()

    def analyse(
        self, dynamics, xb, observations, interval, solver, covariance_state=None
    ):
        grid = grid_array(np.asarray([0.0, interval]), xb.dtype)
        forecast = dynamics.integrate(xb, grid)
        background = self.covariance.background(
            self.background, forecast[-1], covariance_state
        )
        problem = ThreeDVar(observations, background, control=self.control)
        sol = argmin(cost, problem.first_guess(), problem, solver=solver, throw=False)
        analysis = jnp.stack([xb, problem.to_state(sol.value)])
        return WindowAnalysis(
            analysis, forecast, sol.stats.converged, sol.stats.num_steps
        )
