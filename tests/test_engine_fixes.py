"""Regression tests: an `eqx.nn.MLP` inside `argmin`'s `args`, and `fit` compiling
its training step once for weak-typed initial parameters (float64)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import optax
from jax.flatten_util import ravel_pytree

import assimilax as ax
from assimilax.learning import ColdStart, fit
from helpers import compilations


TARGET = jnp.array([0.4, -0.3, 0.8])


def mlp_regularised(x, args):
    # A learned regulariser: 0.5 |x - y|^2 + 0.05 |mlp(x)|^2. The network (with its
    # activation functions as fields) travels in `args`.
    mlp, y = args
    return 0.5 * jnp.sum((x - y) ** 2) + 0.05 * jnp.sum(mlp(x) ** 2)


def mlp_outer_loss(args):
    sol = ax.argmin(
        mlp_regularised,
        jnp.zeros(3),
        args,
        solver=ax.LBFGS(rtol=1e-13),
        hypergradient=ax.Implicit(linear_solver=lx.CG(rtol=1e-12, atol=1e-12)),
    )
    return 0.5 * jnp.sum((sol.value - TARGET) ** 2)


def test_mlp_in_args_hypergradient_matches_finite_differences(getkey):
    mlp = eqx.nn.MLP(3, 2, 8, 1, activation=jnp.tanh, key=getkey())
    args = (mlp, jnp.array([1.0, -0.5, 0.3]))
    grads = eqx.filter_grad(mlp_outer_loss)(args)
    # Central difference along a random direction of every parameter (network
    # weights and y): error O(eps^2) plus inner-solve error / eps, ~1e-9 here.
    params, static = eqx.partition(args, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    direction = jr.normal(getkey(), flat.shape, flat.dtype)
    eps = 1e-5

    def at(theta):
        return mlp_outer_loss(eqx.combine(unravel(theta), static))

    fd = (at(flat + eps * direction) - at(flat - eps * direction)) / (2 * eps)
    exact = ravel_pytree(eqx.filter(grads, eqx.is_inexact_array))[0] @ direction
    assert abs(float(fd) - float(exact)) <= 1e-6 * abs(float(exact))
    assert abs(float(exact)) > 1e-3  # a real derivative, not a vanishing one


class _Ridge(ax.AbstractProblem):
    y: jax.Array
    log_weight: jax.Array

    def cost(self, x):
        weight = jnp.exp(self.log_weight)
        return 0.5 * jnp.sum((x - self.y) ** 2) + 0.5 * weight * jnp.sum(x**2)

    def first_guess(self):
        return jnp.zeros_like(self.y)


def _ridge_problem(params, window):
    return _Ridge(window["y"], params["log_weight"])


def _ridge_loss(x, params, window):
    return jnp.mean((x - window["truth"]) ** 2)


def test_fit_compiles_its_step_once_for_weak_typed_params():
    windows = {"y": jnp.ones((2, 3)), "truth": 0.5 * jnp.ones((2, 3))}
    params = {"log_weight": jnp.log(2.0)}  # weak-typed float64
    assert params["log_weight"].weak_type
    with compilations() as messages:
        result = fit(
            _ridge_problem,
            _ridge_loss,
            params,
            windows,
            optimiser=optax.adam(0.1),
            solver=ax.GradientDescent(learning_rate=0.5, max_steps=100),
            steps=3,
            batch_size=2,
            warm_start=ColdStart(),
        )
    step = "Compiling jit(indexed_train_step)"
    compiles = [m for m in messages if m.startswith(step)]
    assert len(compiles) == 1, compiles
    weight = result.params["log_weight"]
    assert weight.dtype == jnp.float64 and not weight.weak_type
