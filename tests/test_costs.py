"""Variational problems (3DVar, 4DVar) and background/prior terms, float64.

Reference answers are closed forms computed with NumPy/SciPy: the BLUE for 3DVar,
the normal equations of the quadratic 4DVar costs with a linear model (exact
propagators by `scipy.linalg.expm`), soft thresholding for an L1 prior, and dense
matrices for the diffusion covariance.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
import scipy.linalg

import assimilax as ax
from assimilax.costs import (
    ControlVariable,
    DirectControl,
    ProblemProx,
    StrongConstraint4DVar,
    ThreeDVar,
    WeakConstraint4DVar,
)
from assimilax.costs._base import check_parts
from assimilax.dynamics import Heat1D
from assimilax.observations import (
    DiagonalNoise,
    Identity,
    Linear,
    Observations,
    ScalarNoise,
    Stations,
)
from assimilax.priors import (
    DiagonalBackground,
    DiffusionBackground,
    ProxPrior,
    Tikhonov,
)
from assimilax.priors._gaussian import check_mean


N, P = 6, 4  # state size, observations per time
TIMES = np.array([0.0, 0.1, 0.25, 0.4])


class LinearDynamics(eqx.Module):
    """A stand-in for `assimilax.dynamics`: ``x' = A x`` with ``A = Q diag(rates) Qᵀ``.

    Exact propagators ``Q diag(exp(rates t)) Qᵀ`` (cheap to compile, unlike `expm`);
    the references use `scipy.linalg.expm(A t)`, an independent computation.
    """

    basis: jax.Array
    rates: jax.Array

    def integrate(self, x0, times):
        def at(t):
            return self.basis @ (
                jnp.exp(self.rates * (t - times[0])) * (self.basis.T @ x0)
            )

        return jax.vmap(at)(times)


def _dynamics(s):
    rates, basis = np.linalg.eigh(s["A"])
    return LinearDynamics(jnp.asarray(basis), jnp.asarray(rates))


def _setup(seed=0, times=TIMES):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(N, N)))
    matrix = (q * np.linspace(-3.0, 0.5, N)) @ q.T  # decaying and growing modes
    H = rng.normal(size=(P, N))
    xb = rng.normal(size=N)
    b_std = rng.uniform(0.5, 1.5, size=N)
    r_std = rng.uniform(0.3, 0.8, size=P)
    values = rng.normal(size=(len(times), P))
    if len(times) > 1:
        values[1, 2] = np.nan  # a missing value: masked out of every term
    return dict(A=matrix, H=H, xb=xb, b_std=b_std, r_std=r_std, y=values, t=times)


def _observations(s):
    return Observations(
        jnp.asarray(s["y"]),
        None,
        jnp.asarray(s["t"]),
        Linear(jnp.asarray(s["H"])),
        DiagonalNoise(jnp.asarray(s["r_std"])),
    )


def _strong(s, **kwargs):
    background = DiagonalBackground(jnp.asarray(s["xb"]), jnp.asarray(s["b_std"]))
    dynamics = _dynamics(s)
    return StrongConstraint4DVar(dynamics, _observations(s), background, **kwargs)


def _strong_closed_form(s, t0):
    # Normal equations (B⁻¹ + Σ Mₖᵀ Hᵀ Rₖ⁻¹ H Mₖ) x = B⁻¹ xb + Σ Mₖᵀ Hᵀ Rₖ⁻¹ yₖ,
    # with Rₖ⁻¹ zeroed where the value is missing.
    lhs = np.diag(1 / s["b_std"] ** 2)
    rhs = s["xb"] / s["b_std"] ** 2
    for t, y in zip(s["t"], s["y"]):
        M = scipy.linalg.expm(s["A"] * (t - t0))
        w = np.where(np.isnan(y), 0.0, 1 / s["r_std"] ** 2)
        HM = s["H"] @ M
        lhs = lhs + HM.T @ (w[:, None] * HM)
        rhs = rhs + HM.T @ (w * np.nan_to_num(y))
    return np.linalg.solve(lhs, rhs)


# Module-level functions (not lambdas in each call) so that argmin's compiled
# programs are reused between calls on problems of the same structure.
def _cost(x, problem):
    return problem.cost(x)


def _residuals(x, problem):
    return problem.residuals(x)


# Gauss-Newton with tight CG: one step on the linear least-squares problems here.
GN = ax.GaussNewton(
    residuals=_residuals, linear_solver=lx.CG(rtol=1e-12, atol=1e-12, max_steps=200)
)


def _smooth(x, problem):
    return problem.smooth_cost(x)


def _solve(problem, x0=None, solver=None, **kwargs):
    solver = solver or ax.LBFGS(rtol=1e-13, max_steps=500)
    x0 = problem.first_guess() if x0 is None else x0
    return ax.argmin(_cost, x0, problem, solver=solver, **kwargs)


def _rel(a, b):
    a, b = np.ravel(np.asarray(a)), np.ravel(np.asarray(b))
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def _half_square(tree):
    return 0.5 * sum(float(jnp.sum(leaf**2)) for leaf in jax.tree.leaves(tree))


# 3DVar ------------------------------------------------------------------------


def _threedvar(s, background=None, **kwargs):
    obs = Observations(
        jnp.asarray(s["y"][:1]),
        None,
        jnp.zeros(1),
        Linear(jnp.asarray(s["H"])),
        DiagonalNoise(jnp.asarray(s["r_std"])),
    )
    if background is None:
        background = DiagonalBackground(jnp.asarray(s["xb"]), jnp.asarray(s["b_std"]))
    return ThreeDVar(obs, background, **kwargs)


def _blue(s, B):
    H, R = s["H"], np.diag(s["r_std"] ** 2)
    gain = B @ H.T @ np.linalg.inv(H @ B @ H.T + R)
    return s["xb"] + gain @ (s["y"][0] - H @ s["xb"])


def _dense(background, n):
    # B is symmetric, so rows and columns agree.
    return np.asarray(jax.vmap(eqx.filter_jit(background.covariance))(jnp.eye(n)))


@pytest.mark.parametrize("solver", ["gd", "lbfgs"])
def test_threedvar_matches_blue(solver):
    s = _setup()
    problem = _threedvar(s)
    if solver == "gd":
        # Step 1/L with L the largest Hessian eigenvalue (dense, small problem).
        hessian = (
            np.diag(1 / s["b_std"] ** 2)
            + s["H"].T @ np.diag(1 / s["r_std"] ** 2) @ s["H"]
        )
        rate = 1 / np.linalg.eigvalsh(hessian).max()
        gd = ax.GradientDescent(learning_rate=rate, max_steps=20000, rtol=1e-13)
        sol = _solve(problem, solver=gd)
    else:
        sol = _solve(problem)
    # Gradient reduced by 1e-13 on a Hessian with condition number ~1e3: 1e-8 holds.
    assert _rel(sol.value, _blue(s, np.diag(s["b_std"] ** 2))) <= 1e-8


def test_control_variable_gives_same_analysis_3dvar_diffusion():
    s = _setup()
    background = DiffusionBackground(jnp.asarray(s["xb"]), 0.9, 1.5, steps=2)
    direct = _threedvar(s, background)
    transformed = _threedvar(s, background, control=ControlVariable())
    xa = _solve(direct).value
    xa_v = transformed.to_state(_solve(transformed, solver=GN).value)
    expected = _blue(s, _dense(background, N))
    assert _rel(xa, expected) <= 1e-8
    assert _rel(xa_v, expected) <= 1e-8


# Strong-constraint 4DVar ---------------------------------------------------------


@pytest.mark.parametrize("t0, control", [(0.0, "direct"), (-0.2, "variable")])
def test_strong_4dvar_matches_closed_form(t0, control):
    s = _setup()
    if control == "direct":
        problem, solver = _strong(s, t0=t0), None  # LBFGS
    else:
        problem, solver = _strong(s, t0=t0, control=ControlVariable()), GN
    # An observation at t0 = 0 is not duplicated in the model grid.
    expected_grid = TIMES if t0 == 0.0 else np.concatenate([[t0], TIMES])
    np.testing.assert_array_equal(problem.times, expected_grid)
    xa = problem.to_state(_solve(problem, solver=solver).value)
    # Exact propagators on both sides; LBFGS to rtol 1e-13 of the gradient, or
    # Gauss-Newton with CG to 1e-12.
    assert _rel(xa, _strong_closed_form(s, t0)) <= 1e-7


def test_strong_4dvar_gauss_newton():
    s = _setup()
    problem = _strong(s, t0=-0.1)
    sol = _solve(problem, solver=GN)
    # A linear least-squares problem: one Gauss-Newton step solves it up to CG.
    assert int(sol.stats.num_steps) <= 2
    assert _rel(sol.value, _strong_closed_form(s, -0.1)) <= 1e-7


def test_single_observation_at_t0_needs_no_integration():
    s = _setup(times=np.array([0.3]))
    problem = _strong(s, t0=0.3)
    assert problem.times.shape == (1,)
    assert _rel(_solve(problem, solver=GN).value, _strong_closed_form(s, 0.3)) <= 1e-7


# Weak-constraint 4DVar -----------------------------------------------------------


def _weak_closed_form(s, q_std, grid):
    # Least squares in the stacked trajectory z = (x_0, ..., x_K): rows
    # B^{-1/2}(x_0 - xb), Q^{-1/2}(x_k - M_k x_{k-1}), R^{-1/2}(H x_{i(t)} - y_t).
    K = len(grid)
    rows, rhs = [], []
    block = np.zeros((N, K * N))
    block[:, :N] = np.diag(1 / s["b_std"])
    rows.append(block)
    rhs.append(s["xb"] / s["b_std"])
    for k in range(1, K):
        M = scipy.linalg.expm(s["A"] * (grid[k] - grid[k - 1]))
        block = np.zeros((N, K * N))
        block[:, k * N : (k + 1) * N] = np.eye(N) / q_std
        block[:, (k - 1) * N : k * N] = -M / q_std
        rows.append(block)
        rhs.append(np.zeros(N))
    for t, y in zip(s["t"], s["y"]):
        k = int(np.argmin(np.abs(grid - t)))
        w = np.where(np.isnan(y), 0.0, 1 / s["r_std"])
        block = np.zeros((P, K * N))
        block[:, k * N : (k + 1) * N] = w[:, None] * s["H"]
        rows.append(block)
        rhs.append(w * np.nan_to_num(y))
    z, *_ = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)
    return z.reshape(K, N)


@pytest.mark.parametrize("grid", [None, np.array([-0.1, 0.0, 0.1, 0.2, 0.25, 0.4])])
def test_weak_4dvar_matches_closed_form(grid):
    s = _setup()
    background = DiagonalBackground(jnp.asarray(s["xb"]), jnp.asarray(s["b_std"]))
    dynamics = _dynamics(s)
    kwargs = {"t0": -0.2} if grid is None else {"times": jnp.asarray(grid)}
    problem = WeakConstraint4DVar(dynamics, _observations(s), background, 0.3, **kwargs)
    grid = np.concatenate([[-0.2], TIMES]) if grid is None else grid
    np.testing.assert_allclose(problem.times, grid)
    sol = _solve(problem, solver=GN)
    assert _rel(sol.value, _weak_closed_form(s, 0.3, grid)) <= 1e-7
    # The first guess is the background forecast: zero model error.
    np.testing.assert_allclose(
        problem.model_errors(problem.first_guess()), 0, atol=1e-13
    )


# cost == 0.5 |residuals|^2 ---------------------------------------------------------


def _problem(name):
    s = _setup()
    diffusion = DiffusionBackground(jnp.asarray(s["xb"]), 0.7, 2.0)
    dynamics = _dynamics(s)
    priors = (Tikhonov(0.3), Tikhonov(0.1, order=2))
    builders = {
        "3dvar": lambda: _threedvar(s, priors=priors),
        "3dvar-cv": lambda: _threedvar(s, diffusion, control=ControlVariable()),
        "strong": lambda: _strong(s, t0=-0.1, priors=priors),
        "strong-cv": lambda: StrongConstraint4DVar(
            dynamics, _observations(s), diffusion, control=ControlVariable()
        ),
        "weak": lambda: WeakConstraint4DVar(
            dynamics, _observations(s), diffusion, jnp.full(N, 0.2), priors=priors
        ),
        # The real heat model: segments integrated under vmap.
        "weak-heat": lambda: WeakConstraint4DVar(
            Heat1D(n=N, kappa=0.05), _observations(s), diffusion, 0.2, t0=-0.1
        ),
    }
    return builders[name]()


@pytest.mark.parametrize(
    "name", ["3dvar", "3dvar-cv", "strong", "strong-cv", "weak", "weak-heat"]
)
def test_cost_is_half_squared_residuals(name, getkey):
    problem = _problem(name)
    guess = problem.first_guess()
    control = guess + jax.random.normal(getkey(), guess.shape)
    cost = float(problem.cost(control))
    components = problem.components(control)
    # Sums of the same squares in another order: agreement to rounding.
    assert abs(cost - _half_square(problem.residuals(control))) <= 1e-12 * cost
    assert abs(cost - sum(float(v) for v in components.values())) <= 1e-12 * cost
    if name not in ("strong-cv", "weak-heat"):
        return  # jit and vmap once per kind of problem (compile time)
    # Jit and vmap over controls (a batch of first guesses).
    batch = jnp.stack([control, guess])
    costs = eqx.filter_jit(lambda p, b: jax.vmap(p.cost)(b))(problem, batch)
    assert abs(float(costs[0]) - cost) <= 1e-12 * cost


def test_problem_built_under_vmap_and_grad(getkey):
    # Backgrounds built from traced values (a batch of windows): the value checks
    # become run-time checks, and the time grid comes from concrete observations.
    s = _setup()
    obs, dynamics = _observations(s), _dynamics(s)

    def cost(xb, x):
        background = DiffusionBackground(xb, 0.7, 2.0)
        problem = StrongConstraint4DVar(
            dynamics, obs, background, t0=-0.1, control=ControlVariable()
        )
        return problem.cost(x)

    xbs, xs = jax.random.normal(getkey(), (2, 3, N))
    costs, grads = jax.jit(jax.vmap(jax.value_and_grad(cost)))(xbs, xs)
    single = jax.jit(jax.value_and_grad(cost))
    for i in range(3):
        value, grad = single(xbs[i], xs[i])
        assert float(costs[i]) == pytest.approx(float(value), rel=1e-12)
        np.testing.assert_allclose(grads[i], grad, rtol=1e-10)


def test_components_names():
    strong = _problem("strong")
    assert set(strong.components(strong.first_guess())) == {
        "background",
        "observations",
        "prior_0",
        "prior_1",
    }
    weak = _problem("weak")
    assert "model_error" in weak.components(weak.first_guess())


def test_states_and_times_threedvar():
    # 3DVar: one state (the analysis of the control) at the first observation
    # time, whatever the control transform.
    problem = _problem("3dvar-cv")
    v = jnp.linspace(-1.0, 1.0, N)
    states, times = problem.states_and_times(v)
    assert states.shape == (1, N) and times.shape == (1,)
    np.testing.assert_allclose(states[0], problem.to_state(v), rtol=1e-14)
    np.testing.assert_allclose(times, [0.0])


def test_states_and_times_strong_4dvar():
    # Strong constraint: the model trajectory from the initial state on the
    # window's grid (t0 = -0.1, then the observation times).
    s = _setup()
    problem = _problem("strong")
    x0 = jnp.asarray(s["xb"]) + 0.1
    states, times = problem.states_and_times(x0)
    np.testing.assert_allclose(times, np.concatenate([[-0.1], TIMES]), rtol=1e-14)
    assert states.shape == (len(TIMES) + 1, N)
    for state, t in zip(states, times):
        expected = scipy.linalg.expm(s["A"] * (float(t) + 0.1)) @ np.asarray(x0)
        np.testing.assert_allclose(state, expected, rtol=1e-10, atol=1e-12)


def test_states_and_times_weak_4dvar():
    # Weak constraint: the control trajectory itself (x_0 transformed by the
    # control variable), on the window's grid.
    problem = _problem("weak")
    control = jnp.arange(len(TIMES) * N, dtype=float).reshape(len(TIMES), N) / 10
    states, times = problem.states_and_times(control)
    np.testing.assert_allclose(times, TIMES, rtol=1e-14)
    np.testing.assert_allclose(states, problem.to_state(control), rtol=1e-14)
    np.testing.assert_allclose(states[1:], control[1:], rtol=1e-14)


# Hypergradients --------------------------------------------------------------------


def _central_difference(f, theta, h):
    return (f(theta + h) - f(theta - h)) / (2 * h)


@pytest.mark.parametrize("which, solver", [("R", "lbfgs"), ("B", "gauss-newton")])
def test_hypergradient_of_analysis_matches_finite_differences(which, solver):
    solver = {"lbfgs": ax.LBFGS(rtol=1e-13, max_steps=500), "gauss-newton": GN}[solver]
    s = _setup()
    base = _strong(s, t0=-0.1)
    base = eqx.tree_at(lambda p: p.observations.noise, base, ScalarNoise(0.5))
    base = eqx.tree_at(
        lambda p: p.background, base, DiagonalBackground(base.background.xb, 1.0)
    )
    where = {
        "R": lambda p: p.observations.noise.std,
        "B": lambda p: p.background.std,
    }[which]
    target = jnp.asarray(np.random.default_rng(1).normal(size=N))
    implicit = ax.Implicit(linear_solver=lx.CG(rtol=1e-12, atol=1e-12))

    def outer(theta):
        problem = eqx.tree_at(where, base, theta)
        xa = _solve(problem, solver=solver, hypergradient=implicit).value
        return 0.5 * jnp.sum((xa - target) ** 2)

    theta = jnp.asarray(0.7)
    grad = float(jax.grad(outer)(theta))
    # h = 1e-4: truncation O(h²) ~ 1e-8 and solve error 1e-13 / h ~ 1e-9.
    fd = float(_central_difference(outer, theta, 1e-4))
    assert abs(grad - fd) <= 1e-6 * max(abs(fd), 1.0)
    assert abs(grad) > 1e-3  # a non-trivial derivative


# With the real models: periodic heat, stations, diffusion B -----------------------


def test_heat_4dvar_with_real_dynamics_and_kappa_hypergradient():
    n, grid = 16, np.array([0.0, 0.01, 0.02, 0.03])
    rng = np.random.default_rng(4)
    y = rng.normal(size=(3, 8))
    obs = Observations(
        jnp.asarray(y),
        None,
        jnp.asarray(grid[1:]),
        Stations.every(2, n),
        ScalarNoise(0.1),
    )
    xb = jnp.asarray(np.sin(2 * np.pi * np.arange(n) / n))
    background = DiffusionBackground(xb, 0.5, 1.5)
    problem = StrongConstraint4DVar(
        Heat1D(n=n, kappa=0.5), obs, background, t0=0.0, control=ControlVariable()
    )
    solver = GN
    xa = problem.to_state(_solve(problem, solver=solver).value)
    # Normal equations with the model's own propagators (the heat model is linear).
    M = jax.jacfwd(lambda x: problem.dynamics.integrate(x, jnp.asarray(grid)))(xb)
    H = np.eye(n)[::2]
    lhs = np.linalg.inv(_dense(background, n))
    rhs = lhs @ np.asarray(xb)
    for k in range(1, 4):
        HM = H @ np.asarray(M[k])
        lhs, rhs = lhs + HM.T @ HM / 0.01, rhs + HM.T @ y[k - 1] / 0.01
    assert _rel(xa, np.linalg.solve(lhs, rhs)) <= 1e-7

    # kappa as an outer-loop parameter: Implicit against central differences.
    implicit = ax.Implicit(linear_solver=lx.CG(rtol=1e-12, atol=1e-12))

    def outer(kappa):
        p = eqx.tree_at(lambda q: q.dynamics.kappa, problem, kappa)
        v = _solve(p, solver=solver, hypergradient=implicit).value
        return jnp.sum(p.to_state(v) ** 2)

    kappa = jnp.asarray(0.5)
    grad = float(jax.grad(outer)(kappa))
    fd = float(_central_difference(outer, kappa, 1e-4))
    # O(h²) truncation ~ 1e-8 relative; solves converged to CG tolerance 1e-12.
    assert abs(grad - fd) <= 1e-6 * abs(fd)


# Background terms -------------------------------------------------------------------


def _periodic_laplacian(n):
    return (
        np.roll(np.eye(n), 1, axis=1) + np.roll(np.eye(n), -1, axis=1) - 2 * np.eye(n)
    )


@pytest.mark.parametrize("shape", [(16,), (6, 8)])
def test_diffusion_background_is_spd(shape, getkey):
    std = 0.5 + jax.random.uniform(getkey(), shape)
    background = DiffusionBackground(jnp.zeros(shape), std, 2.5, spacing=1.0, steps=3)
    covariance = eqx.filter_jit(background.covariance)
    roundtrip = eqx.filter_jit(lambda v: background.whiten(background.to_state(v)))
    for _ in range(3):
        u = jax.random.normal(getkey(), shape)
        v = jax.random.normal(getkey(), shape)
        uBv = float(jnp.vdot(u, covariance(v)))
        Buv = float(jnp.vdot(covariance(u), v))
        assert abs(uBv - Buv) <= 1e-12 * abs(uBv)
        assert float(jnp.vdot(v, covariance(v))) > 0
        # whiten inverts the square root: S⁻¹ S v = v.
        assert _rel(roundtrip(v), v) <= 1e-10
    # The dense matrix: Σ (I - κΔ)^{-2m} Σ / c with a unit-diagonal correlation.
    n = int(np.prod(shape))
    if len(shape) == 1:
        laplacian = _periodic_laplacian(n)
    else:
        laplacian = np.kron(_periodic_laplacian(shape[0]), np.eye(shape[1])) + np.kron(
            np.eye(shape[0]), _periodic_laplacian(shape[1])
        )
    kappa = 2.5**2 / (4 * 3)
    L = np.linalg.matrix_power(np.linalg.inv(np.eye(n) - kappa * laplacian), 3)
    C = L @ L / (L @ L)[0, 0]
    sigma = np.ravel(np.asarray(std))
    expected = sigma[:, None] * C * sigma[None, :]
    # Rows B eᵢ (equal to the columns if B is symmetric, which is checked above).
    B = np.asarray(jax.vmap(covariance)(jnp.eye(n).reshape((n,) + shape)))
    B = B.reshape(n, n)
    np.testing.assert_allclose(B, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.diag(B), sigma**2, rtol=1e-12)
    assert np.linalg.eigvalsh(B).min() > 0


def test_diffusion_correlation_tends_to_gaussian():
    background = DiffusionBackground(jnp.zeros(64), 1.0, 4.0, steps=20)
    row = np.asarray(background.covariance(jnp.zeros(64).at[0].set(1.0)))
    gaussian = np.exp(-(np.arange(9) ** 2) / (2 * 4.0**2))
    # Errors O(1/m) from finitely many steps and O(h²/ℓ²) from the discrete
    # Laplacian: measured 0.019 at lag ℓ for m = 20.
    np.testing.assert_allclose(row[:9], gaussian, atol=0.03)


def test_diagonal_background_terms():
    background = DiagonalBackground(jnp.array([1.0, 2.0]), jnp.array([0.5, 2.0]))
    x = jnp.array([2.0, 0.0])
    assert float(background.energy(x)) == pytest.approx(0.5 * (4.0 + 1.0), rel=1e-15)
    np.testing.assert_allclose(background.to_state(jnp.array([2.0, -1.0])), x)


# Priors -----------------------------------------------------------------------------


def test_tikhonov_energy_and_residuals():
    x = jnp.arange(12.0).reshape(3, 4) ** 2
    prior = Tikhonov(0.3)
    d0, d1 = np.diff(np.asarray(x), axis=0), np.diff(np.asarray(x), axis=1)
    expected = 0.15 * (np.sum(d0**2) + np.sum(d1**2))
    assert float(prior.energy(x)) == pytest.approx(expected, rel=1e-14)
    assert _half_square(prior.residuals(x)) == pytest.approx(expected, rel=1e-14)
    ridge = Tikhonov(2.0, order=0)
    assert float(ridge.energy(x)) == pytest.approx(float(jnp.sum(x**2)), rel=1e-14)


def test_l1_prior_with_proximal_gradient_matches_soft_thresholding():
    rng = np.random.default_rng(3)
    xb, y = rng.normal(size=8), rng.normal(size=8)
    sb, sr, lam = 0.8, 0.5, 1.5
    obs = Observations(
        jnp.asarray(y[None]), None, jnp.zeros(1), Identity(), ScalarNoise(sr)
    )
    background = DiagonalBackground(jnp.asarray(xb), sb)
    problem = ThreeDVar(obs, background, priors=(ProxPrior(ax.bilevel.L1(weight=lam)),))
    precision = 1 / sb**2 + 1 / sr**2
    mean = (xb / sb**2 + y / sr**2) / precision
    expected = np.sign(mean) * np.maximum(np.abs(mean) - lam / precision, 0)
    solver = ax.ProximalGradient(prox=ProblemProx(), step_size=1 / precision)
    sol = ax.argmin(_smooth, problem.first_guess(), problem, solver=solver)
    # Step 1/L on a separable quadratic: converges in a few steps to rounding.
    np.testing.assert_allclose(sol.value, expected, rtol=0, atol=1e-10)
    assert float(problem.nonsmooth_energy(sol.value)) == pytest.approx(
        lam * np.abs(expected).sum(), rel=1e-10
    )
    # The L1 weight inside the problem is learnable: d xa / d lam = -sign(xa) / prec
    # on the support (0 off it), through Implicit on the prox fixed point.
    implicit = ax.Implicit(linear_solver=lx.GMRES(rtol=1e-12, atol=1e-12))
    where = lambda p: p.priors[0].term.weight  # noqa: E731

    def analysis_sum(lam):
        p = eqx.tree_at(where, problem, lam)
        x0 = p.first_guess()
        return jnp.sum(
            ax.argmin(_smooth, x0, p, solver=solver, hypergradient=implicit).value
        )

    grad = float(jax.grad(analysis_sum)(jnp.asarray(lam)))
    assert grad == pytest.approx(-np.sum(np.sign(expected)) / precision, rel=1e-8)
    with pytest.raises(TypeError, match="L1 is not a sum of squares|ProxPrior is not"):
        problem.residuals(sol.value)


# Bad input --------------------------------------------------------------------------


def test_negative_std_raises():
    with pytest.raises(ValueError, match=r"DiagonalBackground\(std=...\) must be > 0"):
        DiagonalBackground(jnp.zeros(3), jnp.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match=r"DiffusionBackground\(std=...\) must be > 0"):
        DiffusionBackground(jnp.zeros(8), 0.0, 2.0)
    with pytest.raises(
        ValueError, match=r"DiffusionBackground\(length_scale=...\) must be > 0"
    ):
        DiffusionBackground(jnp.zeros(8), 1.0, -2.0)


def test_bad_values_raise_under_jit():
    @eqx.filter_jit
    def build(xb, std):
        return DiagonalBackground(xb, std).energy(jnp.ones(3))

    with pytest.raises(
        eqx.EquinoxRuntimeError, match=r"DiagonalBackground\(std=...\) must be > 0"
    ):
        build(jnp.zeros(3), jnp.asarray(-1.0))
    with pytest.raises(
        eqx.EquinoxRuntimeError, match=r"DiagonalBackground\(xb=...\).*NaN"
    ):
        build(jnp.array([0.0, jnp.nan, 1.0]), jnp.asarray(1.0))


def test_nan_background_raises():
    with pytest.raises(ValueError, match=r"DiagonalBackground\(xb=...\).*NaN"):
        DiagonalBackground(jnp.array([0.0, jnp.nan]), 1.0)
    with pytest.raises(ValueError, match=r"DiffusionBackground\(xb=...\).*NaN"):
        DiffusionBackground(jnp.array([0.0, jnp.inf, 1.0]), 1.0, 1.0)


def test_bad_background_shapes_raise():
    with pytest.raises(ValueError, match=r"DiagonalBackground\(std=...\) of shape"):
        DiagonalBackground(jnp.zeros(3), jnp.ones(4))
    with pytest.raises(ValueError, match=r"DiffusionBackground\(xb=...\) must be a 1D"):
        DiffusionBackground(jnp.zeros((2, 2, 2)), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"length_scale=...\) must be a scalar"):
        DiffusionBackground(jnp.zeros(4), 1.0, jnp.ones(4))
    with pytest.raises(ValueError, match=r"DiffusionBackground\(steps=...\)"):
        DiffusionBackground(jnp.zeros(4), 1.0, 1.0, steps=0)
    with pytest.raises(ValueError, match=r"DiffusionBackground\(spacing=...\)"):
        DiffusionBackground(jnp.zeros(4), 1.0, 1.0, spacing=0.0)
    # The jaxtyping hook (pytest only) rejects integers before `check_mean` does.
    with pytest.raises(TypeError, match="parameter 'xb'"):
        DiagonalBackground(jnp.zeros(3, dtype=jnp.int32), 1.0)
    with pytest.raises(TypeError, match=r"X\(xb=...\) must be floating point"):
        check_mean("X", jnp.zeros(3, dtype=jnp.int32))


def test_background_that_does_not_fit_the_observations_raises():
    s = _setup()
    background = DiagonalBackground(jnp.zeros(N + 1), 1.0)
    dynamics = _dynamics(s)
    with pytest.raises(ValueError, match=r"StrongConstraint4DVar\(background=...\)"):
        StrongConstraint4DVar(dynamics, _observations(s), background)
    with pytest.raises(ValueError, match=r"ThreeDVar\(background=...\): states of"):
        ThreeDVar(_observations(s), background)


def test_bad_problem_fields_raise():
    s = _setup()
    obs = _observations(s)
    background = DiagonalBackground(jnp.asarray(s["xb"]), 1.0)
    # Under pytest the jaxtyping hook rejects wrong types first; users (no hook)
    # get the messages of `check_parts`, tested directly.
    with pytest.raises(TypeError, match="parameter 'background'"):
        ThreeDVar(obs, jnp.zeros(N))
    control = DirectControl()
    with pytest.raises(TypeError, match=r"X\(background=...\) must be a background"):
        check_parts("X", jnp.zeros(N), (), control)
    with pytest.raises(TypeError, match=r"X\(priors=...\) must be a tuple"):
        check_parts("X", background, [Tikhonov(1.0)], control)
    with pytest.raises(TypeError, match=r"X\(control=...\) must be DirectControl"):
        check_parts("X", background, (), "v")
    two = (
        ProxPrior(ax.bilevel.L1(weight=1.0)),
        ProxPrior(ax.bilevel.TotalVariation1D(weight=1.0)),
    )
    with pytest.raises(ValueError, match=r"holds 2 proximable priors"):
        ThreeDVar(obs, background, priors=two)
    with pytest.raises(ValueError, match=r"use DirectControl\(\)"):
        ThreeDVar(obs, background, priors=two[:1], control=ControlVariable())
    with pytest.raises(TypeError, match="parameter 'term'"):  # the jaxtyping hook
        ProxPrior(Tikhonov(1.0))
    with pytest.raises(ValueError, match=r"Tikhonov\(weight=...\) must be >= 0"):
        Tikhonov(-1.0)
    with pytest.raises(ValueError, match=r"Tikhonov\(order=...\) must be 0, 1 or 2"):
        Tikhonov(1.0, order=3)
    with pytest.raises(ValueError, match=r"Tikhonov\(weight=...\) must be a scalar"):
        Tikhonov(jnp.ones(2))


def test_window_errors():
    s = _setup()
    obs, dynamics = _observations(s), _dynamics(s)
    background = DiagonalBackground(jnp.asarray(s["xb"]), 1.0)
    with pytest.raises(ValueError, match=r"before the window start t0=0.05"):
        StrongConstraint4DVar(dynamics, obs, background, t0=0.05)
    with pytest.raises(ValueError, match=r"must be on the time grid"):
        WeakConstraint4DVar(
            dynamics, obs, background, 1.0, times=jnp.array([0.0, 0.1, 0.2, 0.4])
        )
    with pytest.raises(ValueError, match=r"WeakConstraint4DVar\(times=...\) must be"):
        WeakConstraint4DVar(dynamics, obs, background, 1.0, times=jnp.array([0.0, 0.0]))
    with pytest.raises(ValueError, match=r"t0=...\) must be times\[0\]"):
        WeakConstraint4DVar(
            dynamics, obs, background, 1.0, t0=-1.0, times=jnp.asarray(TIMES)
        )
    with pytest.raises(ValueError, match=r"model_error_std=...\) must be > 0"):
        WeakConstraint4DVar(dynamics, obs, background, -0.1)
    with pytest.raises(ValueError, match=r"model_error_std=...\) of shape \(5,\)"):
        WeakConstraint4DVar(dynamics, obs, background, jnp.ones(5))

    @jax.jit
    def traced(t0):
        return StrongConstraint4DVar(dynamics, obs, background, t0=t0).cost(
            background.xb
        )

    with pytest.raises(ValueError, match=r"t0=...\) must be concrete"):
        traced(0.0)
