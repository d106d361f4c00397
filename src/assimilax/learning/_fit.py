"""`fit`: learn parameters through the argmin of a batch of assimilation windows."""

import time
import warnings
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import optax
import xarray as xr
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jaxtyping import Array, PyTree

from .._progress import AbstractProgress, check_progress, NoProgress
from ..bilevel import AbstractHypergradient, AbstractInnerSolver, Implicit
from ._checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ._options import (
    AbstractBatching,
    AbstractCheckpointing,
    AbstractWarmStart,
    check_batching,
    check_checkpoints,
    check_warm_start,
    NoCheckpoints,
    StrategyDefault,
    Vectorised,
)
from ._sharding import (
    BATCH,
    check_mesh,
    DATA_AXIS,
    REPLICATED,
    to_global,
    to_local,
)
from ._step import (
    evaluate,
    indexed_train_step,
    initial_states,
    scalar_leaves,
    StepConfig,
    train_step,
)
from ._windows import batch_indices, split, stack_windows, take


class FitResult(eqx.Module):
    """What `fit` returns.

    - `params`: the learnt parameters (the last finite ones), the pytree given.
    - `history`: an `xarray.Dataset` over `step` (see `fit`).
    - `stopped`: `None` when all steps ran, else why the run stopped early.
    """

    params: PyTree
    history: xr.Dataset
    stopped: str | None = eqx.field(static=True, default=None)


def _strong(leaf: Any) -> Any:
    """An array-like leaf as an array of its own dtype, not weak-typed."""
    if eqx.is_array_like(leaf):
        return jnp.asarray(leaf, dtype=jnp.result_type(leaf))
    return leaf


def _check_arguments(steps, epochs, batch_size, num_train):
    if (steps is None) == (epochs is None):
        raise ValueError("fit: give exactly one of `steps` and `epochs`.")
    if steps is not None and (not isinstance(steps, int) or steps < 1):
        raise ValueError(f"fit(steps=...) must be an int >= 1, got {steps!r}.")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"fit(epochs=...) must be an int >= 1, got {epochs!r}.")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= num_train:
        raise ValueError(
            f"fit(batch_size=...) must be an int in [1, {num_train}] (the number of "
            f"training windows), got {batch_size!r}."
        )


