"""The window grid of 4DVar problems stays static under `jit` (float64).

A problem is `argmin`'s `args`, so `eqx.filter_jit` traces its array fields. The
time grid must not be one of them: `FixedStepRK4` (Lorenz-96's default) runs a
`lax.scan` only for concrete times and otherwise falls back to diffrax, whose
checkpointed `while` loop makes `value_and_grad` about 3x slower.
"""

import equinox as eqx
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax
from assimilax.costs import StrongConstraint4DVar, WeakConstraint4DVar
from assimilax.dynamics import Lorenz96
from assimilax.observations import Identity, Observations, ScalarNoise
from assimilax.priors import DiagonalBackground


N = 8
DT = 0.05


def _problem(cls=StrongConstraint4DVar, **kwargs):
    model = Lorenz96(n=N)
    x0 = 8.0 + jnp.sin(jnp.arange(N, dtype=jnp.float64))
    times = DT * np.arange(0, 9, 2)  # every other model step: 5 times, 8 steps
    truth = model.integrate(x0, jnp.asarray(times))
    obs = Observations(
        truth + 0.1, None, jnp.asarray(times), Identity(), ScalarNoise(1.0)
    )
    background = DiagonalBackground(x0 + 0.2, 1.0)
    return cls(model, obs, background, **kwargs), x0


def _primitives(jaxpr) -> set[str]:
    # Every primitive, nested jaxprs (scan/while bodies, custom rules) included.
    found = set()
    for eqn in jaxpr.eqns:
        found.add(eqn.primitive.name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found |= _primitives(sub)
    return found


def _cost(x, problem):
    return problem.cost(x)


def test_grid_is_static_tuple():
    problem, _ = _problem()
    assert problem.time_grid == tuple(DT * k for k in range(0, 9, 2))
    assert all(type(t) is float for t in problem.time_grid)
    assert problem.observation_steps == (0, 1, 2, 3, 4)
    # Not leaves: the problem's leaves are exactly those of its parts, so
    # nothing of the grid is traced, differentiated or learned.
    parts = (problem.dynamics, problem.observations, problem.background)
    parts += (problem.priors, problem.control)
    assert len(jax.tree.leaves(problem)) == len(jax.tree.leaves(parts))
    # The array views keep their public form.
    np.testing.assert_allclose(problem.times, DT * np.arange(0, 9, 2), rtol=1e-15)
    assert problem.times.dtype == jnp.float64
    np.testing.assert_array_equal(problem.observation_index, np.arange(5))


def _weak():
    problem, _ = _problem()
    return WeakConstraint4DVar(
        problem.dynamics, problem.observations, problem.background, 0.5
    )


@pytest.mark.parametrize(
    "build", [lambda: _problem()[0], _weak], ids=["strong", "weak"]
)
def test_times_concrete_inside_argmin(build):
    # argmin jits with the problem as `args`; record what `fn` sees while tracing.
    # Tracing is all that matters, so `eval_shape` (no compilation) is enough:
    # argmin's own `filter_jit` still traces the problem's array fields.
    problem = build()
    seen = []

    def fn(x, problem):
        seen.append(isinstance(problem.times, jax.core.Tracer))
        seen.append(isinstance(problem.observation_index, jax.core.Tracer))
        return problem.cost(x)

    def solve(problem):
        solver = ax.LBFGS(max_steps=3)
        return ax.argmin(fn, problem.first_guess(), problem, solver=solver).value

    jax.eval_shape(solve, problem)
    assert seen and not any(seen)


def test_fixed_step_scan_taken_under_filter_jit():
    problem, x0 = _problem()
    value_and_grad = eqx.filter_jit(jax.value_and_grad(_cost))
    jaxpr = eqx.filter_make_jaxpr(jax.value_and_grad(_cost))(x0, problem)[0]
    primitives = _primitives(jaxpr.jaxpr)
    # The scan path: a `scan`, and no diffrax `while` loop (forward or adjoint).
    assert "scan" in primitives and "while" not in primitives, primitives

    # The detector tells the paths apart: with traced times the same model runs
    # diffrax's while loop.
    traced = eqx.filter_make_jaxpr(problem.dynamics.integrate)(x0, problem.times)[0]
    assert "while" in _primitives(traced.jaxpr)

    # Same numbers as the eager (concrete) evaluation: the scan is RK4 as before.
    value, grad = value_and_grad(x0, problem)
    eager_value, eager_grad = jax.value_and_grad(_cost)(x0, problem)
    np.testing.assert_allclose(value, eager_value, rtol=1e-13)
    np.testing.assert_allclose(grad, eager_grad, rtol=1e-12, atol=1e-12)


def test_outer_gradient_through_static_grid():
    # The model forcing F stays a learnable leaf with the grid static: its
    # gradient matches a central difference (step 1e-6, error O(h^2) ~ 1e-12,
    # rounding ~1e-10 relative: 1e-6 tolerance is loose but meaningful).
    problem, x0 = _problem()

    @eqx.filter_jit
    def cost_of(F, problem):
        return eqx.tree_at(lambda p: p.dynamics.F, problem, F).cost(x0)

    F = jnp.asarray(8.0)
    grad = jax.grad(cost_of)(F, problem)
    h = 1e-6
    fd = (cost_of(F + h, problem) - cost_of(F - h, problem)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6)
