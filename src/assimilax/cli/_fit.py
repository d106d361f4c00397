"""``assimilax fit CONFIG.toml``: learn parameters through the analyses.

The learnt parameters are options of the config (``model.kappa``,
``background.std``...). Positive ones are learnt as their logarithm by default
(``transform = "log"``), so that no optimiser step can make them negative.
The outer loss is the analysis error against the truth (``loss = "truth"``,
supervised) or the misfit of the analysis to observations held out of the
assimilation (``loss = "observations"``, unsupervised: a random `holdout`
fraction of the observed points, the same in every window).
"""

import dataclasses
import json
import math
import sys
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import xarray as xr
from jax.sharding import Mesh
from jaxtyping import Array, Float, Scalar

from .. import learning
from ..learning import fit
from ._config import Config, Learnable
from ._data import config_context
from ._registry import fit_modes
from ._report import number, table
from ._setup import Experiment
from ._table import ConfigError


def _truth_target(experiment: Experiment, arrays: dict[str, Array]) -> Array:
    """The truth in the shape of the analysis (`to_state` of the control)."""
    if "truth" not in arrays:
        raise ConfigError(
            "[fit].loss = 'truth' needs a truth in the data: a [data.twin] "
            f"experiment or a {experiment.config.data.truth!r} variable in "
            "[data].netcdf; without one use loss = 'observations'"
        )
    if experiment.t0 != float(experiment.times[0]):
        raise ConfigError(
            f"[fit].loss = 'truth' compares the analysis with the truth at the "
            f"window start, but [problem].t0 = {experiment.t0} is not a time of "
            f"the data (the first is {experiment.times[0]})"
        )
    truth = arrays["truth"]
    return truth if experiment.config.problem.name == "weak4dvar" else truth[:, 0]


def _holdout(experiment: Experiment, fraction: float, seed: int) -> np.ndarray:
    """The observation entries held out (a boolean of the observation shape)."""
    shape = experiment.operator.obs_shape(experiment.state_shape)
    eligible = experiment.operator.observed()
    eligible = np.ones(shape, bool) if eligible is None else np.asarray(eligible)
    count = int(eligible.sum())
    held = min(max(1, round(fraction * count)), count - 1)
    if held < 1:
        raise ConfigError(
            "[fit].loss = 'observations' holds out some observed points, but the "
            f"network has only {count}; use more observations or loss = 'truth'"
        )
    chosen = np.random.default_rng(seed).permutation(np.flatnonzero(eligible))[:held]
    mask = np.zeros(shape, bool)
    mask.flat[chosen] = True
    return mask


def _num_train(num: int, validation: float) -> int:
    # As `fit` splits: a validation fraction rounds to at least one window.
    count = int(round(validation * num))
    return num - (1 if validation > 0 and count == 0 else count)


