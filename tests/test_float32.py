"""The main paths in float32, JAX's default, with every default as shipped.

The rest of the suite runs in float64 (conftest); these tests switch x64 off, as
a new user's session has it, and check that the defaults (tolerances, backward
solves, finite-difference steps) converge there and give accurate answers.
"""

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import pytest

import assimilax as ax
from assimilax.assimilation import cycle, FourDVarCycling
from assimilax.costs import ProblemProx
from assimilax.demos import heat
from assimilax.dynamics import Lorenz96
from assimilax.io import twin_experiment
from assimilax.learning import fit
from assimilax.observations import Identity, Observations, ScalarNoise
from assimilax.priors import DiagonalBackground


@pytest.fixture(autouse=True)
def float32():
    with jax.enable_x64(False):
        yield


def test_readme_example_agrees_across_strategies():
    # The README's 20 lines, run as a new user runs them (float32).
    y = jnp.sin(jnp.linspace(0, 6, 128)) + 0.3 * jax.random.normal(
        jax.random.key(0), (128,)
    )
    clean = jnp.sin(jnp.linspace(0, 6, 128))

    def inner(x, log_lam):
        smooth = jnp.sum(jnp.diff(x) ** 2)
        return 0.5 * jnp.sum((x - y) ** 2) + 0.5 * jnp.exp(log_lam) * smooth

    def outer(log_lam, hypergradient):
        sol = ax.argmin(
            inner,
            jnp.zeros(128),
            log_lam,
            solver=ax.GradientDescent(learning_rate=0.1, max_steps=2000),
            hypergradient=hypergradient,
        )
        return 0.5 * jnp.sum((sol.value - clean) ** 2)

    theta = jnp.asarray(0.0)
    assert theta.dtype == jnp.float32
    grad = jax.jit(jax.grad(outer), static_argnums=1)
    reference = grad(theta, ax.Implicit())
    assert reference.dtype == jnp.float32
    for strategy in [
        ax.Implicit(linear_solver=lx.CG(rtol=1e-6, atol=1e-6)),
        ax.Unrolled(),
        ax.Truncated(k=50),
    ]:
        value = grad(theta, strategy)
        assert abs(value - reference) <= 1e-3 * abs(reference), (strategy, value)
    forward = jax.jacfwd(outer)(theta, ax.ForwardMode())
    assert abs(forward - reference) <= 1e-3 * abs(reference), forward
    # Finite differences: O(eps^2) plus the perturbed solves' error over the step
    # (was 2% off with perturbed solves to 100 machine epsilons).
    finite = grad(theta, ax.FiniteDifference())
    assert abs(finite - reference) <= 1e-2 * abs(reference), finite


def _heat_problem():
    windows, noise = heat.make_windows(2)
    window = jax.tree.map(lambda a: a[0], windows)
    params = {"log_kappa": jnp.log(jnp.asarray(heat.KAPPA))}
    return heat.make_problem_fn(noise)(params, window)


def _lorenz96_problem():
    model = Lorenz96(20)
    x0 = 8.0 + jax.random.normal(jax.random.key(0), (20,))
    times = np.arange(0.0, 0.21, 0.05)
    trajectory = model.integrate(x0, jnp.asarray(times))
    obs = trajectory + 0.5 * jax.random.normal(jax.random.key(1), trajectory.shape)
    observations = Observations(obs, None, times, Identity(), ScalarNoise(0.5))
    background = DiagonalBackground(
        x0 + 0.5 * jax.random.normal(jax.random.key(2), (20,)), 1.0
    )
    return ax.StrongConstraint4DVar(model, observations, background, t0=0.0)


def _cost(control, problem):
    return problem.cost(control)


def _residuals(control, problem):
    return problem.residuals(control)


