"""The model-error experiment (issue 17): its hypergradient, a short joint
training with a known optimum, and its bad-input errors. Tiny sizes, float64."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest

import assimilax as ax
from assimilax.demos import model_error as me
from assimilax.dynamics import LinearCorrection, Lorenz96
from assimilax.learning import evaluate_outer_loss


TINY = me.DataConfig(
    K=8, J=4, window=3, train=4, valid=2, test=2, spin_up=5.0, max_lead=0.3
)


def test_hypergradient_matches_finite_differences():
    """d outer_loss / d weights through the argmin (`Implicit`) against central
    differences along a random direction of all the network's weights."""
    truth = me.make_truth(TINY, jax.random.key(0))
    window = jax.tree.map(
        lambda a: jnp.asarray(a[0]), me.make_windows(TINY, truth)["train"]
    )
    window.pop("slow0")
    mean, std = me.climatology(truth["obs"])
    experiment = me.Experiment(8, 10.0, 0.05, 0.05, 3, 1.0)
    params = me.network(jax.random.key(1), mean, std, hidden=4, depth=2)
    # Tight solves: the finite differences divide the inner and the backward
    # solves' errors by the step.
    solver = ax.LBFGS(rtol=1e-13, atol=0.0, max_steps=2000)
    strategy = ax.Implicit(linear_solver=lx.CG(rtol=1e-13, atol=0.0, max_steps=500))

    def loss(p):
        problem = experiment.problem_fn(p, window)
        solution = ax.argmin(
            lambda x, q: experiment.problem_fn(q, window).cost(x),
            problem.first_guess(),
            p,
            solver=solver,
            hypergradient=strategy,
        )
        return experiment.outer_loss(problem.to_state(solution.value), p, window)

    grad = eqx.filter_jit(eqx.filter_grad(loss))(params)
    leaves, treedef = jax.tree.flatten(eqx.filter(params, eqx.is_inexact_array))
    keys = jax.random.split(jax.random.key(2), len(leaves))
    direction = jax.tree.unflatten(
        treedef, [jax.random.normal(k, a.shape) for k, a in zip(keys, leaves)]
    )
    slope = sum(
        jnp.vdot(g, d)
        for g, d in zip(
            jax.tree.leaves(eqx.filter(grad, eqx.is_inexact_array)),
            jax.tree.leaves(direction),
        )
    )
    eps = 1e-4  # central differences: O(eps^2) ~ 1e-8 relative truncation error

    def shifted(sign):
        return eqx.apply_updates(
            params, jax.tree.map(lambda d: sign * eps * d, direction)
        )

    value = eqx.filter_jit(loss)
    fd = (value(shifted(1.0)) - value(shifted(-1.0))) / (2 * eps)
    assert abs(float(slope)) > 1e-6  # a direction the loss depends on
    np.testing.assert_allclose(float(slope), float(fd), rtol=1e-5)


def _one_scale_windows(F=10.0, seed=0):
    """Windows on a one-scale Lorenz-96 truth (F = 10), every variable observed
    with noise std 0.2: a clear signal for a few short windows."""
    cfg = dataclasses.replace(
        TINY, train=8, valid=2, test=4, obs_std=0.2, observed_fraction=1.0
    )
    truth_model = Lorenz96(n=8, F=F)
    keys = jax.random.split(jax.random.key(seed))
    start = truth_model.integrate(
        F + jax.random.normal(keys[0], (8,)), np.array([0.0, 10.0])
    )[-1]
    length = cfg.num_windows * cfg.window + max(cfg.window, cfg.lead_steps)
    slow = np.asarray(truth_model.integrate(start, np.arange(length + 1) * 0.05))
    truth = {"slow": slow, "obs": me.observe(cfg, slow, keys[1])}
    blocks = me.make_windows(cfg, truth)
    return {
        name: {k: v for k, v in block.items() if k != "slow0"}
        for name, block in blocks.items()
    }


def test_joint_training_corrects_a_wrong_forcing():
    """Base F = 8 for a truth with F = 10: `LinearCorrection`'s optimum is bias 2,
    weight 0. A few joint steps lower the test windows' forecast misfit and move
    the bias towards 2."""
    blocks = _one_scale_windows()
    experiment = me.Experiment(8, 8.0, 0.05, 0.05, 3, 0.2)
    solver = ax.LBFGS(rtol=1e-8, max_steps=300)
    start = LinearCorrection()
    result, _ = me.train_joint(
        experiment,
        start,
        blocks["train"],
        solver=solver,
        steps=12,
        batch_size=4,
        learning_rate=0.3,
    )
    assert result.stopped is None

    def held_out(params):
        losses = evaluate_outer_loss(
            experiment.problem_fn,
            experiment.outer_loss,
            params,
            blocks["test"],
            solver=solver,
        )
        return float(np.mean(losses))

    before, after = held_out(start), held_out(result.params)
    bias = float(result.params.bias)
    assert after < 0.8 * before, (before, after)
    assert 1.0 < bias < 3.0, bias
    assert abs(float(result.params.weight)) < 0.2


def test_observed_fraction_zero_raises():
    with pytest.raises(ValueError, match="observed_fraction"):
        me.DataConfig(observed_fraction=0.0)


class _DropsOne(eqx.Module):
    def __call__(self, x):
        return x[..., :-1]


def test_correction_of_wrong_shape_raises():
    blocks = _one_scale_windows()
    experiment = me.Experiment(8, 8.0, 0.05, 0.05, 3, 0.2)
    with pytest.raises(ValueError, match=r"correction=.*shape \(8,\)"):
        me.train_joint(
            experiment,
            _DropsOne(),
            blocks["train"],
            solver=ax.LBFGS(),
            steps=1,
            batch_size=1,
            learning_rate=0.1,
        )
