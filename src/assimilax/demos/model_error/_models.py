"""The models of the experiment: the one-scale base, the network correction and the
4DVar window with the corrected model (the inner problem of the joint learning)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from ... import bilevel as ax
from ...costs import StrongConstraint4DVar
from ...dynamics import CorrectedDynamics, FixedStepRK4, LocalConvCorrection, Lorenz96
from ...observations import Identity, Observations, ScalarNoise
from ...priors import DiagonalBackground


class Standardised(eqx.Module):
    """``correction((x - mean) / scale)``: a correction fed standardised states
    (`LocalConvCorrection`'s first `tanh` units saturate on raw Lorenz-96 values
    of ~10). `mean` and `scale` are static floats, not learnt."""

    correction: eqx.Module
    mean: float = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __call__(self, x: Float[Array, "*batch n"]) -> Float[Array, "*batch n"]:
        return self.correction((x - self.mean) / self.scale)


def network(
    key, mean: float, scale: float, *, width=5, hidden=32, depth=3
) -> Standardised:
    """The default correction: a `LocalConvCorrection` on standardised states."""
    net = LocalConvCorrection(key=key, width=width, hidden=hidden, depth=depth)
    return Standardised(net, mean, scale)


class Experiment(eqx.Module):
    """The joint learning problem on windows made by `make_windows`.

    - `K`, `F`, `dt`: the resolved model `base`, ``Lorenz96(n=K, F=F)`` with
      RK4 steps `dt` (no fast variables). Python numbers, so that `fit` can
      key its compiled step on this module's methods.
    - `obs_interval`, `window`: the observation grid of a window.
    - `obs_std`: the observation-noise std (known).

    `problem_fn(params, window)` is a `StrongConstraint4DVar` over the window's
    observations at ``obs_interval, ..., window obs_interval`` from its
    observation-only background at 0, with ``CorrectedDynamics(base, params)``.
    `outer_loss(x0, params, window)` is the mean squared misfit of the next
    windows' observations `future` (NaN: missing) to the forecast of the corrected model
    from the analysis `x0`: unsupervised, no truth involved.
    """

    K: int = eqx.field(static=True)
    F: float = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    obs_interval: float = eqx.field(static=True)
    window: int = eqx.field(static=True)
    obs_std: float = eqx.field(static=True)

    @property
    def base(self) -> Lorenz96:
        return Lorenz96(n=self.K, F=self.F, integrator=FixedStepRK4(dt=self.dt))

    def model(self, correction) -> CorrectedDynamics:
        return CorrectedDynamics(self.base, correction)

    @property
    def obs_times(self) -> np.ndarray:
        return np.arange(1, self.window + 1) * self.obs_interval

    def problem_fn(self, params: PyTree, window: dict) -> StrongConstraint4DVar:
        observations = Observations(
            window["obs"],
            None,
            self.obs_times,
            Identity(),
            ScalarNoise(self.obs_std),
        )
        background = DiagonalBackground(window["xb"], window["xb_std"])
        return StrongConstraint4DVar(
            self.model(params), observations, background, t0=0.0
        )

    def outer_loss(self, x0: Array, params: PyTree, window: dict) -> Array:
        # The forecast runs through the window, then over `future`'s times.
        times = np.arange(self.window + 1 + window["future"].shape[0])
        times = times * self.obs_interval
        forecast = self.model(params).integrate(x0, times)[self.window + 1 :]
        return masked_mse(forecast, window["future"])


def masked_mse(forecast: Array, obs: Array) -> Array:
    """Mean squared difference over the finite entries of `obs` (NaN: missing);
    the NaNs are replaced before the subtraction so that gradients stay finite."""
    seen = jnp.isfinite(obs)
    diff = jnp.where(seen, forecast - jnp.where(seen, obs, 0.0), 0.0)
    return jnp.sum(diff**2) / jnp.maximum(jnp.sum(seen.astype(diff.dtype)), 1.0)


def analyses(experiment: Experiment, params, windows: dict, solver) -> Array:
    """The analyses ``x0`` of every window (cold inner solves, vectorised)."""

    def one(window):
        problem = experiment.problem_fn(params, window)
        solution = ax.argmin(
            lambda x, p: p.cost(x), problem.first_guess(), problem, solver=solver
        )
        return problem.to_state(solution.value)

    return eqx.filter_jit(jax.vmap(one))(windows)
