"""Twin experiments: a known truth and synthetic observations of it, as a Dataset."""

from collections.abc import Hashable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import ArrayLike, Float, PRNGKeyArray, Real

from .._dims import OBS, TIME, TRUTH, TRUTH_ATTRS
from ..dynamics import AbstractDynamics
from ..observations import AbstractNoise, AbstractObservationOperator, Observations
from ._xarray import observations_to_dataset, trajectory_to_dataset


def twin_experiment(
    dynamics: AbstractDynamics,
    x0: Float[ArrayLike, "*state"],
    times: Real[ArrayLike, " time"],
    operator: AbstractObservationOperator,
    noise: AbstractNoise,
    key: PRNGKeyArray,
    *,
    observe_every: int = 1,
    coords: Mapping[Hashable, Any] | None = None,
) -> xr.Dataset:
    """Integrate a truth from `x0` and observe it with noise: a twin experiment.

    **Arguments:**

    - `dynamics`: the model that makes the truth.
    - `x0`: the true initial state (shape ``"*state"``).
    - `times`: model times (strictly increasing; ``times[0]`` is the initial time).
    - `operator`, `noise`: the observation operator ``H`` and noise model; the noise
      must be able to draw samples (its `sample` method: `ScalarNoise`,
      `DiagonalNoise`).
    - `key`: a JAX PRNG key for the noise.
    - `observe_every`: observe every k-th model time, starting with the first; other
      times hold NaN (missing) in the `obs` variable.
    - `coords`: optional space coordinates (e.g. ``{"x": ("x", grid, {"units":
      "m"})}``).

    **Returns:** a Dataset with `truth` (``time, x[, y]``) and `obs` (``time`` and
    the observation dims, NaN where not observed) on one `time` coordinate. Read the
    observations back with `observations_from_dataset(ds, operator=..., noise=...)`.

    **Raises:** `ValueError` for `observe_every < 1`; `NotImplementedError` for a
    noise model that cannot draw samples.
    """
    if observe_every < 1:
        raise ValueError(f"`observe_every` must be >= 1, got {observe_every}.")
    times = jnp.asarray(times, dtype=jnp.result_type(jnp.asarray(x0)))
    truth = dynamics.integrate(x0, times)
    clean = jax.vmap(operator)(truth)
    # y = H(x) + R^{1/2} e with e ~ N(0, I), one draw per time.
    errors = noise.sample(key, clean.shape, clean.dtype)
    observed = np.zeros(times.shape[0], dtype=bool)
    observed[::observe_every] = True
    values = jnp.where(
        observed.reshape((-1,) + (1,) * (clean.ndim - 1)), clean + errors, jnp.nan
    )
    observations = Observations(values, None, times, operator, noise)
    space = {} if coords is None else {k: v for k, v in coords.items() if k != TIME}
    truth_ds = trajectory_to_dataset(truth, times, space, name=TRUTH, attrs=TRUTH_ATTRS)
    obs_ds = observations_to_dataset(observations, space, variable=OBS)
    return xr.merge([truth_ds, obs_ds], combine_attrs="override")