# Each solver with its default tolerances and step counts; only the step sizes
# that have no default are set (for Lorenz-96: 1/L with L = 194, the largest
# Hessian eigenvalue at the background).
SOLVERS = {
    "LBFGS": (ax.LBFGS(), _cost),
    "GaussNewton": (ax.GaussNewton(residuals=_residuals), _cost),
}
LORENZ96_SOLVERS = {
    **SOLVERS,
    "GradientDescent": (ax.GradientDescent(learning_rate=0.005), _cost),
    "OptaxSolver": (ax.OptaxSolver(optax.adam(0.05)), _cost),
    "ProximalGradient": (
        ax.ProximalGradient(prox=ProblemProx(), step_size=0.005),
        lambda control, problem: problem.smooth_cost(control),
    ),
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_heat_4dvar_converges_with_defaults(name):
    # 128 points, control variable: float64 defaults (rtol 1e-8) raised
    # `inner_max_steps` here, stalled near |g|/|g0| = 3e-8.
    problem = _heat_problem()
    assert problem.first_guess().dtype == jnp.float32
    solver, fn = SOLVERS[name]
    sol = ax.argmin(fn, problem.first_guess(), problem, solver=solver)
    assert bool(sol.stats.converged)
    assert sol.value.dtype == jnp.float32
    assert float(sol.stats.value) < float(problem.cost(problem.first_guess()))


@pytest.mark.parametrize("name", sorted(LORENZ96_SOLVERS))
def test_lorenz96_4dvar_converges_with_defaults(name):
    problem = _lorenz96_problem()
    solver, fn = LORENZ96_SOLVERS[name]
    sol = ax.argmin(fn, problem.first_guess(), problem, solver=solver)
    assert bool(sol.stats.converged) and sol.value.dtype == jnp.float32
    # The minimiser is the same whichever solver found it (LBFGS's, to 1e-2:
    # float32 gradients at |g|/|g0| ~ 2e-5 on a Hessian of condition 40).
    reference = ax.argmin(_cost, problem.first_guess(), problem, solver=ax.LBFGS())
    error = jnp.linalg.norm(sol.value - reference.value)
    assert float(error) <= 1e-2 * float(jnp.linalg.norm(reference.value))


def test_fit_of_kappa_in_float32():
    # The heat demo's kappa from twice the truth, float32, Gauss-Newton with its
    # default tolerances and `Implicit()` with its default backward CG.
    windows, noise = heat.make_windows(16)
    assert windows["obs"].dtype == jnp.float32
    result = fit(
        heat.make_problem_fn(noise),
        heat.analysis_error,
        {"log_kappa": jnp.log(jnp.asarray(2 * heat.KAPPA))},
        windows,
        optimiser=optax.adam(0.05, b1=0.5),
        solver=ax.GaussNewton(residuals=_residuals),
        steps=40,
        batch_size=16,
    )
    kappa = float(jnp.exp(result.params["log_kappa"]))
    assert result.params["log_kappa"].dtype == jnp.float32
    assert result.stopped is None
    assert int(result.history["inner_failures"].sum()) == 0
    assert abs(kappa - heat.KAPPA) / heat.KAPPA < 0.02, kappa


def _cycle_rmse():
    model = Lorenz96(n=10)
    keys = jax.random.split(jax.random.key(0), 3)
    start = 8.0 + 0.01 * jax.random.normal(keys[0], (10,))
    truth0 = model.integrate(start, jnp.arange(201.0) * 0.05)[-1]
    times = np.arange(61.0) * 0.05
    ds = twin_experiment(
        model, truth0, times, Identity(), ScalarNoise(1.0), keys[1], observe_every=1
    )
    first_guess = truth0 + 2.0 * jax.random.normal(keys[2], (10,))
    method = FourDVarCycling(DiagonalBackground(jnp.zeros(10), 0.6), window=2)
    out = cycle(
        model,
        ds,
        first_guess,
        method=method,
        solver=ax.LBFGS(),
        noise=ScalarNoise(1.0),
        burn_in=0.5,
    )
    return float(out["rmse.a"].mean()), out


def test_cycle_lorenz96_matches_float64():
    rmse32, out = _cycle_rmse()
    assert out["analysis"].dtype == np.float32
    with jax.enable_x64(True):
        rmse64, out64 = _cycle_rmse()
    assert out64["analysis"].dtype == np.float64
    assert abs(rmse32 - rmse64) <= 0.05 * rmse64, (rmse32, rmse64)
