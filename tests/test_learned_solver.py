"""`LearnedGradientDescent`, the learned-gradient (4DVarNet) inner solver: untrained
it is gradient descent, in `argmin` under `jax.grad` its hypergradients match finite
differences (w.r.t. the cost's parameters and its own), it checks the state's rank,
reports a non-converged solve, and joint prior + solver training lowers the
held-out error."""

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
    ConvLSTMCell2D,
    ConvLSTMModulator,
    LearnedGradientDescent,
    train_learned_solver,
)
from assimilax.observations import Observations, ScalarNoise, Stations
from assimilax.priors import ConvAutoencoder1D, DiffusionBackground, EnergyPrior


SHAPE = (6, 5)


def quadratic(x, args):
    # A 2D field, coupled between neighbours: 0.5 x'Ax - b'x with A = diag(w) +
    # a shift term (positive definite for w >= 1).
    w, b = args
    coupling = 0.2 * jnp.sum(jnp.roll(x, 1, axis=0) * x)
    return 0.5 * jnp.sum(w * x**2) + coupling - jnp.sum(b * x)


def _perturbed(module, key, scale=0.3):
    # Non-zero readout and random weights, so that every parameter acts.
    params, static = eqx.partition(module, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params)
    keys = jr.split(key, len(leaves))
    leaves = [p + scale * jr.normal(k, p.shape) for p, k in zip(leaves, keys)]
    return eqx.combine(jax.tree.unflatten(treedef, leaves), static)


def _args(key):
    kw, kb = jr.split(key)
    return 1.0 + jr.uniform(kw, SHAPE), jr.normal(kb, SHAPE)


@pytest.mark.parametrize("rank", [1, 2])
def test_untrained_solver_is_gradient_descent(rank, getkey):
    shape = SHAPE[:rank]
    modulator = ConvLSTMModulator(rank, hidden_size=3, kernel_size=3, key=getkey())
    solver = LearnedGradientDescent(modulator, learning_rate=0.3, max_steps=7)
    descent = ax.GradientDescent(learning_rate=0.3, max_steps=7, rtol=0.0)
    w, b = (a[(slice(None),) * rank + (0,) * (2 - rank)] for a in _args(getkey()))

    def fn(x, args):
        return 0.5 * jnp.sum(args[0] * x**2) - jnp.sum(args[1] * x)

    x0 = jr.normal(getkey(), shape)
    got = ax.argmin(fn, x0, (w, b), solver=solver, throw=False)
    expected = ax.argmin(fn, x0, (w, b), solver=descent, throw=False)
    assert got.value.shape == shape and int(got.stats.num_steps) == 7
    np.testing.assert_allclose(got.value, expected.value, rtol=1e-12, atol=1e-14)


def _directional_fd(loss, params, direction, h=1e-5):
    def shifted(sign):
        return loss(jax.tree.map(lambda p, d: p + sign * h * d, params, direction))

    return (shifted(1.0) - shifted(-1.0)) / (2 * h)


