"""Which observations a cycled 4DVar window assimilates, and with what weight:
single (`SDA`) or multiple (`MDA`) data assimilation."""

import abc

import equinox as eqx
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..observations import AbstractNoise, Observations


class _InflatedNoise(AbstractNoise):
    """``R`` multiplied by `factor`: multiple data assimilation (each observation
    assimilated `factor` times, each time with weight ``1 / factor``)."""

    noise: AbstractNoise
    factor: float = eqx.field(static=True)

    def whiten(self, residual: Float[Array, "*obs"]) -> Float[Array, "*obs"]:
        return self.noise.whiten(residual) / np.sqrt(self.factor)

    def sample(
        self, key: PRNGKeyArray, shape: tuple[int, ...], dtype
    ) -> Float[Array, "..."]:
        return self.noise.sample(key, shape, dtype) * np.sqrt(self.factor)


class AbstractWindowScheme(eqx.Module):
    """Which observation times of a window `FourDVarCycling` assimilates, and the
    weight each gets (`SDA`, `MDA`); concrete schemes are final.

    A window spans `window` observation intervals and the next one starts
    `shift` intervals later (both integers, the method's fields), so every
    observation time lies in ``window / shift`` windows. A scheme says how many
    of the window's last observation times are assimilated (`assimilated`) and
    by how much ``R`` is inflated (`r_inflation`) so that each observation has a
    total weight of one over the windows that see it.
    """

    @abc.abstractmethod
    def assimilated(self, window: int, shift: int) -> int:
        """How many of the window's last observation times its analysis uses."""

    @abc.abstractmethod
    def r_inflation(self, window: int, shift: int) -> float:
        """The factor ``R`` is multiplied by in every window (1: not inflated)."""

    def check(self, owner: str, window: int, shift: int) -> None:
        """Raise a `ValueError` naming `owner`'s fields when this scheme does not
        suit `window` and `shift` (by default every pair suits)."""
        del owner, window, shift

    def observations(
        self, observations: Observations, window: int, shift: int
    ) -> Observations:
        """`observations` (its `values` of shape ``(assimilated, *obs)``) with its
        noise ``R`` inflated by `r_inflation` (unchanged when the factor is 1)."""
        factor = self.r_inflation(window, shift)
        if factor == 1:  # no wrapper: the problem is the plain one
            return observations
        noise = _InflatedNoise(observations.noise, factor)
        return eqx.tree_at(lambda o: o.noise, observations, noise)


class SDA(AbstractWindowScheme):
    """Single data assimilation (the default): each window assimilates only its
    last `shift` observation times, those no earlier window has seen; the others
    are already in its background. With ``shift=1`` this is the cycling of
    DAPPER's ``Var4D(Lag=window)``.

    **Cost:** one observation term per new observation time; the cost of a
    window is still that of integrating all of it.
    """

    def assimilated(self, window: int, shift: int) -> int:
        del window
        return shift

    def r_inflation(self, window: int, shift: int) -> float:
        del window, shift
        return 1.0


class MDA(AbstractWindowScheme):
    """Multiple data assimilation: each window assimilates all its `window`
    observation times with ``R`` inflated by ``window / shift``, so that every
    observation, seen by ``window / shift`` windows, has total weight one.

    With a long window sliding by one interval, MDA starts every inner solve
    close to its minimum (the quasi-static idea), which keeps long, non-convex
    windows tractable. `shift` must divide `window`; with ``shift == window``
    MDA is SDA.

    **Cost:** ``window / shift`` observation terms per observation time (each
    observation is fitted by every window that sees it).

    ??? cite "References"

        Bocquet, Sakov. *An iterative ensemble Kalman smoother*. QJRMS 2014 (SDA
        and MDA cycling of 4DVar and of the iEnKS).
    """

    def assimilated(self, window: int, shift: int) -> int:
        del shift
        return window

    def r_inflation(self, window: int, shift: int) -> float:
        return window / shift

    def check(self, owner: str, window: int, shift: int) -> None:
        if window % shift:
            raise ValueError(
                f"{owner}(windows=MDA()): shift={shift} must divide window={window} "
                "(each observation is then seen by the same number of windows)."
            )
