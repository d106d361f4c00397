"""Throughput of `fit` with its batch split over 1, 2 and 4 devices.

Run ``python benchmarks/sharding.py`` (or ``--quick``: fewer steps). Each device
count runs in its own process, since the number of CPU devices is fixed when JAX
starts (``XLA_FLAGS=--xla_force_host_platform_device_count=N``; on a GPU machine
the real devices are used instead, up to as many as there are). The workload is
the heat demo's outer loop (`assimilax.demos.heat`: 1D heat, n = 128, strong-
constraint 4DVar by Gauss-Newton, `Implicit` hypergradients, warm starts) on a
batch of 16 windows per step. Throughput is windows per second over the steps
after the first (the first compiles), the median of the per-step times.

On a CPU the forced devices share the same cores, so the numbers only show that
the sharded program runs (and what its overhead is): they are not a scaling
result. Prints a Markdown table and writes ``benchmarks/results/sharding.json``.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


RESULTS_PATH = Path(__file__).parent / "results" / "sharding.json"
BATCH = 16


def worker(devices: int, steps: int) -> dict[str, Any]:
    """One run of `fit` split over `devices` devices (in this process)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import optax

    import assimilax as ax
    from assimilax.demos import heat
    from assimilax.learning import data_mesh, fit

    if jax.device_count() < devices:
        raise SystemExit(f"{devices} devices asked for, {jax.device_count()} here")
    windows, noise = heat.make_windows(BATCH)
    mesh = data_mesh(jax.devices()[:devices])
    result = fit(
        heat.make_problem_fn(noise),
        heat.analysis_error,
        {"log_kappa": jax.numpy.asarray(np.log(2 * heat.KAPPA))},
        windows,
        optimiser=optax.adam(0.05, b1=0.5),
        solver=heat.GAUSS_NEWTON,
        hypergradient=ax.Implicit(),
        steps=steps,
        batch_size=BATCH,
        mesh=mesh,
    )
    wall = result.history["wall_s"].values
    per_step = float(np.median(wall[1:]))
    return {
        "devices": devices,
        "platform": jax.devices()[0].platform,
        "steps": steps,
        "first_step_s": float(wall[0]),
        "median_step_s": per_step,
        "windows_per_s": BATCH / per_step,
        "kappa": float(np.exp(result.params["log_kappa"])),
    }


def run_worker(devices: int, steps: int) -> dict[str, Any]:
    """`worker` in a fresh process with `devices` forced CPU devices."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}"
    command = [
        sys.executable,
        __file__,
        "--worker",
        str(devices),
        "--steps",
        str(steps),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{devices} devices: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(payload: dict[str, Any]) -> str:
    """The Markdown table of a results payload."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import markdown_table

    base = payload["runs"][0]["windows_per_s"]
    rows = [
        [
            run["devices"],
            run["platform"],
            f"{run['median_step_s'] * 1e3:.0f}",
            f"{run['windows_per_s']:.1f}",
            f"{run['windows_per_s'] / base:.2f}",
            f"{run['first_step_s']:.1f}",
            f"{run['kappa']:.10f}",
        ]
        for run in payload["runs"]
    ]
    headers = [
        "devices",
        "platform",
        "ms / step",
        "windows / s",
        "vs 1 device",
        "first step s",
        "kappa learnt",
    ]
    kappas = [run["kappa"] for run in payload["runs"]]
    spread = (max(kappas) - min(kappas)) / abs(kappas[0])
    return markdown_table(headers, rows) + (
        f"\n\nbatch of {BATCH} windows per step; {payload['runs'][0]['steps']} "
        f"steps; the learnt kappa differs by {spread:.1e} (relative) across device "
        "counts: round-off of the per-device programs, passed on by inner solves "
        "stopped at 1e-10."
    )


def main(argv=None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    parser.add_argument("--devices", default="1,2,4", help="device counts")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    steps = args.steps or (6 if args.quick else 21)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, steps)))
        return {}
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import machine_info, write_json

    runs = []
    for devices in (int(d) for d in args.devices.split(",")):
        print(f"{devices} device(s)...", file=sys.stderr, flush=True)
        runs.append(run_worker(devices, steps))
    payload = {"machine": machine_info(), "batch": BATCH, "runs": runs}
    print(report(payload))
    write_json(args.output, payload)
    return payload


if __name__ == "__main__":
    main()
