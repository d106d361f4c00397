"""PNG plots of the benchmarks' results JSON, for the documentation.

One function per benchmark, ``plot(payload, path)``: `payload` is what the
benchmark wrote to its JSON, `path` the PNG to write. matplotlib is imported on
first use, so that the runner starts without it.
"""

from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from matplotlib.ticker import NullFormatter

    for ax in fig.axes:  # labelled minor ticks on log axes overlap: major only
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:  # constrained layout lays out by itself
        fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    _pyplot().close(fig)


def _bars(ax, labels, values, colours, xlabel: str) -> None:
    """Horizontal bars on a log axis, the first label at the top."""
    positions = range(len(labels))
    ax.barh(positions, values, color=colours)
    ax.set_yticks(list(positions), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)


def hypergradients(payload: dict[str, Any], path: Path) -> None:
    """Error and time per method, one row of panels per problem; below them,
    the error against inner steps, truncation k and CG tolerance (drawn by
    `assimilax.plotting.hypergradient_error`), when the run swept them."""
    plt = _pyplot()
    problems = payload["problems"]
    sweeps = payload.get("error_sweeps")
    height = 4.5 * len(problems)
    fig = plt.figure(
        figsize=(11, height + (3.2 if sweeps else 0.0)), layout="constrained"
    )
    if sweeps:
        from _error_sweeps import from_payload
        from assimilax.plotting import hypergradient_error

        top, bottom = fig.subfigures(2, 1, height_ratios=(height, 3.2))
        hypergradient_error(
            from_payload(sweeps),
            fig=bottom,
            title=f"{sweeps['attrs']['problem']}: error against what each "
            "strategy is given",
        )
    else:
        top = fig
    axes = top.subplots(len(problems), 2, squeeze=False)
    for (ax_err, ax_time), result in zip(axes, problems):
        rows = result["rows"]
        labels = [r["name"] for r in rows]
        colours = ["C0" if r["library"] == "assimilax" else "C1" for r in rows]
        # A zero error would vanish from a log axis: floor it at 1e-16.
        errors = [max(r["rel_error"], 1e-16) for r in rows]
        _bars(ax_err, labels, errors, colours, "relative error of dL/dλ")
        _bars(ax_time, labels, [1e3 * r["time_s"] for r in rows], colours, "ms")
        ax_err.set_title(f"{result['problem']} (blue: assimilax, orange: optimistix)")
        ax_time.set_title("value and hypergradient, median time")
        ax_time.set_yticklabels([])
    _save(fig, path)


def hypergradient_memory(payload: dict[str, Any], path: Path) -> None:
    """Temporary memory and time against the number of inner steps."""
    plt = _pyplot()
    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 3.5))
    rows = payload["rows"]
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == strategy]
        steps = [r["steps"] for r in mine]
        ax_mem.loglog(steps, [r["temp_bytes"] / 2**20 for r in mine], "o-")
        ax_time.loglog(steps, [1e3 * r["time_s"] for r in mine], "o-", label=strategy)
    ax_mem.set(xlabel="inner steps T", ylabel="XLA temp MiB", title="Memory vs T")
    ax_time.set(xlabel="inner steps T", ylabel="ms", title="Time vs T")
    ax_time.legend(fontsize=8)
    _save(fig, path)


def fourdvar_cost(payload: dict[str, Any], path: Path) -> None:
    """Time of each program over one forward integration, per model."""
    plt = _pyplot()
    cases = payload["cases"]
    programs = [p for p in cases[0]["timings"] if p != "forward"]
    programs += [
        p for c in cases for p in c["timings"] if p not in programs + ["forward"]
    ]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(programs)
    for k, program in enumerate(programs):
        xs = [i + k * width for i, c in enumerate(cases) if program in c["timings"]]
        ratios = [
            c["timings"][program]["ratio_to_forward"]
            for c in cases
            if program in c["timings"]
        ]
        ax.bar(xs, ratios, width, label=program)
    ax.axhline(payload["target_ratio"], color="k", ls="--", lw=1, label="target")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))])
    ax.set_xticklabels([c["case"] for c in cases], fontsize=8)
    ax.set_ylabel("time / forward")
    ax.set_title("4DVar cost: time relative to one forward integration")
    ax.legend(fontsize=8)
    _save(fig, path)


