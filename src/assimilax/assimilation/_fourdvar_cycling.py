"""Cycled strong-constraint 4DVar: windows of several observation intervals."""

import equinox as eqx
import numpy as np

from .._kinds import check_kind
from ..bilevel import argmin
from ..costs import AbstractControl, ControlVariable, StrongConstraint4DVar
from ..costs._window import grid_array
from ..priors import AbstractBackground
from ._assimilate import cost
from ._covariances import AbstractBackgroundCovariance, StaticB
from ._cycling_methods import (
    AbstractCyclingMethod,
    WindowAnalysis,
)
from ._windows import AbstractWindowScheme, SDA


class FourDVarCycling(AbstractCyclingMethod):
    """Cycled strong-constraint 4DVar, with windows of `window` observation
    intervals that start `shift` intervals apart.

    **Fields:**

    - `background`: the template of ``B`` at the window start (its `xb` is a
      placeholder of the state's shape): every window's ``B`` (`StaticB`), or
      the first window's (`CycledB`).
    - `window`: observation intervals per window (static, >= 1).
    - `shift`: intervals between window starts (static, ``1 <= shift <=
      window``; default `window`: consecutive, non-overlapping windows). With
      ``shift < window`` the windows overlap.
    - `windows`: which observations a window assimilates, an
      `AbstractWindowScheme`: `SDA()` (the default; single data assimilation:
      only the last `shift` observation times, the others being already in the
      background) or `MDA()` (multiple data assimilation: all `window` times,
      with ``R`` inflated by ``window / shift``; `shift` must divide `window`).
    - `control`: default `ControlVariable()`.
    - `covariance`: how ``B`` evolves, an `AbstractBackgroundCovariance`:
      `StaticB()` (the default: the template's ``B`` in every window) or
      `CycledB(inflation, additive)` (a flow-dependent ``B`` from each window's
      Hessian; needs a 1-D state and windows that do not inflate ``R``).

    **Raises:** `TypeError` for fields of the wrong kind; `ValueError` for a
    `window` or `shift` out of range, or a `windows`/`covariance` that does not
    suit the others (each message names the fields).

    **Cost:** per window one inner solve, each cost evaluation integrating
    ``window`` intervals (``window / shift`` integrations per observation time),
    plus what `covariance` adds. The dynamics must be autonomous: every window
    is integrated on the relative grid ``0, Δ, ..., window Δ`` (so that the grid
    is static; all built-in models are autonomous).

    ??? cite "References"

        Bocquet, Sakov. *An iterative ensemble Kalman smoother*. QJRMS 2014 (SDA
        and MDA cycling of 4DVar and of the iEnKS).
    """

    background: AbstractBackground
    window: int = eqx.field(static=True)
    shift: int = eqx.field(static=True)
    windows: AbstractWindowScheme
    control: AbstractControl
    covariance: AbstractBackgroundCovariance

    def __init__(
        self,
        background: AbstractBackground,
        *,
        window: int = 1,
        shift: int | None = None,
        windows: AbstractWindowScheme = SDA(),
        control: AbstractControl = ControlVariable(),
        covariance: AbstractBackgroundCovariance = StaticB(),
    ):
        self.background = background
        self.window = window
        self.shift = window if shift is None else shift
        self.windows = windows
        self.control = control
        self.covariance = covariance

    def __check_init__(self):
        owner = "FourDVarCycling"
        self._check(owner)
        if not isinstance(self.window, int) or self.window < 1:
            raise ValueError(
                f"{owner}(window=...) must be an int >= 1, got {self.window!r}."
            )
        if not isinstance(self.shift, int) or not 1 <= self.shift <= self.window:
            raise ValueError(
                f"{owner}(shift=...) must be an int in [1, window={self.window}], "
                f"got {self.shift!r}."
            )
        check_kind(
            owner,
            "windows",
            self.windows,
            AbstractWindowScheme,
            "a window scheme, SDA() or MDA()",
        )
        check_kind(
            owner,
            "covariance",
            self.covariance,
            AbstractBackgroundCovariance,
            "a background covariance model, StaticB() or CycledB(...)",
        )
        self.windows.check(owner, self.window, self.shift)
        self.covariance.check(
            owner, self.background, self.windows, self.window, self.shift
        )

    @property
    def assimilated(self) -> int:
        return self.windows.assimilated(self.window, self.shift)

    def analyse(
        self, dynamics, xb, observations, interval, solver, covariance_state=None
    ):
        background = self.covariance.background(self.background, xb, covariance_state)
        observations = self.windows.observations(observations, self.window, self.shift)
        problem = StrongConstraint4DVar(
            dynamics, observations, background, t0=0.0, control=self.control
        )
        sol = argmin(cost, problem.first_guess(), problem, solver=solver, throw=False)
        grid = grid_array(np.arange(self.window + 1) * interval, xb.dtype)
        analysis = dynamics.integrate(problem.to_state(sol.value), grid)
        forecast = dynamics.integrate(xb, grid)
        to_next_start = grid_array(np.array([0.0, self.shift * interval]), xb.dtype)
        next_covariance = self.covariance.update(
            self.background,
            problem,
            sol.value,
            dynamics,
            to_next_start,
            covariance_state,
        )
        return WindowAnalysis(
            analysis,
            forecast,
            sol.stats.converged,
            sol.stats.num_steps,
            next_covariance,
        )
