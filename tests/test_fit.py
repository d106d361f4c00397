"""`fit`: the outer loop (float64): recovery of a known parameter, warm starts,
checkpoints and resume after SIGKILL, failures, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import xarray as xr

import assimilax as ax
from assimilax.demos import heat
from assimilax.learning import (
    Checkpoints,
    ColdStart,
    data_mesh,
    evaluate_outer_loss,
    fit,
    Sequential,
    Vectorised,
)
from assimilax.learning._checkpoint import latest_checkpoint
from assimilax.learning._step import StepConfig


sys.path.insert(0, str(Path(__file__).parent))
from _fit_scripts import (  # noqa: E402
    outer_loss,
    problem_fn,
    ridge_windows,
    run,
    SLOW_CHECKPOINTS,
    SOLVER,
)
from helpers import compilations  # noqa: E402


@pytest.mark.parametrize(
    "name",
    [
        "Implicit",
        # The same claim through `Unrolled` (~8 s): CI's slow part.
        pytest.param("Unrolled", marks=pytest.mark.slow),
        # About 70 s on two cores (a stiff flow, ~40 implicit steps per window and
        # outer step): slow-marked to keep the default suite short.
        pytest.param("GradientFlowAdjoint", marks=pytest.mark.slow),
    ],
)
def test_heat_kappa_recovered_from_twice_the_truth(name):
    # Issue 4, acceptance 1: n=128, kappa_true=0.5, every 4th point observed
    # every 5 steps, noise 5% of the signal std, 16 windows, kappa0 = 2 kappa.
    example = heat
    windows, noise = example.make_windows(16)
    hypergradient, solver, warm_start = heat.STRATEGIES[name]
    result = example.learn(hypergradient, solver, windows, noise, 40, warm_start)
    KAPPA = example.KAPPA
    kappa = float(jnp.exp(result.params["log_kappa"]))
    assert abs(kappa - KAPPA) / KAPPA < 0.02, kappa
    history = result.history
    assert result.stopped is None
    assert history.sizes["step"] == 40
    assert int(history["inner_failures"].sum()) == 0
    # The outer loop converged: the loss fell and the hypergradient vanished.
    assert history["loss"][-1] < 0.25 * history["loss"][0]
    assert history["grad_norm"][-1] < 1e-2 * history["grad_norm"][0]
    np.testing.assert_allclose(
        np.exp(history["params.log_kappa"][0]), 2 * KAPPA, rtol=1e-12
    )


def test_warm_starts_and_dataset_input():
    windows = ridge_windows()
    ds = xr.Dataset(
        {name: (("window", "x"), np.asarray(value)) for name, value in windows.items()}
    )
    common = dict(optimiser=optax.adam(0.1), solver=SOLVER, steps=6, batch_size=4)
    warm = fit(problem_fn, outer_loss, {"log_weight": jnp.asarray(0.0)}, ds, **common)
    cold = fit(
        problem_fn,
        outer_loss,
        {"log_weight": jnp.asarray(0.0)},
        ds,
        warm_start=ColdStart(),
        **common,
    )
    # Same hypergradients (Implicit at converged minimisers), fewer inner steps.
    np.testing.assert_allclose(
        warm.params["log_weight"], cold.params["log_weight"], rtol=1e-6
    )
    assert warm.history["inner_steps"].mean() < cold.history["inner_steps"].mean()
    assert np.isfinite(warm.history["linear_steps"]).all()

    # The seeding cold solves before step 0 are recorded: the mean inner steps
    # of a cold solve of every training window at the initial parameters.
    def cold_steps(y):
        problem = problem_fn({"log_weight": jnp.asarray(0.0)}, {"y": y})
        sol = ax.argmin(
            lambda x, p: p.cost(x), problem.first_guess(), problem, solver=SOLVER
        )
        return sol.stats.num_steps

    expected = float(jnp.mean(jax.vmap(cold_steps)(windows["y"])))
    assert warm.history.attrs["warm_start"] == 1
    assert warm.history.attrs["initial_inner_failures"] == 0
    np.testing.assert_allclose(warm.history.attrs["initial_inner_steps"], expected)
    assert warm.history["inner_steps"][0] < expected
    assert "initial_inner_steps" not in cold.history.attrs


def test_evaluate_outer_loss_closed_form_and_failures():
    # Ridge: the minimiser is y / (1 + w), so each window's loss is known.
    windows = ridge_windows()
    y, truth = np.asarray(windows["y"]), np.asarray(windows["truth"])
    w = 0.7
    params = {"log_weight": jnp.log(w)}
    losses = evaluate_outer_loss(problem_fn, outer_loss, params, windows, solver=SOLVER)
    assert losses.shape == (12,)
    np.testing.assert_allclose(
        losses, np.mean((y / (1 + w) - truth) ** 2, axis=1), rtol=1e-8
    )
    # A list of windows works the same.
    listed = [{k: v[i] for k, v in windows.items()} for i in range(3)]
    np.testing.assert_allclose(
        evaluate_outer_loss(problem_fn, outer_loss, params, listed, solver=SOLVER),
        losses[:3],
        rtol=1e-12,
    )
    # An unconverged solve is reported, not scored.
    starved = ax.GradientDescent(learning_rate=0.1, max_steps=2, rtol=1e-12)
    with pytest.raises(RuntimeError, match="12 of 12 inner solves did not converge"):
        evaluate_outer_loss(problem_fn, outer_loss, params, windows, solver=starved)


def test_evaluate_outer_loss_compiles_once():
    # A second call with equal arguments (the same `problem_fn` and `outer_loss`,
    # equal solver and strategy objects, arrays of the same shapes) compiles
    # nothing: it used to build a fresh `optax.identity()`, a static field hashed
    # by identity, and recompile every call.
    windows = ridge_windows()
    params = {"log_weight": jnp.asarray(-0.5)}
    first = evaluate_outer_loss(problem_fn, outer_loss, params, windows, solver=SOLVER)
    other = {"log_weight": jnp.asarray(0.2)}
    with compilations() as messages:
        again = evaluate_outer_loss(
            problem_fn, outer_loss, params, windows, solver=SOLVER
        )
        evaluate_outer_loss(
            problem_fn,
            outer_loss,
            other,
            windows,
            solver=SOLVER,
            hypergradient=ax.Implicit(),
        )
    compiled = [m for m in messages if m.startswith("Compiling")]
    assert compiled == [], compiled
    np.testing.assert_array_equal(again, first)


def _fresh_run(scale: float, steps: int = 3):
    """A `fit` whose problem function, outer loss and optimiser are built anew
    on each call (closures over `scale` and an array, as a script would)."""
    weights = jnp.full(5, scale)

    def fresh_problem_fn(params, window):
        return problem_fn(params, {"y": weights * window["y"]})

    def fresh_loss(x, params, window):
        return outer_loss(x, params, window)

    return fit(
        fresh_problem_fn,
        fresh_loss,
        {"log_weight": jnp.asarray(0.0)},
        ridge_windows(),
        optimiser=optax.chain(optax.clip(1.0), optax.adam(0.1)),
        solver=SOLVER,
        steps=steps,
        batch_size=3,
    )


def test_second_equal_fit_compiles_nothing():
    # Issue 15: `fit`'s programs are keyed by the structure of the functions and
    # the optimiser (code and closed-over values), not by object identity: a
    # second call with freshly built but equal ones compiles nothing, and a
    # closed-over value that differs does recompile (and changes the result).
    first = _fresh_run(1.0)
    with compilations() as messages:
        second = _fresh_run(1.0)
    compiled = [m for m in messages if m.startswith("Compiling")]
    assert compiled == [], compiled
    np.testing.assert_array_equal(
        second.params["log_weight"], first.params["log_weight"]
    )
    with compilations() as messages:
        other = _fresh_run(0.5)
    assert any("train_step" in m for m in messages), messages
    assert not np.allclose(other.params["log_weight"], first.params["log_weight"])


def test_map_batching_matches_vmap():
    # `Sequential()` solves a batch's windows one after another (`lax.map`):
    # the same run as the default `Vectorised()`, up to round-off.
    windows = ridge_windows()
    common = dict(
        optimiser=optax.adam(0.1),
        solver=SOLVER,
        steps=6,
        batch_size=4,
        validation=0.25,
        validate_every=3,
    )
    params = {"log_weight": jnp.asarray(0.0)}
    side_by_side = fit(problem_fn, outer_loss, params, windows, **common)
    in_turn = fit(
        problem_fn, outer_loss, params, windows, batching=Sequential(), **common
    )
    np.testing.assert_allclose(
        in_turn.params["log_weight"], side_by_side.params["log_weight"], rtol=1e-10
    )
    # (Not `linear_steps`: CG on this Hessian, a multiple of the identity, ends
    # after 1 or 2 steps as round-off puts the residual either side of its tol.)
    for name in ("loss", "validation_loss", "inner_steps"):
        np.testing.assert_allclose(
            in_turn.history[name], side_by_side.history[name], rtol=1e-10
        )
    assert in_turn.history.attrs["batching"] == "Sequential()"
    assert side_by_side.history.attrs["batching"] == "Vectorised()"
    np.testing.assert_allclose(
        evaluate_outer_loss(
            problem_fn,
            outer_loss,
            params,
            windows,
            solver=SOLVER,
            batching=Sequential(),
        ),
        evaluate_outer_loss(problem_fn, outer_loss, params, windows, solver=SOLVER),
        rtol=1e-10,
    )
    # `Sequential` really is a loop over the windows (a scan), `Vectorised` not.
    for batching, loops in ((Sequential(), True), (Vectorised(), False)):
        config = StepConfig(
            problem_fn,
            outer_loss,
            optax.identity(),
            SOLVER,
            ax.Implicit(),
            batching=batching,
        )
        jaxpr = jax.make_jaxpr(lambda y: config.batching.map(jnp.sin, y))(
            jnp.ones((3, 2))
        )
        assert ("scan" in str(jaxpr)) is loops


def test_closed_form_optimum():
    # The outer optimum of the ridge problem is known: per coordinate the
    # minimiser is y / (1 + w), and the best w over the data solves a scalar
    # least-squares problem; check it by brute force over a fine grid.
    windows = ridge_windows()
    y, truth = np.asarray(windows["y"]), np.asarray(windows["truth"])
    grid = np.exp(np.linspace(-3, 3, 20001))
    losses = [np.mean((y / (1 + w) - truth) ** 2) for w in grid]
    best = grid[int(np.argmin(losses))]
    result = fit(
        problem_fn,
        outer_loss,
        {"log_weight": jnp.asarray(0.0)},
        windows,
        optimiser=optax.adam(0.05),
        solver=SOLVER,
        steps=300,
        batch_size=12,
    )
    np.testing.assert_allclose(np.exp(result.params["log_weight"]), best, rtol=1e-3)


@pytest.mark.parametrize(
    "kills, steps",
    [
        # One kill: ~25 s of fresh processes, each compiling its `fit` (a
        # checkpoint torn by a kill is tested in tests/test_checkpoint.py).
        pytest.param(1, 12, marks=pytest.mark.slow),
        # Ten kills of a 40-step run: about three minutes on two busy cores.
        pytest.param(10, 40, marks=pytest.mark.slow),
    ],
)
def test_resume_after_sigkill_matches_uninterrupted(tmp_path, kills, steps):
    # SIGKILLs at random moments inside checkpoint writes (the script's test-only
    # hook stretches each file-system step of a write to 20 ms, about 0.25 s a
    # write) of a run that checkpoints every step, each followed by a resume:
    # every time the latest checkpoint is readable, and the last resume ends
    # where an uninterrupted run does. (A crash at each file-system step of a
    # write in turn: tests/test_checkpoint.py.)
    script = Path(__file__).parent / "_fit_scripts.py"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", SLOW_CHECKPOINTS: "0.02"}
    folder, out = tmp_path / "killed", tmp_path / "resumed.npy"
    command = [sys.executable, str(script), str(folder), str(out), "--resume"]
    command += ["--steps", str(steps)]
    rng = np.random.default_rng(kills)  # reproducible moments
    saved_step = 0
    for _ in range(kills):
        seen = set(folder.glob(".partial_*"))  # any left by the previous kill
        writes = 0
        process = subprocess.Popen(command, env=env)
        deadline = time.monotonic() + 300
        # Wait for this run's second checkpoint write to begin (so that a LATEST
        # exists), then kill it a random moment into that write or the next.
        while writes < 2:
            new = set(folder.glob(".partial_*")) - seen
            writes, seen = writes + len(new), seen | new
            code = process.poll()
            assert code is None, f"the run exited ({code}) before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint write began"
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL, "the run ended before the kill"
        latest = latest_checkpoint(folder)  # raises if LATEST names a broken one
        assert latest is not None and (latest / "arrays.eqx").stat().st_size > 0
        meta = json.loads((latest / "meta.json").read_text())
        assert saved_step < meta["step"] < steps, (saved_step, meta["step"])
        saved_step = meta["step"]
    subprocess.run(command, env=env, check=True)
    uninterrupted = run(tmp_path / "whole", steps=steps).params["log_weight"]
    np.testing.assert_allclose(np.load(out), uninterrupted, rtol=1e-12)


def test_non_finite_loss_stops_with_last_good_parameters(tmp_path):
    def exploding(x, params, window):
        bad = params["log_weight"] > 0.25  # reached after a few steps up
        return jnp.where(bad, jnp.nan, outer_loss(x, params, window))

    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        result = fit(
            problem_fn,
            exploding,
            {"log_weight": jnp.asarray(0.0)},
            ridge_windows(),
            optimiser=optax.sgd(0.2),
            solver=SOLVER,
            steps=50,
            batch_size=12,
            checkpoints=Checkpoints(tmp_path),
        )
    assert result.stopped is not None and "non-finite" in result.stopped
    last = float(result.params["log_weight"])
    # The last parameters with a finite loss: below the threshold, and the step
    # before the one that failed.
    assert 0.0 < last <= 0.25, last
    history = result.history
    failed = history.sizes["step"] - 1
    assert failed < 49 and np.isnan(history["loss"][failed])
    np.testing.assert_allclose(last, history["params.log_weight"][failed - 1])
    assert (tmp_path / "LATEST").exists()


def test_bad_arguments():
    params, windows = {"log_weight": jnp.asarray(0.0)}, ridge_windows()
    args = (problem_fn, outer_loss, params, windows)
    common = dict(optimiser=optax.adam(0.1), solver=SOLVER)
    with pytest.raises(ValueError, match="exactly one of `steps` and `epochs`"):
        fit(*args, steps=2, epochs=1, **common)
    with pytest.raises(ValueError, match="batch_size=...\\) must be an int in"):
        fit(*args, steps=2, batch_size=99, **common)
    with pytest.raises(ValueError, match="validation=...\\) must be in"):
        fit(*args, steps=2, validation=1.0, **common)
    with pytest.raises(ValueError, match="Checkpoints\\(every=...\\) must be an int"):
        Checkpoints(".", every=0)
    with pytest.raises(
        ValueError, match="batching=Sequential\\(\\)\\) cannot split a batch"
    ):
        fit(*args, steps=2, batching=Sequential(), mesh=data_mesh(), **common)
    # Mode arguments are objects: a string or a bool is refused, naming the
    # argument (by the suite's jaxtyping hook first, else by `fit` itself).
    for name, value in (
        ("batching", "map"),
        ("warm_start", False),
        ("checkpoints", "ckpt"),
        ("progress", True),
    ):
        with pytest.raises(TypeError, match=name):
            fit(*args, steps=2, **{name: value}, **common)
    with pytest.raises(TypeError, match="batching"):
        evaluate_outer_loss(*args, solver=SOLVER, batching="loop")

    class NotAProblem(eqx.Module):
        y: jax.Array

        def cost(self, x):
            return jnp.sum((x - self.y) ** 2)

        def first_guess(self):
            return self.y

    with pytest.raises(TypeError, match="must be an assimilax AbstractProblem"):
        fit(
            lambda p, w: NotAProblem(w["y"]),
            outer_loss,
            params,
            windows,
            steps=1,
            **common,
        )
    with pytest.raises(ValueError, match="`window` or `sample` dim"):
        no_windows = xr.Dataset({"y": ("x", np.zeros(3))})
        fit(problem_fn, outer_loss, params, no_windows, steps=2, **common)
    # An empty stacked dataset is blamed on `data=` (it used to be `validation=`).
    empty_message = "fit\\(data=...\\) holds no window: its leading window axis has"
    empty = jax.tree.map(lambda a: a[:0], windows)
    empty_ds = xr.Dataset({"y": (("window", "x"), np.zeros((0, 3)))})
    for data in (empty, empty_ds):
        with pytest.raises(ValueError, match=empty_message):
            fit(problem_fn, outer_loss, params, data, steps=2, **common)
    with pytest.raises(ValueError, match="evaluate_outer_loss\\(data=...\\) holds no"):
        evaluate_outer_loss(problem_fn, outer_loss, params, empty, solver=SOLVER)
    # Under the suite's jaxtyping hook the annotation is checked first; both
    # messages name the argument.
    with pytest.raises(TypeError, match="optimiser"):
        fit(*args, steps=2, optimiser="adam", solver=SOLVER)