def heat2d_scaling(payload: dict[str, Any], path: Path) -> None:
    """Solve and ``value_and_grad`` time, and LBFGS steps, against grid points."""
    plt = _pyplot()
    fig, (ax_time, ax_steps) = plt.subplots(1, 2, figsize=(10, 4))
    sizes = payload["sizes"]
    for k, network in enumerate(dict.fromkeys(r["network"] for r in sizes)):
        rows = [r for r in sizes if r["network"] == network]
        points = [r["grid_points"] for r in rows]
        style = {"color": f"C{k}", "marker": "o"}
        ax_time.loglog(points, [r["solve_median_s"] for r in rows], **style, ls="-")
        ax_time.loglog(
            points, [r["value_and_grad_median_s"] for r in rows], **style, ls=":"
        )
        ax_steps.semilogx(
            points, [r["num_steps"] for r in rows], **style, label=network
        )
    # A slope-1 guide through the first solve: linear in the number of points.
    first = sizes[0]
    guide = [first["grid_points"], max(r["grid_points"] for r in sizes)]
    scale = first["solve_median_s"] / first["grid_points"]
    ax_time.loglog(guide, [scale * g for g in guide], "k--", lw=1)
    ax_time.set(
        xlabel="grid points",
        ylabel="s",
        title="solve (solid), value_and_grad (dotted); dashed: linear",
    )
    ax_steps.set(xlabel="grid points", ylabel="LBFGS steps", title="Inner steps")
    ax_steps.set_ylim(bottom=0)
    ax_steps.legend(title="network", fontsize=8)
    _save(fig, path)


def lorenz96(payload: dict[str, Any], path: Path) -> None:
    """Time-averaged analysis RMSE per method: DAPPER's numbers and ours."""
    plt = _pyplot()
    rows = payload["rows"]
    series = {
        "DAPPER documented": [r["dapper_documented"] for r in rows],
        "DAPPER run": [(r.get("dapper_run") or {}).get("rmse.a") for r in rows],
        "ours, clim B": [(r.get("clim") or {}).get("rmse.a") for r in rows],
        "ours, estimated B": [(r.get("estimated") or {}).get("rmse.a") for r in rows],
        "ours, cycled B": [(r.get("cycled") or {}).get("rmse.a") for r in rows],
    }
    series = {k: v for k, v in series.items() if any(x is not None for x in v)}
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        points = [(i + k * width, v) for i, v in enumerate(values) if v is not None]
        ax.bar(*zip(*points), width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels([r["method"] for r in rows], rotation=20, fontsize=8)
    ax.set_ylabel("rmse.a")
    ax.set_title("Lorenz-96 (Sakov & Oke 2008): analysis RMSE")
    ax.legend(fontsize=8)
    _save(fig, path)


def preconditioners(payload: dict[str, Any], path: Path) -> None:
    """Backward CG iterations and time relative to no preconditioner, per problem."""
    plt = _pyplot()
    cases = payload["cases"]
    labels = list(dict.fromkeys(r["preconditioner"] for c in cases for r in c["rows"]))
    fig, (ax_steps, ax_time) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(labels)
    for k, label in enumerate(labels):
        xs, steps, ratios = [], [], []
        for i, case in enumerate(cases):
            rows = {r["preconditioner"]: r for r in case["rows"]}
            if label in rows:
                xs.append(i + k * width)
                steps.append(rows[label]["num_steps"])
                ratios.append(rows[label]["time_s"] / rows["none"]["time_s"])
        ax_steps.bar(xs, steps, width, label=label)
        ax_time.bar(xs, ratios, width, label=label)
    for ax in (ax_steps, ax_time):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(cases))])
        ax.set_xticklabels([c["problem"] for c in cases], fontsize=8)
    ax_steps.set(ylabel="backward CG iterations", title="Iterations")
    ax_time.axhline(1.0, color="k", ls="--", lw=1)
    ax_time.set(ylabel="time / no preconditioner", title="Backward time (median)")
    ax_steps.legend(fontsize=7)
    _save(fig, path)