def fit(
    problem_fn: Callable[[PyTree, PyTree], Any],
    outer_loss: Callable[[PyTree, PyTree, PyTree], Array],
    params: PyTree,
    data: Any,
    *,
    optimiser: optax.GradientTransformation,
    solver: AbstractInnerSolver,
    hypergradient: AbstractHypergradient = Implicit(warm_start=True),
    steps: int | None = None,
    epochs: int | None = None,
    batch_size: int = 1,
    trainable: PyTree | Callable[[Any], bool] = eqx.is_inexact_array,
    validation: float = 0.0,
    validate_every: int = 10,
    warm_start: AbstractWarmStart = StrategyDefault(),
    key: Array | None = None,
    checkpoints: AbstractCheckpointing = NoCheckpoints(),
    progress: AbstractProgress = NoProgress(),
    mesh: Mesh | None = None,
    batching: AbstractBatching = Vectorised(),
) -> FitResult:
    """Learn `params` through the inner argmin of every assimilation window.

    Minimises the mean over windows of ``outer_loss(x*(params, window), params,
    window)``, where ``x*`` is the minimiser of ``problem_fn(params,
    window).cost``, by `optimiser` steps on batches of windows. Hypergradients
    come from `hypergradient` (any strategy: `Implicit`, `Unrolled`,
    `Truncated`, `ForwardMode`, `GradientFlowAdjoint`...).

    **Arguments:**

    - `problem_fn`: ``(params, window) -> problem``, an `AbstractProblem`
      (``cost(control)``, ``first_guess()``, ``to_state(control)``): every
      `assimilax.costs` problem, or your own subclass.
    - `outer_loss`: ``(state, params, window) -> scalar``, with ``state`` the
      analysis (``problem.to_state`` of the minimiser): e.g. its error against a
      `truth` of the window (supervised), or its misfit to held-out
      observations (unsupervised).
    - `params`: the initial parameters, any pytree (Equinox modules included).
    - `data`: the windows: an `xarray.Dataset` with a `window` (or `sample`) dim
      (``window`` is then a dict of its variables, one window's slice each), a
      pytree of arrays with a leading window axis, or a list of per-window
      pytrees.
    - `optimiser`: an optax `GradientTransformation`.
    - `solver`: the inner solver (e.g. `LBFGS`); `hypergradient` the strategy.
    - `steps` or `epochs` (exactly one); `batch_size` windows per step (a
      `vmap`); an epoch is ``num_train // batch_size`` steps, in a fresh random
      order each epoch.
    - `trainable`: which leaves of `params` are learnt: a filter (default: every
      floating array) or a pytree of bools, as for `eqx.partition`.
    - `validation`: the fraction of windows held out (default none), evaluated
      every `validate_every` steps and at the end (cold inner solves).
    - `warm_start`: where each window's inner solve starts. `StrategyDefault()`
      (default) asks the strategy (`warm_start_default`): warm starts for
      `Implicit` and `FiniteDifference`, whose hypergradients hold at the
      minimiser wherever the solve starts; cold starts for the strategies that
      differentiate the iterations (`Unrolled`, `Truncated`, `ForwardMode`,
      `GradientFlowAdjoint`), whose result depends on the start when the solve
      is stopped early. `WarmStart()` starts each window from its last solution
      (and `Implicit`'s backward solve from its last adjoints): use it for
      `GradientFlowAdjoint` when the flow runs long enough to forget its start
      (``assimilax.demos.heat`` does). `ColdStart()` always starts from the
      first guess. The warm starts are seeded by one cold solve of every
      training window before step 0, recorded in the history's attrs.
    - `key`: a `jax.random.key` for the split and the batch order (default
      ``key(0)``).
    - `checkpoints`: `NoCheckpoints()` (default) or ``Checkpoints(directory,
      every=10, resume=False)``: write a checkpoint (parameters, optimiser
      state, warm starts, history) every so many steps and at the end; with
      ``resume=True`` continue from the newest checkpoint there (or start fresh
      when there is none), drawing the same batches as an uninterrupted run.
      A run killed at any moment, even while writing one, leaves the newest
      complete checkpoint readable.
    - `progress`: `NoProgress()` (default) or `TqdmProgress()`: a bar with the
      loss and the inner solves (plain periodic lines when not on a terminal).
    - `mesh`: a `jax.sharding.Mesh` with an axis named ``"data"``
      (`data_mesh()`: every device) to split each batch over its devices:
      parameters and optimiser state are replicated, each device solves its
      share of the windows, and XLA adds the devices' hypergradients (one `jit`
      program, partitioned by GSPMD). `batch_size` must be a multiple of the
      number of devices.
      Validation and the first warm starts are split likewise. In a
      multi-process run (`initialize_distributed`), `data` is *this process's*
      windows (`process_shard`), every process draws ``batch_size /
      process_count`` of its own windows per step, and checkpoints go to
      ``directory/process_I``. Default: one device.
    - `batching`: how the windows of a batch are solved: `Vectorised()`
      (default) side by side in one batched program, each iteration running
      until the batch's slowest window has converged (best on accelerators and
      for similar iteration counts); `Sequential()` one after another, each with
      its own iteration count (often several times faster on CPUs when the
      counts vary, and for convolutional priors: the plug-and-play demo's
      fine-tuning steps are 3x faster). Same hypergradients up to round-off;
      only `Vectorised()` with a `mesh`.
    **Returns:** a `FitResult` with the learnt `params` and the `history`, an
    `xarray.Dataset` over `step` with `loss` (batch mean, at the parameters
    before the step's update), `validation_loss` (NaN between evaluations),
    `grad_norm`, `inner_steps` (mean per window), `inner_failures` (windows whose
    inner or linear solve failed: not converged within `max_steps`, non-finite),
    `linear_steps` (mean backward solve iterations, `Implicit` only), `wall_s`,
    and one ``params.NAME`` per trainable scalar; its attrs record the run's
    settings (windows, batch size, `devices` and `processes`, strategy...) and,
    with warm starts, the seeding cold solves before step 0:
    `initial_inner_steps` (mean per training window), `initial_inner_failures`
    (count) and `initial_wall_s`.

    **Failures:** a non-finite loss or hypergradient stops the run: its update
    is not applied, the last parameters with a finite loss and hypergradient are
    returned (and
    checkpointed, with the history up to them), `stopped` says why, and a
    `RuntimeWarning` is issued; the returned history also holds the failed step. Failed
    inner solves are counted in `inner_failures` and shown in the progress bar.

    **Raises:** `ValueError` for bad arguments (both or neither of `steps` and
    `epochs`, a batch larger than the training set, a `validation` fraction
    outside ``[0, 1)``, a checkpoint from a different run, a mesh without a
    ``"data"`` axis or a batch it does not split evenly, `Sequential()` with a
    `mesh`); `TypeError` for an `optimiser` that is not an optax one, a `mesh`
    that is not a `Mesh`, mode arguments that are not their objects
    (`batching`, `warm_start`, `checkpoints`, `progress`), or a `problem_fn`
    that does not return an `AbstractProblem`.
    """
    if not isinstance(optimiser, optax.GradientTransformation):
        raise TypeError(
            "fit(optimiser=...) must be an optax GradientTransformation such as "
            f"optax.adam(1e-2), got {type(optimiser).__name__}."
        )
    check_batching(batching, mesh, owner="fit")
    check_warm_start(warm_start)
    check_checkpoints(checkpoints)
    check_progress("fit", progress)
    key = jax.random.key(0) if key is None else key
    split_key, batch_key = jax.random.split(key)
    windows, num = stack_windows(data)
    train_index, valid_index = split(num, validation, split_key)
    train_windows = take(windows, train_index)
    valid_windows = take(windows, valid_index) if valid_index.size else None
    num_train = train_index.size
    # This process's share of each batch (all of it on a single process).
    local_batch = batch_size if mesh is None else check_mesh(mesh, batch_size)
    _check_arguments(steps, epochs, local_batch, num_train)
    if epochs is not None:
        steps = epochs * (num_train // local_batch)
    warm = warm_start.enabled(hypergradient)
    config = StepConfig(
        problem_fn,
        outer_loss,
        optimiser,
        solver,
        hypergradient,
        mesh=mesh,
        batching=batching,
    )
    trainable_part, static = eqx.partition(params, trainable)
    # Weak-typed leaves (`jnp.log(2.0)`, a Python float) turn strong at the first
    # update, which would compile the training step a second time: make them
    # strong now, in the dtype they have (before `init`, for the optimiser state).
    trainable_part = jtu.tree_map(_strong, trainable_part)
    opt_state = optimiser.init(trainable_part)
    checkpoint_dir = checkpoints.folder()
    meta = {"num_windows": num, "batch_size": batch_size, "num_train": num_train}

    start, records, states, seeding = 0, [], None, {}
    folder = latest_checkpoint(checkpoint_dir) if checkpoints.resumes() else None
    if folder is not None:
        like_states = (
            jax.eval_shape(
                lambda t: initial_states(config, eqx.combine(t, static), train_windows),
                trainable_part,
            )[0]
            if warm
            else None
        )
        like = (trainable_part, opt_state, like_states)
        (trainable_part, opt_state, states), saved = load_checkpoint(folder, like)
        for name in meta:
            if saved[name] != meta[name]:
                raise ValueError(
                    "fit(checkpoints=Checkpoints(..., resume=True)): the "
                    f"checkpoint in {checkpoint_dir} has {name}={saved[name]}, "
                    f"this run {meta[name]}."
                )
        start, records = saved["step"], saved["records"]
        seeding = saved.get("seeding", {})
    if mesh is not None:
        trainable_part, opt_state, static = _replicate(
            (trainable_part, opt_state, static), mesh
        )

    def per_window(function, current, windows):
        # `initial_states` or `evaluate` of every window, split over the mesh.
        if mesh is None:
            return function(config, current, windows)
        return _on_mesh(function, config, current, windows, mesh)

    if warm and folder is None:
        # The seeding cold solves: recorded (in the history's attrs), since step
        # 0 then starts converged and shows few inner steps.
        tick = time.perf_counter()
        current = eqx.combine(trainable_part, static)
        states, seeded = per_window(initial_states, current, train_windows)
        seeding = {
            "initial_inner_steps": float(np.mean(seeded["inner_steps"])),
            "initial_inner_failures": int(np.sum(seeded["inner_failed"])),
            "initial_wall_s": time.perf_counter() - tick,
        }
    if mesh is not None and states is not None:
        states = jtu.tree_map(jnp.asarray, states)  # on this process's first device

    def save(step: int) -> None:
        if checkpoint_dir is not None:
            arrays = (trainable_part, opt_state, states)
            saved = {**meta, "step": step, "records": records, "seeding": seeding}
            save_checkpoint(checkpoint_dir, step, arrays, saved)

    def validate(current) -> float:
        losses = np.asarray(per_window(evaluate, current, valid_windows)[0])
        if jax.process_count() > 1:
            losses = multihost_utils.process_allgather(losses)
        return float(np.mean(losses))

    def one_step(step, trainable_part, opt_state, states):
        batch = batch_indices(step, num_train, local_batch, batch_key)
        if mesh is None:  # the batch is gathered inside the compiled step
            return indexed_train_step(
                config,
                trainable_part,
                static,
                opt_state,
                train_windows,
                states,
                jnp.asarray(batch),
            )
        batch_windows = take(train_windows, batch)
        batch_states = None if states is None else take(states, batch)
        batch_windows, batch_states = to_global(
            (batch_windows, batch_states), mesh, BATCH
        )
        scalars = scalar_leaves(trainable_part)
        trainable_part, opt_state, new_states, record = train_step(
            config, trainable_part, static, opt_state, batch_windows, batch_states
        )
        if states is not None:
            new_states = to_local(new_states, mesh, BATCH)
            states = jtu.tree_map(
                lambda all_, new: all_.at[batch].set(new), states, new_states
            )
        return trainable_part, opt_state, states, {**record, **scalars}

    bar = progress.open(total=steps, initial=start, desc="fit")
    stopped, last_finite = None, None
    for step in range(start, steps):
        tick = time.perf_counter()
        current = eqx.combine(trainable_part, static)
        before = (trainable_part, opt_state, states)
        trainable_part, opt_state, states, record = one_step(
            step, trainable_part, opt_state, states
        )
        # One transfer for the whole record (each `float` would wait on its own).
        record = {k: float(v) for k, v in jax.device_get(record).items()}
        due = valid_windows is not None and (
            (step + 1) % validate_every == 0 or step + 1 == steps
        )
        record["validation_loss"] = validate(current) if due else float("nan")
        record["wall_s"] = time.perf_counter() - tick
        finite = bool(record.pop("finite"))
        records.append(record)
        bar.update(
            1,
            loss=f"{record['loss']:.3g}",
            inner=f"{record['inner_steps']:.0f}",
            failed=int(record["inner_failures"]),
        )
        if not finite:
            stopped = (
                f"non-finite loss or hypergradient at step {step}; the parameters "
                f"returned are the last ones with a finite loss and hypergradient "
                f"(those of step {max(step - 1, 0)})."
            )
            warnings.warn(f"fit stopped: {stopped}", RuntimeWarning, stacklevel=2)
            if last_finite is not None:
                trainable_part, opt_state, states = last_finite
                good = records[: step - 1]
                records_all, records[:] = list(records), good
                save(step - 1)
                records[:] = records_all
            break
        last_finite = before
        if checkpoints.due(step, steps):
            save(step + 1)
    bar.close()
    history = _history(records)
    history.attrs.update(
        num_windows=num,
        num_train=num_train,
        num_validation=int(valid_index.size),
        batch_size=batch_size,
        devices=1 if mesh is None else int(mesh.shape[DATA_AXIS]),
        processes=jax.process_count(),
        batching=repr(batching),
        warm_start=int(warm),
        steps=steps,
        hypergradient=repr(hypergradient),
        solver=repr(solver),
        **seeding,
    )
    return FitResult(eqx.combine(trainable_part, static), history, stopped)


def _replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """The arrays of `tree` replicated on every device of `mesh` (global arrays)."""
    arrays, rest = eqx.partition(tree, eqx.is_array)
    return eqx.combine(to_global(arrays, mesh, REPLICATED), rest)


def _on_mesh(function, config: StepConfig, params, windows, mesh: Mesh):
    """``function(config, params, windows)`` (`initial_states`, `evaluate`) with
    the windows split over `mesh`: padded with copies of the last one to a
    multiple of this process's devices, the padding dropped from the result."""
    count = jtu.tree_leaves(windows)[0].shape[0]
    devices = mesh.shape[DATA_AXIS] // jax.process_count()
    index = np.minimum(np.arange(count + (-count) % devices), count - 1)
    out = function(config, params, to_global(take(windows, index), mesh, BATCH))
    return take(to_local(out, mesh, BATCH), np.arange(count))


def _history(records: list[dict[str, float]]) -> xr.Dataset:
    names = sorted({name for record in records for name in record})
    data = {
        name: ("step", np.asarray([r.get(name, np.nan) for r in records], float))
        for name in names
    }
    history = xr.Dataset(data, coords={"step": np.arange(len(records))})
    if "inner_failures" in history:
        history["inner_failures"] = history["inner_failures"].astype(int)
    return history
