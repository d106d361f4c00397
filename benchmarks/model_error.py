"""Neural model-error correction learnt through 4DVar on the two-scale Lorenz-96
(issue 17): forecast skill of four models on held-out test times.

Run ``python benchmarks/model_error.py`` (or ``--quick``: fewer windows and steps,
a few minutes on 2 cores). A Markdown table goes to stdout and everything to
``benchmarks/results/model_error.json`` (``results/quick/model_error.json`` with
``--quick``).

The experiment is `assimilax.demos.model_error.run`: a two-scale truth (K = 36,
J = 10) observed in half of its slow variables every 0.05 with unit noise, cut
into windows of 6 observation times split in time into train / validation /
test blocks; the one-scale Lorenz-96 uncorrected, corrected by a network learnt
in two steps (analyses, then offline), jointly through 4DVar (`fit`, `Implicit`,
outer loss on the next two windows' observations)
or supervised on the truth (upper bound). Reported per model: the valid time
(normalised RMSE reaching 0.5) and the normalised RMSE at a few leads, from the
true slow state, on the test block, and the training times (first step, which
compiles, apart from the rest); and the time-averaged ``rmse.a``/``rmse.f`` of
cycled 4DVar with each model on the test block. Targets (issue 17): joint valid
time >= 2x the uncorrected one and within 20 % of the truth-trained one; joint
cycled ``rmse.a`` within 10 % of the truth-trained one.
"""

import sys
from pathlib import Path

import jax


jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from assimilax.demos import model_error as me  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    finish_payload,
    markdown_table,
    script_main,
    start_payload,
)


HERE = Path(__file__).resolve().parent
FULL, QUICK = me.Config(), me.QUICK
LEADS = (0.5, 1.0, 2.0)
THRESHOLDS = {
    "joint_over_uncorrected": 2.0,
    "joint_within_truth": 0.2,
    "joint_cycled_rmse_a_within_truth": 0.1,
}


def _row(results, block, name):
    score = results["scores"][block, name]
    grid = results["leads"]
    values = [score["nrmse"][int(np.argmin(np.abs(grid - t)))] for t in LEADS]
    bound = "" if score["crossed"] else ">"
    return [name, f"{bound}{score['valid_time']:.2f}"] + [f"{v:.3f}" for v in values]


def run(cfg: me.Config, out: Path | None, *, verbose: bool = True) -> dict:
    quick = cfg == QUICK
    if out == HERE / "results" / "model_error.json" and quick:
        out = HERE / "results" / "quick" / "model_error.json"
    payload = start_payload(
        "model_error",
        "Model-error correction through 4DVar (two-scale Lorenz-96)",
        cfg,
        THRESHOLDS,
        verbose=verbose,
    )
    results = me.run(cfg, verbose=verbose)
    headers = ["model", "valid time"] + [f"nRMSE@{t:g}" for t in LEADS]
    for block in ("valid", "test"):
        rows = [_row(results, block, name) for name in me.MODELS]
        if verbose:
            print(f"\n### {block} block\n")
            print(markdown_table(headers, rows))
    timings = results["timings"]
    history = results["joint_history"]
    joint_steps = history["wall_s"].values
    timing_rows = [
        [
            "truth-trained",
            fmt(timings["truth-trained"]["first_step_s"]),
            fmt(timings["truth-trained"]["run_s"]),
            "-",
        ],
        [
            "two-step",
            fmt(timings["two-step"]["first_step_s"]),
            fmt(timings["two-step"]["run_s"]),
            f"analyses {timings['two-step']['assimilation_s']:.1f} s",
        ],
        [
            "joint",
            fmt(joint_steps[0] + history.attrs.get("initial_wall_s", 0.0)),
            fmt(float(np.sum(joint_steps[1:]))),
            f"{np.median(joint_steps[1:]):.2f} s/step, "
            f"total {timings['joint']['total_s']:.1f} s",
        ],
    ]
    if verbose:
        print("\n### training time (s)\n")
        print(
            markdown_table(
                ["model", "first step (compiles)", "rest", "note"], timing_rows
            )
        )
    test = {m: results["scores"]["test", m] for m in me.MODELS}
    ratio = test["joint"]["valid_time"] / test["uncorrected"]["valid_time"]
    gap = 1 - test["joint"]["valid_time"] / test["truth-trained"]["valid_time"]
    cycling = results["cycling"]
    cycled_gap = cycling["joint"]["rmse.a"] / cycling["truth-trained"]["rmse.a"] - 1
    if verbose:
        print("\n### cycled 4DVar on the test block\n")
        print(
            markdown_table(
                ["model", "rmse.a", "rmse.f"],
                [
                    [m, f"{cycling[m]['rmse.a']:.3f}", f"{cycling[m]['rmse.f']:.3f}"]
                    for m in me.MODELS
                ],
            )
        )
        print(
            f"\njoint / uncorrected valid time: {ratio:.2f} (target >= 2); joint "
            f"below truth-trained by {gap:.0%} (target <= 20 %); cycled rmse.a "
            f"joint vs truth-trained {cycled_gap:+.1%} (target <= +10 %)"
        )
    payload["leads"] = results["leads"].tolist()
    payload["clim_std"] = results["clim_std"]
    payload["scores"] = {
        f"{block}/{name}": {
            k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in score.items()
        }
        for (block, name), score in results["scores"].items()
    }
    payload["timings"] = timings
    payload["joint_history"] = {
        k: history[k].values.tolist()
        for k in ("loss", "grad_norm", "inner_steps", "inner_failures", "wall_s")
    }
    payload["joint_stopped"] = results["joint_stopped"]
    payload["cycling"] = cycling
    payload["joint_cycled_rmse_a_over_truth"] = cycled_gap
    payload["joint_over_uncorrected"] = ratio
    payload["joint_below_truth"] = gap
    return finish_payload(payload, out, verbose=verbose)


def fmt(seconds: float) -> str:
    return f"{seconds:.1f}"


def main(argv=None) -> None:
    script_main(
        argv,
        __doc__,
        run,
        FULL,
        QUICK,
        HERE / "results" / "model_error.json",
        quick_help="48 training windows, 150 joint steps (a few minutes)",
    )


if __name__ == "__main__":
    main()