def _vdot(a, b):
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("strategy", [ax.Unrolled(), ax.Truncated(k=3)])
def test_argmin_under_grad_matches_finite_differences(strategy, getkey):
    # d loss / d (cost parameters) and d loss / d (solver arrays), both by jax.grad
    # through `argmin` with the learned solver, against central differences along
    # a random direction. For `Truncated` the reference is the truncated
    # derivative itself: finite differences of the same solve with the head's
    # dependence removed are not available, so only `Unrolled` is compared for
    # the cost parameters, and both for the solver (whose head is frozen too).
    modulator = _perturbed(
        ConvLSTMModulator(2, hidden_size=3, kernel_size=3, key=getkey()), getkey()
    )
    solver = LearnedGradientDescent(modulator, learning_rate=0.2, max_steps=6)
    args = _args(getkey())
    target = jr.normal(getkey(), SHAPE)
    x0 = jnp.zeros(SHAPE)

    def loss(solver, args):
        sol = ax.argmin(
            quadratic, x0, args, solver=solver, hypergradient=strategy, throw=False
        )
        return jnp.sum((sol.value - target) ** 2)

    grad_solver = eqx.filter_jit(eqx.filter_grad(loss))(solver, args)
    grad_args = eqx.filter_jit(jax.grad(loss, argnums=1))(solver, args)
    params, static = eqx.partition(solver, eqx.is_inexact_array)
    flat = jax.tree.leaves(eqx.filter(grad_solver, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in flat)
    assert float(sum(jnp.sum(jnp.abs(g)) for g in flat)) > 1e-3
    if isinstance(strategy, ax.Truncated):
        return
    loss_jit = eqx.filter_jit(loss)
    direction = jax.tree.map(lambda p: jr.normal(getkey(), p.shape), params)
    exact = _vdot(eqx.filter(grad_solver, eqx.is_inexact_array), direction)
    fd = _directional_fd(
        lambda p: loss_jit(eqx.combine(p, static), args), params, direction
    )
    assert abs(float(exact - fd)) <= 1e-7 * abs(float(exact)), (exact, fd)
    direction = jax.tree.map(lambda a: jr.normal(getkey(), a.shape), args)
    exact = _vdot(grad_args, direction)
    fd = _directional_fd(lambda a: loss_jit(solver, a), args, direction)
    assert abs(float(exact - fd)) <= 1e-7 * abs(float(exact)), (exact, fd)


def test_implicit_gives_zero_for_the_solver_and_the_converged_hypergradient(getkey):
    # Converged (an untrained solver is gradient descent; 400 steps reach rtol
    # 1e-10 on this well-conditioned quadratic), `Implicit` gives the derivative
    # of the exact minimiser w.r.t. the cost's parameters, and zero w.r.t. the
    # solver, on which the exact minimiser does not depend.
    modulator = ConvLSTMModulator(2, hidden_size=2, kernel_size=3, key=getkey())
    solver = LearnedGradientDescent(
        modulator, learning_rate=0.3, max_steps=400, rtol=1e-10
    )
    args = _args(getkey())

    def loss(solver, args):
        sol = ax.argmin(quadratic, jnp.zeros(SHAPE), args, solver=solver)
        return jnp.sum(sol.value**2)

    grad_solver, grad_args = (
        eqx.filter_grad(loss)(solver, args),
        jax.grad(loss, argnums=1)(solver, args),
    )
    assert all(
        float(jnp.max(jnp.abs(g))) == 0.0
        for g in jax.tree.leaves(eqx.filter(grad_solver, eqx.is_inexact_array))
    )
    w, b = args
    direction = jr.normal(getkey(), SHAPE)
    fd = _directional_fd(lambda bb: loss(solver, (w, bb)), b, direction)
    np.testing.assert_allclose(_vdot(grad_args[1], direction), fd, rtol=1e-6)


def test_wrong_rank_is_a_clear_error(getkey):
    two_d = LearnedGradientDescent(
        ConvLSTMModulator(2, key=getkey()), learning_rate=0.1, max_steps=3
    )
    one_d = LearnedGradientDescent(
        ConvLSTMModulator(1, key=getkey()), learning_rate=0.1, max_steps=3
    )

    def fn(x, args):
        return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(x))

    with pytest.raises(
        ValueError,
        match=r"2D .*`x0` must be one array of shape \(ny, nx\), got .*\[\(7,\)\]",
    ):
        ax.argmin(fn, jnp.ones(7), None, solver=two_d)
    with pytest.raises(
        ValueError,
        match=r"1D .*`x0` must be one array of shape \(n,\), got .*\[\(3, 4\)\]",
    ):
        ax.argmin(fn, jnp.ones((3, 4)), None, solver=one_d)
    with pytest.raises(ValueError, match=r"`x0` must be one array"):
        ax.argmin(fn, (jnp.ones(3), jnp.ones(3)), None, solver=one_d)
    with pytest.raises(ValueError, match="num_spatial_dims"):
        ConvLSTMModulator(3, key=getkey())
    with pytest.raises(ValueError, match="learning_rate"):
        LearnedGradientDescent(two_d.modulator, learning_rate=0.0, max_steps=3)
    with pytest.raises(TypeError, match="modulator"):
        LearnedGradientDescent(
            ConvLSTMCell2D(1, 2, key=getkey()), learning_rate=0.1, max_steps=3
        )


