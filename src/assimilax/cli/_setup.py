"""An experiment built from a config: the model, the data, and its problems.

`prepare` builds everything that does not change while an experiment runs
(the assimilating model, the observation operator, the data as a Dataset with
a `window` dim, the time grid) and checks it by building the first window's
problem; an error of the library at that stage is reported as a config error.
`Experiment.problem` then builds one window's variational problem, optionally
with some options replaced by traced values (the parameters `fit` learns).
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jaxtyping import Array, Float

from .._dims import TIME, X, Y
from ..costs import AbstractVariationalProblem, ControlVariable, DirectControl
from ..dynamics import AbstractDynamics
from ..learning import process_shard
from ..observations import (
    AbstractObservationOperator,
    DiagonalNoise,
    Observations,
    ScalarNoise,
)
from ._config import Config
from ._data import config_context, generate_twin, ordered, read_netcdf, WINDOW
from ._registry import model_grid
from ._table import ConfigError


def _values_for(values: Mapping[str, Any], section: str) -> dict[str, Any]:
    prefix = section + "."
    return {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """What a config describes, built: see `prepare`.

    - `data`: the Dataset (``window`` first; variables `obs`, maybe `truth`, `xb`);
    - `times`: the observation times (the problems' time grid starts at `t0`);
    - `windowed`: whether the data came with several windows (outputs keep the
      `window` dim then).
    """

    config: Config
    model: AbstractDynamics
    operator: AbstractObservationOperator
    noise_std: Any
    mean: Float[Array, "..."]
    data: xr.Dataset
    times: np.ndarray
    windowed: bool

    @property
    def state_shape(self) -> tuple[int, ...]:
        """The shape of one model state."""
        return tuple(self.mean.shape)

    @property
    def num_windows(self) -> int:
        """The number of assimilation windows in the data."""
        return self.data.sizes[WINDOW]

    @property
    def t0(self) -> float:
        """The window start: ``[problem].t0``, default the first data time."""
        t0 = self.config.problem.options.get("t0")
        return float(self.times[0]) if t0 is None else float(t0)

    def arrays(self, index: np.ndarray | slice = slice(None)) -> dict[str, Array]:
        """The data of the windows `index` as arrays (``window`` first)."""
        out = {}
        for name, da in self.data.data_vars.items():
            if WINDOW not in da.dims:
                da = da.expand_dims({WINDOW: self.num_windows})
            out[str(name)] = jnp.asarray(ordered(da).values[index])
        return out

    def process_share(self) -> "Experiment":
        """This process's contiguous share of the windows (`process_shard`, an
        ``isel``), for a multi-process `fit`. **Raises:** `ConfigError` when the
        windows do not split evenly over the processes."""
        try:
            data = process_shard(self.data, WINDOW)
        except ValueError as error:
            raise ConfigError(f"--distributed: {error}") from None
        return dataclasses.replace(self, data=data)

    def noise(self, values: Mapping[str, Any] | None = None):
        """The observation-error model, `values` replacing ``noise_std``."""
        values = {} if values is None else values
        std = _values_for(values, "observations").get("noise_std", self.noise_std)
        if isinstance(std, np.ndarray):
            return DiagonalNoise(std)
        return ScalarNoise(std)

    def problem(
        self, window: Mapping[str, Array], values: Mapping[str, Any] | None = None
    ) -> AbstractVariationalProblem:
        """One window's problem; `values` (``"section.key"``) replace options."""
        config = self.config
        values = {} if values is None else values
        model = config.model.build(overrides=_values_for(values, "model"))
        observations = Observations(
            window["obs"], None, self.times, self.operator, self.noise(values)
        )
        xb = window["xb"] if "xb" in window else self.mean
        background = config.background.build(
            xb, overrides=_values_for(values, "background")
        )
        priors = ()
        if config.prior is not None:
            priors = (config.prior.build(overrides=_values_for(values, "prior")),)
        variable = config.problem.options["control"] == "variable"
        control = ControlVariable() if variable else DirectControl()
        return config.problem.build(
            model,
            observations,
            background,
            priors,
            control,
            overrides=_values_for(values, "problem"),
        )

    def predict(
        self, problem: AbstractVariationalProblem, state: Float[Array, "..."]
    ) -> Float[Array, " time *obs"]:
        """``H`` of the analysis `state` at each observation time."""
        kind = self.config.problem.name
        if kind == "3dvar":
            states = jnp.broadcast_to(state, (len(self.times),) + state.shape)
        else:
            steps = np.asarray(problem.observation_steps)
            if kind == "weak4dvar":
                states = state[steps]
            elif len(problem.time_grid) == 1:
                states = state[None]
            else:
                states = problem.dynamics.integrate(state, problem.times)[steps]
        return jax.vmap(self.operator)(states)


