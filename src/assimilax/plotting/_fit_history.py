"""The history of `fit`: outer loss, parameters, solver iterations, failures."""

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from ._common import lines, new_figure, require, series_dim


STEP = "step"
PARAMS_PREFIX = "params."
# One line style per parameter when the colours already say which run it is.
_STYLES = ("-", "--", ":", "-.")


def _colour(i: int, j: int, series: str | None) -> str:
    """Colour of run `i` (with a `series` dim) or of quantity `j` (without)."""
    return f"C{i}" if series is not None else f"C{j}"


def _name(base: str, label: str | None) -> str:
    return base if label is None else f"{base} ({label})"


def fit_history(
    history: xr.Dataset,
    params: Sequence[str] | None = None,
    *,
    truth: Mapping[str, float] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    fig=None,
):
    """The training curves of `fit`: loss, parameters and solver work per step.

    **Arguments:**

    - `history`: `FitResult.history`, a Dataset over `step` with `loss`, and
      optionally `validation_loss`, ``params.NAME``, `inner_steps`,
      `linear_steps` and `inner_failures`. Histories of several runs stacked
      along one more dim (``xr.concat(histories, dim="strategy")``) are drawn
      one colour per run.
    - `params`: the variables of the parameter panel (default: every
      ``params.NAME``; any other variable over `step` works, e.g. an
      ``exp(params.log_kappa)`` added to the history). ``()``: no panel.
    - `truth`: true values by variable name, drawn as dotted lines.
    - `title`, `figsize`: an overall title; inches (default 3.6 by 3.0 per panel).
    - `fig`: a `Figure` or `SubFigure` to draw in (default: a new `Figure`).

    **Returns:** a `matplotlib.figure.Figure` with one row of panels: the outer
    loss (`loss` as lines, on a log axis when positive; `validation_loss` as
    dashed markers where evaluated; a red vertical line at a step with a non-finite
    loss), the parameters (when there are any), and the iterations per window
    (`inner_steps` solid, backward `linear_steps` dashed where any ran; red
    crosses at steps where `inner_failures` > 0).

    **Raises:** `KeyError` for a missing `loss` or `params` variable or a
    `truth` not among the parameters; `ValueError` for a variable with more than
    one dim besides `step`.
    """
    require("fit_history", history, ("loss",), "the outer loss of `fit`")
    if params is None:
        params = [str(v) for v in history.data_vars if str(v).startswith(PARAMS_PREFIX)]
    params = list(params)
    require("fit_history", history, params, "a parameter to draw")
    truth = dict(truth or {})
    unknown = [name for name in truth if name not in params]
    if unknown:
        raise KeyError(
            f"fit_history(truth=...): {unknown[0]!r} is not a drawn parameter "
            f"({params})."
        )
    has_steps = "inner_steps" in history.data_vars
    num = 1 + bool(params) + has_steps
    fig, axes = new_figure(num, (3.6, 3.0), figsize, fig, sharex=True)
    steps = np.asarray(history[STEP].values, float)
    _loss_panel(axes[0], history, steps)
    if params:
        _params_panel(axes[1], history, steps, params, truth)
    if has_steps:
        _iterations_panel(axes[-1], history, steps)
    for ax in axes:
        ax.set_xlabel("outer step")
        ax.legend(fontsize="small")
    if title is not None:
        fig.suptitle(title)
    return fig


def _loss_panel(ax, history: xr.Dataset, steps: np.ndarray) -> None:
    series = series_dim("fit_history", history["loss"], STEP)
    positive, bad_label = True, "non-finite loss"
    for i, (label, loss) in enumerate(lines(history["loss"], STEP, series)):
        text = "loss" if label is None else label  # with runs: the run's name
        ax.plot(steps, loss, color=_colour(i, 0, series), label=text)
        positive &= bool(np.all(loss[np.isfinite(loss)] > 0))
        for step in steps[~np.isfinite(loss)]:
            ax.axvline(step, color="red", linestyle=":", label=bad_label)
            bad_label = None  # one legend entry for all
    if "validation_loss" in history.data_vars:
        valid = lines(history["validation_loss"], STEP, series)
        for i, (label, loss) in enumerate(valid):
            keep = np.isfinite(loss)
            if not keep.any():  # no validation set, or never evaluated
                continue
            ax.plot(
                steps[keep],
                loss[keep],
                color=_colour(i, 1, series),
                linestyle="--",
                marker="o",
                markersize=4,
                label=_name("validation", label),
            )
            positive &= bool(np.all(loss[keep] > 0))
    if positive:
        ax.set_yscale("log")
    ax.set_title("outer loss", fontsize="medium")


def _params_panel(ax, history, steps, params: list[str], truth: dict) -> None:
    for j, name in enumerate(params):
        series = series_dim("fit_history", history[name], STEP)
        for i, (label, values) in enumerate(lines(history[name], STEP, series)):
            style = _STYLES[j % len(_STYLES)] if series is not None else "-"
            # One parameter: the legend names the runs only.
            base = name.removeprefix(PARAMS_PREFIX)
            text = label if (series is not None and len(params) == 1) else base
            if series is not None and len(params) > 1:
                text = _name(base, label)
            ax.plot(
                steps, values, color=_colour(i, j, series), linestyle=style, label=text
            )
        if name in truth:
            ax.axhline(
                truth[name],
                color="black",
                linestyle=":",
                label=f"true {name.removeprefix(PARAMS_PREFIX)}",
            )
    ax.set_title("parameters", fontsize="medium")


def _iterations_panel(ax, history: xr.Dataset, steps: np.ndarray) -> None:
    inner = history["inner_steps"]
    series = series_dim("fit_history", inner, STEP)
    failures = history.get("inner_failures")
    linear = history.get("linear_steps")
    failed_label = "failed solves"
    for i, (label, values) in enumerate(lines(inner, STEP, series)):
        ax.plot(steps, values, color=_colour(i, 0, series), label=_name("inner", label))
        if failures is not None:
            failed = lines(failures, STEP, series)[i][1] > 0
            if failed.any():
                ax.plot(
                    steps[failed],
                    values[failed],
                    linestyle="none",
                    marker="x",
                    color="red",
                    markersize=7,
                    label=failed_label,
                )
                failed_label = None  # one legend entry for all runs
    if linear is not None:
        for i, (label, values) in enumerate(lines(linear, STEP, series)):
            if np.any(np.nan_to_num(values) > 0):  # only where a linear solve ran
                ax.plot(
                    steps,
                    values,
                    color=_colour(i, 1, series),
                    linestyle="--",
                    label=_name("backward (linear)", label),
                )
    ax.set_title("iterations per window", fontsize="medium")