def test_non_converged_solve_is_reported(getkey):
    solver = LearnedGradientDescent(
        ConvLSTMModulator(2, key=getkey()), learning_rate=0.1, max_steps=3
    )
    args = _args(getkey())
    sol = ax.argmin(quadratic, jnp.zeros(SHAPE), args, solver=solver, throw=False)
    assert sol.result == ax.RESULTS.inner_max_steps
    assert not bool(sol.stats.converged) and int(sol.stats.num_steps) == 3
    with pytest.raises(Exception, match="max_steps"):
        ax.argmin(quadratic, jnp.zeros(SHAPE), args, solver=solver)


def test_kernel_one_2d_cell_is_an_lstm_cell_at_every_point(getkey):
    cell = ConvLSTMCell2D(2, 3, kernel_size=1, key=getkey())
    weight, bias = cell.conv.weight[:, :, 0, 0], cell.conv.bias[:, 0, 0]
    lstm = eqx.nn.LSTMCell(2, 3, key=getkey())
    lstm = eqx.tree_at(
        lambda m: (m.weight_ih, m.weight_hh, m.bias),
        lstm,
        (weight[:, :2], weight[:, 2:], bias),
    )
    inputs, h, c = (jr.normal(getkey(), (k, 4, 5)) for k in (2, 3, 3))
    h_conv, c_conv = cell(inputs, (h, c))
    flat = lambda a: a.reshape(a.shape[0], -1)  # noqa: E731
    h_ref, c_ref = jax.vmap(lstm, in_axes=(1, (1, 1)), out_axes=1)(
        flat(inputs), (flat(h), flat(c))
    )
    np.testing.assert_allclose(flat(h_conv), h_ref, rtol=0, atol=1e-14)
    np.testing.assert_allclose(flat(c_conv), c_ref, rtol=0, atol=1e-14)


# Joint training: heat 1D (n = 32), every 4th point observed at 3 times with noise
# 0.05, truths from B; 4DVar in control-variable form with an energy prior
# (a small autoencoder, untrained) and a K = 5 learned solver, both trained together.
N, NOISE, K = 32, 0.05, 5
OBS_TIMES = np.array([0.0, 0.1, 0.2])
MODEL = Heat1D(n=N, kappa=0.5, length=2 * np.pi)


def _background():
    return DiffusionBackground(jnp.zeros(N), 1.0, 2.0)


def _problem(params, window):
    observations = Observations(
        window["obs"], None, OBS_TIMES, Stations.every(4, N), ScalarNoise(NOISE)
    )
    prior = EnergyPrior(params["network"], jnp.exp(params["log_weight"]))
    return StrongConstraint4DVar(
        MODEL,
        observations,
        _background(),
        t0=0.0,
        priors=(prior,),
        control=ControlVariable(),
    )


def _error(state, params, window):
    del params
    return jnp.mean((state - window["truth"]) ** 2)


@functools.partial(jax.jit, static_argnums=1)
def _windows(key, num):
    key_truth, key_noise = jr.split(key)
    truths = jax.vmap(_background().to_state)(jr.normal(key_truth, (num, N)))
    states = jax.vmap(lambda x0: MODEL.integrate(x0, jnp.asarray(OBS_TIMES)))(truths)
    clean = states[:, :, ::4]
    return {"truth": truths, "obs": clean + NOISE * jr.normal(key_noise, clean.shape)}


@eqx.filter_jit
def _held_out(solver, params, windows):
    def one(window):
        problem = _problem(params, window)
        sol = ax.argmin(
            lambda v, p: p.cost(v),
            problem.first_guess(),
            problem,
            solver=solver,
            throw=False,
        )
        return _error(problem.to_state(sol.value), params, window)

    return jnp.mean(jax.vmap(one)(windows))