def _array_option(named, key: str, shape: tuple[int, ...], what: str):
    """A number, or a list of numbers reshaped to `shape`, for option `key`."""
    value = named.options[key]
    if not isinstance(value, tuple):
        return value
    if len(value) != int(np.prod(shape)):
        raise ConfigError(
            f"{named.where}.{key} has {len(value)} values but {what} has "
            f"{int(np.prod(shape))} entries (shape {shape})"
        )
    return np.asarray(value, float).reshape(shape)


def _select_time(config: Config, data: xr.Dataset) -> xr.Dataset:
    """3DVar: the data at the analysis time (default the first observed one)."""
    times = data[TIME].values
    wanted = config.problem.options["analysis_time"]
    if wanted is None:
        observed = data["obs"].notnull().any([d for d in data["obs"].dims if d != TIME])
        if not observed.any():
            raise ConfigError("[data]: the observations are all missing (NaN)")
        index = int(np.argmax(observed.values))
    else:
        index = int(np.argmin(np.abs(times - wanted)))
        if abs(times[index] - wanted) > 1e-9 * max(1.0, abs(wanted)):
            raise ConfigError(
                f"[problem].analysis_time = {wanted} is not a time of the data "
                f"(from {times[0]} to {times[-1]}, {times.size} times)"
            )
    return data.isel({TIME: [index]})


def prepare(config: Config) -> Experiment:
    """Build and check the experiment of `config` (no solve yet).

    **Raises:** `ConfigError` for anything the library refuses to build.
    """
    with config_context("[model]"):
        model = config.model.build()
    shape = tuple(model.state_shape)
    twin = config.data.twin
    if twin is not None:
        with config_context("[data.twin.truth_model]"):
            truth_shape = tuple(twin.truth_model.build().state_shape)
        if truth_shape != shape:
            raise ConfigError(
                f"[data.twin.truth_model] has state shape {truth_shape} but [model] "
                f"has {shape}: the truth must live on the same grid"
            )
    with config_context("[observations]"):
        operator = config.observations.build(model)
        obs_shape = operator.obs_shape(shape)
    noise_std = _array_option(
        config.observations, "noise_std", obs_shape, "one observation time"
    )
    mean = jnp.asarray(
        np.broadcast_to(
            _array_option(config.background, "mean", shape, "the model state"), shape
        ),
        float,
    )
    with config_context("[background]"):
        background = config.background.build(mean)
    experiment = Experiment(
        config, model, operator, noise_std, mean, xr.Dataset(), np.zeros(0), False
    )
    with config_context("[observations]"):
        noise = experiment.noise()
    if twin is not None:
        coords = None  # grid coordinates when the model has a grid
        if model.grid is not None:
            axes = zip((X, Y), model_grid(model))
            coords = {name: (name, axis) for name, axis in axes}
        data = generate_twin(config, operator, noise, background, coords)
        windowed = twin.windows > 1
    else:
        data = read_netcdf(config, operator, noise, shape)
        windowed = data.sizes[WINDOW] > 1
    if config.problem.name == "3dvar":
        data = _select_time(config, data)
    if config.data.window is not None:
        if config.data.window >= data.sizes[WINDOW]:
            raise ConfigError(
                f"[data].window = {config.data.window} but the data have "
                f"{data.sizes[WINDOW]} window(s)"
            )
        data = data.isel({WINDOW: [config.data.window]})
        windowed = False
    times = np.asarray(data[TIME].values, float)
    experiment = dataclasses.replace(
        experiment, data=data, times=times, windowed=windowed
    )
    with config_context("[problem] with the data"):
        experiment.problem({k: v[0] for k, v in experiment.arrays().items()})
    return experiment
