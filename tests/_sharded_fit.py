"""`fit` on one device, split over a mesh, or as one of several processes: run
in a subprocess by `test_sharded_fit.py` (the device count is fixed at start-up).

    python tests/_sharded_fit.py single OUT.npz
    python tests/_sharded_fit.py mesh OUT.npz          # XLA_FLAGS: 4 CPU devices
    python tests/_sharded_fit.py both OUT.npz          # mesh, and single (single_*)
    python tests/_sharded_fit.py single_full OUT.npz   # one batch of every window
    python tests/_sharded_fit.py process OUT.npz PORT NUM_PROCESSES PROCESS_ID
"""

import sys
from pathlib import Path

import jax


MODE, OUT = sys.argv[1], sys.argv[2]
if MODE == "process":
    from assimilax.learning import initialize_distributed

    port, count, index = sys.argv[3:6]
    initialize_distributed(f"127.0.0.1:{port}", int(count), int(index))
jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import xarray as xr  # noqa: E402

import assimilax as ax  # noqa: E402
from _fit_scripts import outer_loss, problem_fn, ridge_windows, SOLVER  # noqa: E402
from assimilax.learning import Checkpoints, data_mesh, fit, process_shard  # noqa: E402
from assimilax.learning._sharding import BATCH, REPLICATED, to_global  # noqa: E402
from assimilax.learning._step import StepConfig, train_step  # noqa: E402


NUM_WINDOWS, N = 20, 5


def windows() -> xr.Dataset:
    arrays = ridge_windows(num=NUM_WINDOWS, n=N, seed=3)
    return xr.Dataset({k: (("window", "x"), np.asarray(v)) for k, v in arrays.items()})


def run(data, mesh, steps=8, **options):
    return fit(
        problem_fn,
        outer_loss,
        {"log_weight": jnp.asarray(0.0)},
        data,
        optimiser=optax.adam(0.1),
        solver=SOLVER,
        hypergradient=ax.Implicit(warm_start=True),
        steps=steps,
        key=jax.random.key(1),
        mesh=mesh,
        **options,
    )


def per_device_program(mesh, batch_size: int) -> str:
    """The compiled (SPMD-partitioned) training step of a batch on `mesh`."""
    config = StepConfig(
        problem_fn, outer_loss, optax.adam(0.1), SOLVER, ax.Implicit(), mesh=mesh
    )
    params = {"log_weight": jnp.asarray(0.0)}
    trainable, static = eqx.partition(params, eqx.is_inexact_array)
    opt_state = optax.adam(0.1).init(trainable)
    batch = jax.tree.map(lambda a: a[:batch_size], ridge_windows(num=NUM_WINDOWS, n=N))
    trainable, opt_state = to_global((trainable, opt_state), mesh, REPLICATED)
    batch = to_global(batch, mesh, BATCH)
    lowered = train_step.lower(config, trainable, static, opt_state, batch, None)
    return lowered.compile().compiled.as_text()


def summary(result) -> dict:
    history = result.history
    return {
        "log_weight": np.asarray(result.params["log_weight"]),
        "loss": history["loss"].values,
        "validation_loss": history["validation_loss"].values,
        "inner_steps": history["inner_steps"].values,
        "devices": history.attrs["devices"],
    }


if MODE == "single_full":
    np.savez(OUT, **summary(run(windows(), None, batch_size=NUM_WINDOWS)))
elif MODE in ("single", "mesh", "both"):
    # Batches of 8 of the 15 training windows; the 5 validation windows are
    # padded to 8 on 4 devices.
    mesh = None if MODE == "single" else data_mesh()
    options = dict(batch_size=8, validation=0.25, validate_every=3)
    out = summary(run(windows(), mesh, **options))
    if MODE == "both":
        # One device in the same process (no mesh: fit keeps everything on the
        # default device), saving a second JAX start-up.
        single = summary(run(windows(), None, **options))
        out |= {f"single_{name}": value for name, value in single.items()}
    if MODE != "single":
        # Stopped after 4 steps, then resumed from its checkpoint to 8.
        folder = Path(OUT).parent / "checkpoints"
        run(windows(), mesh, steps=4, checkpoints=Checkpoints(folder), **options)
        resumed = run(
            windows(), mesh, checkpoints=Checkpoints(folder, resume=True), **options
        )
        out["resumed_log_weight"] = np.asarray(resumed.params["log_weight"])
        out["program"] = np.asarray(per_device_program(mesh, 8))
        out["device_count"] = np.asarray(jax.device_count())
    np.savez(OUT, **out)
else:
    # Every process reads its share of the windows; one batch of all of them.
    share = process_shard(windows())
    out = summary(run(share, data_mesh(), batch_size=NUM_WINDOWS))
    out["first_truth"] = np.asarray(share["truth"][0])
    np.savez(OUT, **out)