@jax.jit
def _largest_eigenvalue(params, window):
    problem = _problem(params, window)
    v0 = problem.first_guess()

    def hvp(u):
        return jax.jvp(jax.grad(problem.cost), (v0,), (u,))[1]

    def body(_, u):
        u = hvp(u)
        return u / jnp.linalg.norm(u)

    u = jax.lax.fori_loop(0, 50, body, jnp.ones_like(v0) / np.sqrt(N))
    return jnp.vdot(u, hvp(u))


# 60 unrolled training steps, about 25 s: run by CI's slow part.
@pytest.mark.slow
def test_joint_prior_and_solver_training_lowers_held_out_error(getkey):
    train, test = _windows(jr.key(1), 32), _windows(jr.key(2), 32)
    network = ConvAutoencoder1D(width=4, latent_channels=1, depth=1, key=getkey())
    params = {"network": network, "log_weight": jnp.asarray(0.0)}
    modulator = ConvLSTMModulator(1, hidden_size=4, kernel_size=5, key=getkey())
    # The gradient step 1/L, L the largest eigenvalue of one training window's
    # Hessian at the first guess (power iteration): a stable gradient descent.
    lr = 1.0 / _largest_eigenvalue(params, jax.tree.map(lambda a: a[0], train))
    solver = LearnedGradientDescent(modulator, learning_rate=lr, max_steps=K)
    before = float(_held_out(solver, params, test))
    steps = 60
    trained, trained_params, losses = train_learned_solver(
        solver,
        params,
        _problem,
        _error,
        train,
        optimiser=optax.adam(optax.cosine_decay_schedule(3e-2, steps)),
        steps=steps,
        batch_size=8,
        key=getkey(),
        hypergradient=ax.Unrolled(),
    )
    after = float(_held_out(trained, trained_params, test))
    assert losses.shape == (steps,) and np.all(np.isfinite(losses))
    # Measured: 0.2472 -> 0.1901 (untrained: 5 steps of gradient descent with
    # step 1/L and the random prior).
    assert np.isfinite(before) and after < 0.85 * before, (before, after)


def test_learned_solver_is_an_inner_solver_of_fit(getkey):
    # `fit` learns the prior through the (fixed, untrained) learned solver, by
    # `Unrolled`: every solve converged (rtol 1e-2 within 200 steps), and the
    # outer loss falls. (`fit` cannot train the solver's own weights:
    # `train_learned_solver` does that.)
    train = _windows(jr.key(3), 4)
    network = ConvAutoencoder1D(width=4, latent_channels=1, depth=1, key=getkey())
    params = {"network": network, "log_weight": jnp.asarray(0.0)}
    modulator = ConvLSTMModulator(1, hidden_size=4, kernel_size=5, key=getkey())
    lr = 1.0 / _largest_eigenvalue(params, jax.tree.map(lambda a: a[0], train))
    solver = LearnedGradientDescent(
        modulator, learning_rate=lr, max_steps=200, rtol=1e-2
    )
    result = ax.fit(
        _problem,
        _error,
        params,
        train,
        optimiser=optax.adam(0.1),
        solver=solver,
        hypergradient=ax.Unrolled(),
        steps=6,
        batch_size=4,
        trainable={"network": False, "log_weight": True},
    )
    history = result.history
    assert int(history["inner_failures"].sum()) == 0
    losses = history["loss"].values
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_training_the_solver_needs_a_strategy_that_differentiates_it(getkey):
    modulator = ConvLSTMModulator(1, hidden_size=2, kernel_size=3, key=getkey())
    solver = LearnedGradientDescent(modulator, learning_rate=0.1, max_steps=5)
    with pytest.raises(ValueError, match="does not differentiate the solver"):
        train_learned_solver(
            solver,
            None,
            _problem,
            _error,
            _windows(jr.key(3), 4),
            optimiser=optax.adam(1e-2),
            steps=1,
            batch_size=2,
            key=getkey(),
            hypergradient=ax.Implicit(),
        )