@dataclasses.dataclass(frozen=True)
class FitSetup:
    """Everything `fit` needs, built and checked from the config."""

    config: Config
    experiment: Experiment
    windows: dict[str, Array]
    params: dict[str, Array]
    problem_fn: Callable
    outer_loss: Callable
    solver: Any
    hypergradient: Any
    optimiser: Any
    batch_size: int
    true_values: dict[str, float | None]

    @classmethod
    def build(cls, config: Config, experiment: Experiment) -> "FitSetup":
        """Build and check (eagerly, no solve). **Raises:** `ConfigError`."""
        spec = config.fit
        arrays = experiment.arrays()
        learn = {item.name: item for item in spec.learn}

        def values(params):
            return {
                name: jnp.exp(p) if learn[name].transform == "log" else p
                for name, p in params.items()
            }

        def problem_fn(params, window):
            return experiment.problem(window, values(params))

        if spec.loss == "truth":
            arrays["target"] = _truth_target(experiment, arrays)

            def outer_loss(state, params, window) -> Scalar:
                return jnp.mean(jnp.square(state - window["target"]))

        else:
            held = jnp.asarray(_holdout(experiment, spec.holdout, spec.seed))
            held = jnp.broadcast_to(held, arrays["obs"].shape)
            arrays["heldout"] = jnp.where(held, arrays["obs"], jnp.nan)
            arrays["obs"] = jnp.where(held, jnp.nan, arrays["obs"])

            def outer_loss(state, params, window) -> Scalar:
                predicted = experiment.predict(problem_fn(params, window), state)
                y = window["heldout"]
                seen = ~jnp.isnan(y)
                residual = jnp.where(seen, predicted - jnp.where(seen, y, 0.0), 0.0)
                count = jnp.maximum(jnp.sum(seen), 1).astype(residual.dtype)
                return jnp.sum(jnp.square(residual)) / count

        num_train = _num_train(experiment.num_windows, spec.validation)
        if num_train < 1:
            raise ConfigError(
                f"[fit].validation = {spec.validation} leaves no training window "
                f"of {experiment.num_windows}"
            )
        # In a multi-process run the experiment holds this process's windows and
        # the batch is global: every process contributes its share.
        processes = jax.process_count()
        batch_size = spec.batch_size or num_train * processes
        if batch_size > num_train * processes:
            raise ConfigError(
                f"[fit].batch_size = {batch_size} is more than the "
                f"{num_train * processes} training window(s) "
                f"({experiment.num_windows * processes} in the data, "
                f"validation = {spec.validation})"
            )
        solver = config.solver.build()
        with config_context("[fit].hypergradient"):
            hypergradient = spec.hypergradient.build()
        try:
            hypergradient.check_compatible(solver)
            hypergradient.check_differentiable(solver)
        except ValueError as error:
            raise ConfigError(
                f"[fit].hypergradient = {spec.hypergradient.name!r} cannot be used "
                f"with [solver].name = {config.solver.name!r}: {error}"
            ) from None
        params = {
            item.name: jnp.asarray(
                np.float64(
                    math.log(item.initial) if item.transform == "log" else item.initial
                )
            )
            for item in spec.learn
        }
        window = {k: v[0] for k, v in arrays.items()}
        with config_context("[fit] with the data"):
            problem = problem_fn(params, window)
            state = problem.to_state(problem.first_guess())
            jax.eval_shape(outer_loss, state, params, window)
        return cls(
            config,
            experiment,
            arrays,
            params,
            problem_fn,
            outer_loss,
            solver,
            hypergradient,
            spec.optimiser.build(),
            batch_size,
            {item.name: _true_value(config, item) for item in spec.learn},
        )

    def describe(self) -> str:
        """What will be learnt and how (one paragraph)."""
        spec = self.config.fit
        learnt = ", ".join(
            f"{item.name} from {number(item.initial)}"
            + (" (log)" if item.transform == "log" else "")
            for item in spec.learn
        )
        schedule = (
            f"{spec.steps} steps" if spec.steps is not None else f"{spec.epochs} epochs"
        )
        return "\n".join(
            [
                f"{'fit':<13}{learnt}",
                f"{'':<13}loss {spec.loss}, hypergradient "
                f"{spec.hypergradient.name}, optimiser {spec.optimiser.name}, "
                f"{schedule}, batches of {self.batch_size}",
            ]
        )


def _true_value(config: Config, item: Learnable) -> float | None:
    """The value a twin experiment was generated with (None if unknown)."""
    twin = config.data.twin
    if twin is None or item.section in ("prior", "problem"):
        return None
    if item.section == "model":
        return float(twin.truth_model.options[item.key])
    return float(config.section(item.section).options[item.key])


def _natural(setup: FitSetup, name: str, raw: Float[Array, ""]) -> float:
    learn = {item.name: item for item in setup.config.fit.learn}
    value = float(raw)
    return math.exp(value) if learn[name].transform == "log" else value


