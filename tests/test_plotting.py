"""The diagnostic plots drawn from real outputs: a small `fit`, a small `cycle`
and a small sweep of hypergradient errors; each figure's artists hold the data."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import pytest
import xarray as xr


pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

import assimilax as ax  # noqa: E402
from assimilax.assimilation import CycledB, FourDVarCycling  # noqa: E402
from assimilax.dynamics import Lorenz96  # noqa: E402
from assimilax.io import twin_experiment  # noqa: E402
from assimilax.learning import fit  # noqa: E402
from assimilax.observations import Identity, ScalarNoise  # noqa: E402
from assimilax.plotting import (  # noqa: E402
    cycling_rmse,
    fit_history,
    hypergradient_error,
)
from assimilax.priors import DiagonalBackground  # noqa: E402


sys.path.insert(0, str(Path(__file__).parent))
from _fit_scripts import outer_loss, problem_fn, ridge_windows  # noqa: E402


def _line(ax_, label):
    (line,) = [x for x in ax_.get_lines() if x.get_label() == label]
    return line


def _labels(ax_):
    return [x.get_label() for x in ax_.get_lines()]


# ----------------------------------------------------------------------- fit ---


@pytest.fixture(scope="module")
def histories():
    def run(solver):
        return fit(
            problem_fn,
            outer_loss,
            {"log_weight": jnp.asarray(0.0)},
            ridge_windows(),
            optimiser=optax.adam(0.1),
            solver=solver,
            steps=6,
            batch_size=4,
            validation=0.25,
            validate_every=3,
        ).history

    # Three small gradient steps do not converge: failed inner solves.
    return run(ax.LBFGS(rtol=1e-10)), run(
        ax.GradientDescent(learning_rate=0.1, max_steps=3)
    )


def test_fit_history_draws_loss_parameters_iterations(histories):
    history, failing = histories
    fig = fit_history(history, truth={"params.log_weight": 0.5}, title="ridge")
    assert isinstance(fig, Figure)
    loss_ax, params_ax, steps_ax = fig.axes[:3]
    step = history["step"].values
    np.testing.assert_array_equal(_line(loss_ax, "loss").get_xdata(), step)
    np.testing.assert_array_equal(
        _line(loss_ax, "loss").get_ydata(), history["loss"].values
    )
    # Validation: markers at the evaluated steps only (3 and 6 of 6).
    validation = _line(loss_ax, "validation")
    np.testing.assert_array_equal(validation.get_xdata(), [2, 5])
    np.testing.assert_array_equal(
        validation.get_ydata(), history["validation_loss"].values[[2, 5]]
    )
    assert loss_ax.get_yscale() == "log"
    np.testing.assert_array_equal(
        _line(params_ax, "log_weight").get_ydata(), history["params.log_weight"]
    )
    np.testing.assert_array_equal(
        _line(params_ax, "true log_weight").get_ydata(), [0.5, 0.5]
    )
    np.testing.assert_array_equal(
        _line(steps_ax, "inner").get_ydata(), history["inner_steps"].values
    )
    # The default `Implicit` ran backward CG solves: drawn dashed.
    backward = _line(steps_ax, "backward (linear)")
    np.testing.assert_array_equal(backward.get_ydata(), history["linear_steps"])
    assert backward.get_linestyle() == "--"
    assert "failed solves" not in _labels(steps_ax)
    assert fig._suptitle.get_text() == "ridge"

    # Failures: a red cross at each step with a failed inner solve.
    failed_steps = step[failing["inner_failures"].values > 0]
    assert failed_steps.size > 0
    crosses = _line(fit_history(failing).axes[2], "failed solves")
    assert crosses.get_marker() == "x" and crosses.get_linestyle() == "None"
    np.testing.assert_array_equal(crosses.get_xdata(), failed_steps)
    np.testing.assert_array_equal(
        crosses.get_ydata(), failing["inner_steps"].values[failed_steps]
    )


def test_fit_history_of_several_runs_and_errors(histories):
    stacked = xr.concat(
        list(histories), dim=xr.DataArray(["tight", "two steps"], dims="solver")
    )
    stacked["weight"] = np.exp(stacked["params.log_weight"])
    fig = fit_history(stacked, ("weight",))
    loss_ax, params_ax, _ = fig.axes
    assert _labels(params_ax) == ["tight", "two steps"]  # one parameter: the runs
    np.testing.assert_allclose(
        _line(params_ax, "two steps").get_ydata(),
        np.exp(histories[1]["params.log_weight"].values),
    )
    first, second = _line(loss_ax, "tight"), _line(loss_ax, "two steps")
    np.testing.assert_array_equal(second.get_ydata(), histories[1]["loss"].values)
    assert first.get_color() != second.get_color()
    assert _line(loss_ax, "validation (two steps)").get_marker() == "o"
    # Without parameters or solver statistics: the loss panel only; a validation
    # loss never evaluated (all NaN) is not drawn.
    loss_only = histories[0][["loss"]]
    alone = fit_history(loss_only.assign(validation_loss=loss_only["loss"] * np.nan))
    assert len(alone.axes) == 1 and _labels(alone.axes[0]) == ["loss"]
    # A non-finite loss is marked by a vertical line at its step.
    broken = histories[0].copy()
    broken["loss"] = broken["loss"].where(broken["step"] != 4, np.inf)
    marks = _line(fit_history(broken).axes[0], "non-finite loss")
    np.testing.assert_array_equal(marks.get_xdata(), [4, 4])
    with pytest.raises(KeyError, match="no variable 'loss'"):
        fit_history(histories[0].drop_vars("loss"))
    with pytest.raises(KeyError, match="'kappa' is not a drawn parameter"):
        fit_history(histories[0], truth={"kappa": 1.0})
    with pytest.raises(TypeError, match="Figure or SubFigure"):
        fit_history(histories[0], fig="figure")


# ------------------------------------------------------------------- cycling ---


@pytest.fixture(scope="module")
def cycled():
    n, dt = 8, 0.05
    model = Lorenz96(n=n)
    keys = jax.random.split(jax.random.key(0), 3)
    start = 8.0 + 0.01 * jax.random.normal(keys[0], (n,))
    truth0 = model.integrate(start, np.arange(101.0) * dt)[-1]
    times = np.arange(4 * 24 + 1.0) * dt
    ds = twin_experiment(
        model, truth0, times, Identity(), ScalarNoise(1.0), keys[1], observe_every=4
    )
    method = FourDVarCycling(
        DiagonalBackground(jnp.zeros(n), 0.6),
        window=2,
        shift=1,
        covariance=CycledB(additive=1e-3),
    )
    first_guess = truth0 + jax.random.normal(keys[2], (n,))
    return cycle_out(model, ds, first_guess, method)


def cycle_out(model, ds, first_guess, method):
    return ax.cycle(
        model,
        ds,
        first_guess,
        method=method,
        solver=ax.LBFGS(rtol=1e-8),
        noise=ScalarNoise(1.0),
        burn_in=1.0,
    )


def test_cycling_rmse_draws_errors_spread_and_spread_skill(cycled):
    fig = cycling_rmse(cycled, title="L96")
    assert len(fig.axes) == 2
    errors_ax, skill_ax = fig.axes
    mean_a = cycled.attrs["rmse.a"]
    rmse_a = _line(errors_ax, f"rmse.a (mean {mean_a:.3g})")
    np.testing.assert_array_equal(rmse_a.get_xdata(), cycled["time"].values)
    np.testing.assert_array_equal(rmse_a.get_ydata(), cycled["rmse.a"].values)
    rmse_f = _line(errors_ax, f"rmse.f (mean {cycled.attrs['rmse.f']:.3g})")
    np.testing.assert_array_equal(rmse_f.get_ydata(), cycled["rmse.f"].values)
    spread = _line(errors_ax, "background spread")
    np.testing.assert_array_equal(spread.get_xdata(), cycled["window_start"].values)
    np.testing.assert_array_equal(
        spread.get_ydata(), cycled["background_spread"].values
    )
    end = cycled.attrs["t0"] + 1.0  # burn_in=1.0 after the first guess's time
    np.testing.assert_array_equal(
        _line(errors_ax, "end of burn-in").get_xdata(), [end, end]
    )
    # Spread-skill: (background RMSE, spread) per window with a truth at its
    # start: windows 2... start at the analysed times but the last two (the
    # first two start before the first analysed time, the end of window 0).
    before, after = skill_ax.collections
    points = np.concatenate([before.get_offsets(), after.get_offsets()])
    starts = cycled["window_start"].values[2:]
    np.testing.assert_allclose(starts, cycled["time"].values[:-2], rtol=1e-12)
    truth = cycled["truth"].values[:-2]
    background = cycled["background"].values[2:]
    expected = np.sqrt(((background - truth) ** 2).mean(axis=1))
    np.testing.assert_allclose(points[:, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(
        points[:, 1], cycled["background_spread"].values[2:], rtol=1e-12
    )
    # Grey before the end of the burn-in, in colour after.
    assert len(after.get_offsets()) == np.sum(starts > end) > 0
    assert skill_ax.get_xlabel() == "background RMSE"


def test_cycling_rmse_without_spread_and_errors(cycled):
    fig = cycling_rmse(cycled.drop_vars("background_spread"))
    assert len(fig.axes) == 1
    assert "background spread" not in _labels(fig.axes[0])
    with pytest.raises(KeyError, match="cycle with a truth"):
        cycling_rmse(cycled.drop_vars("rmse.f"))


# ----------------------------------------------------- hypergradient errors ---

# U(x, θ) = ½ xᵀHx − θ bᵀx, x* = θ H⁻¹b, L = ½|x* − t|²: dL/dθ = (H⁻¹b)ᵀ(x* − t).
H = jnp.linspace(0.05, 1.0, 12)
B = jnp.cos(jnp.arange(12.0))
TARGET = jnp.sin(jnp.arange(12.0))
THETA = 1.5


def _cost(x, theta):
    return 0.5 * jnp.sum(H * x**2) - theta * jnp.sum(B * x)


def _error(solver, strategy, throw=True):
    """The relative error of the hypergradient against the closed form."""

    def loss(theta):
        sol = ax.argmin(
            _cost,
            jnp.zeros(12),
            theta,
            solver=solver,
            hypergradient=strategy,
            throw=throw,
        )
        return 0.5 * jnp.sum((sol.value - TARGET) ** 2)

    exact = float(jnp.sum(B / H * (THETA * B / H - TARGET)))
    return abs(float(jax.grad(loss)(jnp.asarray(THETA))) - exact) / abs(exact)


@pytest.fixture(scope="module")
def sweeps():
    steps, ks, rtols = [10, 40, 160], [1, 8, 64], [1e-1, 1e-3, 1e-8]
    converged = ax.GradientDescent(learning_rate=1.0, rtol=1e-12, max_steps=2000)

    def fixed(n):  # exactly n steps (rtol=0); throw=False: "not converged" is fine
        return ax.GradientDescent(learning_rate=1.0, rtol=0.0, max_steps=n)

    by_steps = [
        [_error(fixed(n), s, throw=False) for n in steps]
        for s in (ax.Unrolled(), ax.Implicit())
    ]
    by_k = [_error(fixed(200), ax.Truncated(k=k), throw=False) for k in ks]
    by_rtol = [
        _error(converged, ax.Implicit(linear_solver=lx.CG(rtol=r, atol=r)))
        for r in rtols
    ]
    return xr.Dataset(
        {
            "error_steps": (("strategy", "steps"), np.asarray(by_steps)),
            "error_k": (("k",), np.asarray(by_k), {"long_name": "rel. error"}),
            "error_rtol": (("rtol",), np.asarray(by_rtol)),
        },
        coords={
            "strategy": ["Unrolled", "Implicit"],
            "steps": ("steps", steps, {"long_name": "inner steps"}),
            "k": ks,
            "rtol": rtols,
        },
    )


def test_hypergradient_error_one_panel_per_sweep(sweeps):
    # The sweeps behave as theory says: more steps, larger k, tighter rtol.
    assert np.all(np.diff(sweeps["error_k"].values) < 0)
    assert np.all(np.diff(sweeps["error_steps"].values, axis=1) < 0)
    assert sweeps["error_rtol"].values[-1] < 1e-6 < sweeps["error_rtol"].values[0]
    fig = hypergradient_error(sweeps, title="quadratic")
    steps_ax, k_ax, rtol_ax = fig.axes
    for strategy in ("Unrolled", "Implicit"):
        line = _line(steps_ax, strategy)
        np.testing.assert_array_equal(line.get_xdata(), [10, 40, 160])
        np.testing.assert_array_equal(
            line.get_ydata(), sweeps["error_steps"].sel(strategy=strategy)
        )
        assert line.get_marker() == "o"
    assert steps_ax.get_xlabel() == "inner steps"
    assert k_ax.get_ylabel() == "rel. error" and k_ax.get_xlabel() == "k"
    (k_line,) = k_ax.get_lines()
    np.testing.assert_array_equal(k_line.get_ydata(), sweeps["error_k"].values)
    (rtol_line,) = rtol_ax.get_lines()
    np.testing.assert_array_equal(rtol_line.get_xdata(), [1e-1, 1e-3, 1e-8])
    assert all(a.get_yscale() == "log" and a.get_xscale() == "log" for a in fig.axes)
    assert [a.get_title() for a in fig.axes] == ["error_steps", "error_k", "error_rtol"]
    # A chosen subset; an exact zero drawn at the floor; into a subfigure.
    exact = sweeps.assign(error_k=sweeps["error_k"] * 0.0)
    outer = Figure()
    sub = outer.subfigures(1, 2)[1]
    fig = hypergradient_error(exact, ("error_k",), fig=sub)
    assert fig is sub and len(outer.axes) == 1
    np.testing.assert_array_equal(outer.axes[0].get_lines()[0].get_ydata(), 1e-16)


def test_hypergradient_error_errors(sweeps):
    with pytest.raises(KeyError, match="no variable 'error_x'"):
        hypergradient_error(sweeps, ("error_x",))
    with pytest.raises(ValueError, match="expected one sweep dim"):
        hypergradient_error(sweeps.assign(both=sweeps["error_k"] * sweeps["rtol"]))
    with pytest.raises(ValueError, match="negative values"):
        hypergradient_error(sweeps.assign(error_k=-sweeps["error_k"]))
    with pytest.raises(ValueError, match="no variable to plot"):
        hypergradient_error(xr.Dataset())
