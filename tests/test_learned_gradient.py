"""The learned-gradient solver: its cell is an LSTM, untrained it is gradient
descent, its unrolled gradient is right, and trained it beats tuned gradient
descent with the same number of steps on held-out 4DVar windows."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax
import pytest

import assimilax as ax
from assimilax.costs import ControlVariable, StrongConstraint4DVar
from assimilax.dynamics import Heat1D
from assimilax.learning import (
    ConvLSTMCell1D,
    LearnedGradientSolver,
    train_learned_gradient_solver,
)
from assimilax.observations import Observations, ScalarNoise, Stations
from assimilax.priors import DiffusionBackground
from scripts import load_example


# A small ill-conditioned quadratic family U(x) = 0.5 x'Ax - b'x (b = args).
N_SMALL = 12
_Q = np.linalg.qr(np.random.default_rng(0).normal(size=(N_SMALL, N_SMALL)))[0]
A_SMALL = jnp.asarray(_Q @ np.diag(np.geomspace(0.01, 1.0, N_SMALL)) @ _Q.T)


def quadratic(x, b):
    return 0.5 * x @ (A_SMALL @ x) - b @ x


def test_kernel_one_cell_is_an_lstm_cell_at_every_point(getkey):
    cell = ConvLSTMCell1D(2, 3, kernel_size=1, key=getkey())
    weight, bias = cell.conv.weight[:, :, 0], cell.conv.bias[:, 0]
    lstm = eqx.nn.LSTMCell(2, 3, key=getkey())
    lstm = eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias),
        lstm,
        (weight[:, :2], weight[:, 2:], bias),
    )
    inputs, h, c = (jr.normal(getkey(), (k, 7)) for k in (2, 3, 3))
    h_conv, c_conv = cell(inputs, (h, c))
    # eqx.nn.LSTMCell at each of the 7 points (columns).
    h_ref, c_ref = jax.vmap(lstm, in_axes=(1, (1, 1)), out_axes=1)(inputs, (h, c))
    np.testing.assert_allclose(h_conv, h_ref, rtol=0, atol=1e-14)
    np.testing.assert_allclose(c_conv, c_ref, rtol=0, atol=1e-14)


def test_untrained_solver_is_gradient_descent(getkey):
    solver = LearnedGradientSolver(6, learning_rate=0.7, key=getkey())
    b = jr.normal(getkey(), (N_SMALL,))
    x0 = jr.normal(getkey(), (N_SMALL,))
    descent = ax.GradientDescent(learning_rate=0.7, max_steps=6, rtol=0.0)
    expected = ax.argmin(
        quadratic, x0, b, solver=descent, hypergradient=ax.Unrolled(), throw=False
    ).value
    xs = solver.iterates(quadratic, x0, b)
    assert xs.shape == (6, N_SMALL) and xs.dtype == jnp.float64
    np.testing.assert_allclose(solver(quadratic, x0, b), expected, rtol=1e-12)
    np.testing.assert_allclose(xs[-1], expected, rtol=1e-12)


def test_float32_state_gives_float32_iterates(getkey):
    # float64 weights (x64 is on in the tests) run on a float32 state under strict
    # promotion; one step of the untrained solver is one gradient step.
    solver = LearnedGradientSolver(1, learning_rate=0.5, key=getkey())
    b = jnp.arange(5, dtype=jnp.float32)

    def fn(x, b):
        return 0.5 * jnp.sum(x**2) - b @ x

    x = solver(fn, jnp.zeros(5, jnp.float32), b)
    assert x.dtype == jnp.float32
    np.testing.assert_allclose(x, 0.5 * b, rtol=1e-6)


def test_unrolled_gradient_matches_finite_differences(getkey):
    # d loss / d theta in a random direction of all the parameters (cell, readout,
    # learning rate), by reverse mode through the 4 steps against central
    # differences. The readout is made non-zero first, so that every parameter
    # acts. Step 1e-5: truncation ~1e-10 and round-off ~1e-11 relative to the
    # directional derivative (O(1)), hence the 1e-7 bound.
    solver = LearnedGradientSolver(4, learning_rate=0.5, hidden_size=3, key=getkey())
    params, static = eqx.partition(solver, eqx.is_inexact_array)
    params = jax.tree.map(lambda p: p + 0.3 * jr.normal(getkey(), p.shape), params)
    direction = jax.tree.map(lambda p: jr.normal(getkey(), p.shape), params)
    b = jr.normal(getkey(), (N_SMALL,))
    target = jr.normal(getkey(), (N_SMALL,))

    @jax.jit
    def loss(p):
        x = eqx.combine(p, static)(quadratic, jnp.zeros(N_SMALL), b)
        return jnp.sum((x - target) ** 2)

    grads = jax.jit(jax.grad(loss))(params)
    exact = sum(
        jnp.vdot(g, d)
        for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction))
    )
    h = 1e-5

    def shifted(sign):
        return loss(jax.tree.map(lambda p, d: p + sign * h * d, params, direction))

    fd = (shifted(1.0) - shifted(-1.0)) / (2 * h)
    assert abs(float(exact) - float(fd)) <= 1e-7 * abs(float(exact)), (exact, fd)


# The 4DVar problem: heat 1D, n = 32 on [0, 2 pi), kappa = 0.5, every 4th point
# observed at 3 times over [0, 0.2] with noise 0.05; truths drawn from B.
N, NOISE, K, NUM_TRAIN = 32, 0.05, 5, 256
OBS_TIMES = np.array([0.0, 0.1, 0.2])
MODEL = Heat1D(n=N, kappa=0.5, length=2 * np.pi)


def _background():
    return DiffusionBackground(jnp.zeros(N), 1.0, 2.0)


def _problem(obs):
    observations = Observations(
        obs, None, OBS_TIMES, Stations.every(4, N), ScalarNoise(NOISE)
    )
    return StrongConstraint4DVar(
        MODEL, observations, _background(), t0=0.0, control=ControlVariable()
    )


def cost(v, obs):
    return _problem(obs).cost(v)


def state_error(v, truth, obs):
    return jnp.mean((_problem(obs).to_state(v) - truth) ** 2)


@functools.partial(jax.jit, static_argnums=1)
def _windows(key, num):
    key_truth, key_noise = jr.split(key)
    truths = jax.vmap(_background().to_state)(jr.normal(key_truth, (num, N)))
    states = jax.vmap(lambda x0: MODEL.integrate(x0, jnp.asarray(OBS_TIMES)))(truths)
    clean = states[:, :, ::4]
    return truths, clean + NOISE * jr.normal(key_noise, clean.shape)


@jax.jit
def _gd_errors(steps, truths, observations):
    # Held-out error after K gradient-descent steps, for each step size.
    def per_step(lr):
        def one(truth, obs):
            v = jnp.zeros(N)
            for _ in range(K):
                v = v - lr * jax.grad(cost)(v, obs)
            return state_error(v, truth, obs)

        return jnp.mean(jax.vmap(one)(truths, observations))

    return jax.lax.map(per_step, steps)


@functools.cache
def _trained():
    train = _windows(jr.key(1), NUM_TRAIN)
    test = _windows(jr.key(2), 64)
    # The Hessian of this quadratic cost does not depend on the data: its largest
    # eigenvalue L by power iteration on one window.
    hvp = jax.jit(
        lambda u: jax.jvp(
            lambda v: jax.grad(cost)(v, train[1][0]), (jnp.zeros(N),), (u,)
        )[1]
    )
    u = jnp.ones(N)
    for _ in range(100):
        u = hvp(u)
        curvature = float(jnp.linalg.norm(u))
        u = u / curvature
    grid = jnp.linspace(0.05, 1.99, 40) / curvature
    train_errors = np.asarray(_gd_errors(grid, *train))
    tuned = float(grid[np.argmin(train_errors)])
    solver = LearnedGradientSolver(
        K, learning_rate=tuned, hidden_size=4, kernel_size=5, key=jr.key(3)
    )
    steps = 300
    trained, losses = train_learned_gradient_solver(
        solver,
        cost,
        jnp.zeros((NUM_TRAIN, N)),
        train[1],
        train[0],
        optimiser=optax.adam(optax.cosine_decay_schedule(1e-2, steps, alpha=0.05)),
        steps=steps,
        batch_size=16,
        key=jr.key(4),
        loss=state_error,
    )
    return solver, trained, losses, tuned, test


@jax.jit
def _converged_error(truths, observations):
    # The cost is quadratic with a data-independent Hessian: its minimisers are
    # v* = -H^{-1} grad U(0) (the 4DVar analyses, the posterior means).
    zero = jnp.zeros(N)
    hessian = jax.hessian(cost)(zero, observations[0])
    grads = jax.vmap(lambda obs: jax.grad(cost)(zero, obs))(observations)
    minimisers = -jnp.linalg.solve(hessian, grads.T).T
    return jnp.mean(jax.vmap(state_error)(minimisers, truths, observations))


@jax.jit
def _held_out_error(solver, test):
    truths, observations = test
    x = jax.vmap(lambda obs: solver(cost, jnp.zeros(N), obs))(observations)
    return jnp.mean(jax.vmap(state_error)(x, truths, observations))


# Slow (~12 s, training): the slow example test checks the same on its own data.
@pytest.mark.slow
def test_trained_solver_beats_tuned_gradient_descent():
    untrained, trained, losses, tuned, test = _trained()
    gd = float(_gd_errors(jnp.array([tuned]), *test)[0])
    # Untrained, the solver is K steps of the tuned gradient descent.
    np.testing.assert_allclose(_held_out_error(untrained, test), gd, rtol=1e-10)
    learned = float(_held_out_error(trained, test))
    converged = float(_converged_error(*test))
    # The converged 4DVar analysis is the posterior mean (truths drawn from B,
    # noise as modelled): no estimator beats it in expectation, and K steps of
    # GD stop well short of it. Measured: GD-5 (tuned step) 0.2165, learned-5
    # 0.1610, converged 0.1356: the learned steps close 69% of the gap (74% with
    # two other seeds for the weights and batches). The bound asks for more than
    # half of it, on held-out windows.
    assert converged < learned < gd - 0.5 * (gd - converged), (learned, gd, converged)
    assert losses[-10:].mean() < 0.8 * losses[0]


def test_errors(getkey):
    with pytest.raises(ValueError, match=r"num_steps=...\) must be an int >= 1"):
        LearnedGradientSolver(0, learning_rate=0.1, key=getkey())
    with pytest.raises(ValueError, match=r"learning_rate=...\) must be > 0"):
        LearnedGradientSolver(3, learning_rate=0.0, key=getkey())
    with pytest.raises(ValueError, match=r"kernel_size=...\) must be odd"):
        ConvLSTMCell1D(1, 2, kernel_size=4, key=getkey())
    with pytest.raises(ValueError, match=r"hidden_size=...\) must be an int >= 1"):
        ConvLSTMCell1D(1, 0, key=getkey())
    solver = LearnedGradientSolver(2, learning_rate=0.1, key=getkey())
    with pytest.raises(ValueError, match="one floating state of shape"):
        solver(quadratic, jnp.zeros((2, N_SMALL)), None)
    x0, b = jnp.zeros((8, N_SMALL)), jnp.ones((8, N_SMALL))
    kwargs = dict(optimiser=optax.sgd(0.1), steps=2, batch_size=4, key=getkey())
    train = train_learned_gradient_solver
    # (With the jaxtyping hook of the test suite, its annotation checks fire
    # first for these two; either message names the class or the argument.)
    with pytest.raises(TypeError, match="LearnedGradientSolver"):
        train(None, quadratic, x0, b, x0, **kwargs)
    with pytest.raises(TypeError, match="optimiser"):
        train(solver, quadratic, x0, b, x0, **(kwargs | {"optimiser": "adam"}))
    with pytest.raises(ValueError, match=r"args=...\): every array must have"):
        train(solver, quadratic, x0, b[:5], x0, **kwargs)
    with pytest.raises(ValueError, match=r"targets=...\) must have one row"):
        train(solver, quadratic, x0, b, x0[:5], **kwargs)
    with pytest.raises(ValueError, match=r"batch_size=...\) must be an int in"):
        train(solver, quadratic, x0, b, x0, **(kwargs | {"batch_size": 9}))
    with pytest.raises(ValueError, match=r"x0=...\) has NaN"):
        train(solver, quadratic, x0.at[0, 0].set(jnp.nan), b, x0, **kwargs)


def test_diverging_training_raises(getkey):
    solver = LearnedGradientSolver(2, learning_rate=0.1, key=getkey())
    x0, b = jnp.zeros((4, N_SMALL)), 100.0 * jnp.ones((4, N_SMALL))
    with pytest.raises(FloatingPointError, match="lower the optimiser's learning"):
        train_learned_gradient_solver(
            solver,
            quadratic,
            x0,
            b,
            x0,
            optimiser=optax.sgd(1e200),
            steps=3,
            batch_size=4,
            key=getkey(),
        )


@pytest.mark.slow
def test_example_runs_and_beats_tuned_gradient_descent(tmp_path, capsys):
    # About 20 s: the example's quick mode (K = 8, 64 training windows).
    pytest.importorskip("matplotlib")
    numbers = load_example("learned_gradient_solver").main(out=tmp_path, quick=True)
    assert (tmp_path / "learned_gradient_solver.png").read_bytes()[:4] == b"\x89PNG"
    # Measured (quick, seed 0): GD-8 0.0766, L-BFGS-8 0.0431, learned-8 0.0420,
    # converged 0.0215.
    learned = numbers["learned"][-1]
    assert numbers["converged"] < learned < 0.75 * numbers["gd"][-1], numbers
    assert numbers["gd_steps_to_match"] > 8
    assert f"{learned:.4f}" in capsys.readouterr().out