def run_fit(setup: FitSetup, mesh: Mesh | None = None) -> int:
    """Run `fit` (its batches split over `mesh` when given), print the summary,
    write the history and the parameters (process 0 of a multi-process run)."""
    config, spec = setup.config, setup.config.fit
    folder = config.output.folder
    checkpoints = learning.NoCheckpoints()
    if spec.checkpoint_every is not None or spec.resume:
        checkpoints = learning.Checkpoints(
            folder / spec.checkpoint_dir,
            every=spec.checkpoint_every or 10,
            resume=spec.resume,
        )
    with warnings.catch_warnings():
        # `stopped` carries the message, printed below.
        warnings.filterwarnings("ignore", "fit stopped", RuntimeWarning)
        result = fit(
            setup.problem_fn,
            setup.outer_loss,
            setup.params,
            setup.windows,
            optimiser=setup.optimiser,
            solver=setup.solver,
            hypergradient=setup.hypergradient,
            steps=spec.steps,
            epochs=spec.epochs,
            batch_size=setup.batch_size,
            validation=spec.validation,
            validate_every=spec.validate_every,
            key=jr.key(spec.seed),
            checkpoints=checkpoints,
            mesh=mesh,
            **fit_modes(spec.batching, spec.warm_start, spec.progress),
        )
    rows, record = [], {}
    for item in spec.learn:
        learnt = _natural(setup, item.name, result.params[item.name])
        true = setup.true_values[item.name]
        error = None if true is None or true == 0 else abs(learnt - true) / abs(true)
        rows.append([item.name, item.initial, learnt, true, error])
        record[item.name] = {
            "initial": item.initial,
            "learnt": learnt,
            "true": true,
            "transform": item.transform,
        }
    print(table(("parameter", "initial", "learnt", "true", "rel. error"), rows))
    history = _history(setup, result.history)
    losses = history["loss"].values
    failures = int(history["inner_failures"].sum())
    valid = history["validation_loss"].values
    last_valid = valid[np.isfinite(valid)][-1] if np.isfinite(valid).any() else None
    print(
        f"outer loss ({spec.loss}) {number(float(losses[0]))} at the first step, "
        f"{number(float(losses[-1]))} at the last ({losses.size} steps)"
        + ("" if last_valid is None else f"; validation {number(float(last_valid))}")
    )
    stem = folder / config.output.name
    if jax.process_index() != 0:  # every process holds the same results
        return 1 if result.stopped is not None else 0
    folder.mkdir(parents=True, exist_ok=True)
    history.to_netcdf(f"{stem}_history.nc")
    summary = {
        "config_file": str(config.path.resolve()),
        "params": record,
        "loss": {"first": float(losses[0]), "last": float(losses[-1])},
        "validation_loss": None if last_valid is None else float(last_valid),
        "inner_failures": failures,
        "stopped": result.stopped,
    }
    with open(f"{stem}_params.json", "w") as file:
        json.dump(summary, file, indent=2)
    print(f"history written to {stem}_history.nc, parameters to {stem}_params.json")
    if failures:
        print(
            f"assimilax: warning: {failures} inner solve(s) failed over the run "
            "(not converged within [solver].max_steps, or non-finite); see "
            "`inner_failures` in the history",
            file=sys.stderr,
        )
    if result.stopped is not None:
        print(f"assimilax: fit stopped early: {result.stopped}", file=sys.stderr)
        return 1
    return 0


def _history(setup: FitSetup, history: xr.Dataset) -> xr.Dataset:
    """`fit`'s history with each parameter in natural units and provenance attrs."""
    history = history.copy()
    for item in setup.config.fit.learn:
        raw = history[f"params.{item.name.replace('.', '_')}"]
        values = np.exp(raw) if item.transform == "log" else raw
        history[item.name] = values.assign_attrs(
            long_name=f"{item.name} (learnt)", transform=item.transform
        )
        true = setup.true_values[item.name]
        if true is not None:
            history.attrs[f"true {item.name}"] = true
    history.attrs.update(
        config=setup.config.text, config_file=str(setup.config.path.resolve())
    )
    return history
