"""Dynamics: closed-form solutions, reference RK4, invariants, gradients, errors."""

import dataclasses

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.dynamics import (
    AbstractIntegrator,
    AbstractODEDynamics,
    AdvectionDiffusion1D,
    Dirichlet,
    DiscreteDynamics,
    ExactFlow,
    FixedStepRK4,
    Heat1D,
    Heat2D,
    Integrator,
    Lorenz63,
    Lorenz96,
    Periodic,
    RK4,
    TwoScaleLorenz96,
    VectorFieldDynamics,
)
from helpers import rel_error


# An implicit, tolerance-controlled diffrax integration of the (stiff) heat equation,
# to check that the vector field and the closed-form flow describe the same model.
IMPLICIT = Integrator(
    solver=dfx.Kvaerno5(),
    stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10),
    max_steps=20_000,
)
DIFFRAX_RK4 = Integrator(
    solver=RK4(), dt0=0.01, stepsize_controller=dfx.ConstantStepSize()
)
# Whole-integration compiles: far fewer (and faster) than op-by-op dispatch, and
# valid for exact-flow and diffrax models (traced times are supported there).
_integrate = eqx.filter_jit(lambda model, x0, times: model.integrate(x0, times))
TIMES = jnp.array([0.0, 0.003, 0.01, 0.04, 0.1])  # deliberately non-uniform


# --------------------------------------------------------------------------- heat


def _periodic_heat_exact(x, t, kappa):
    """A band-limited field and its exact Fourier solution on [0, 1)."""
    modes = [(0, 0.7), (1, 1.0), (3, -0.5), (7, 0.25)]
    out = 0.0
    for k, a in modes:
        w = 2 * np.pi * k
        out = out + a * np.exp(-kappa * w**2 * t) * np.cos(w * x + 0.3 * k)
    return out


@pytest.mark.parametrize("integrator", [ExactFlow(), IMPLICIT])
def test_heat1d_periodic_matches_fourier_solution(integrator):
    # n = 20 with a (zero) source: the structure of the implicit runs below, so
    # that diffrax's compilation is shared between tests.
    n = 64 if isinstance(integrator, ExactFlow) else 20
    model = Heat1D(n=n, kappa=0.5, source=jnp.zeros(n), integrator=integrator)
    x = model.grid[0]
    t = np.asarray(TIMES)[:, None]
    traj = _integrate(model, jnp.asarray(_periodic_heat_exact(x, 0.0, 0.5)), TIMES)
    exact = _periodic_heat_exact(x[None], t, 0.5)
    # Exact flow: only rounding (~1e-15). Kvaerno5 at rtol=atol=1e-10: its global
    # error stays orders of magnitude below the 1e-6 target.
    tol = 1e-12 if isinstance(integrator, ExactFlow) else 1e-6
    assert rel_error(traj, exact) < tol
    assert traj.shape == (5, n) and traj.dtype == jnp.float64


def test_heat2d_periodic_matches_fourier_solution():
    lengths = (1.0, 2.0)
    model = Heat2D(shape=(32, 16), kappa=0.3, lengths=lengths)
    x, y = np.meshgrid(*model.grid, indexing="ij")
    kx, ky = 2 * np.pi * 2 / lengths[0], 2 * np.pi * 3 / lengths[1]

    def exact(t):
        decay = np.exp(-0.3 * (kx**2 + ky**2) * t)
        return 1.5 + decay * np.sin(kx * x) * np.cos(ky * y + 0.1)

    traj = _integrate(model, jnp.asarray(exact(0.0)), TIMES)
    # Band-limited data and an exact-in-time flow: the error is rounding only.
    assert rel_error(traj, np.stack([exact(t) for t in np.asarray(TIMES)])) < 1e-12


def test_heat1d_dirichlet_matches_sine_series():
    left, right, length, kappa = 1.0, -2.0, 2.0, 0.2
    model = Heat1D(n=31, kappa=kappa, length=length, boundary=Dirichlet(left, right))
    x = model.grid[0]
    assert np.allclose(x, np.arange(1, 32) * length / 32)

    def exact(t):
        steady = left + (right - left) * x / length
        series = sum(
            b
            * np.exp(-kappa * (m * np.pi / length) ** 2 * t)
            * np.sin(m * np.pi * x / length)
            for m, b in [(1, 1.0), (2, -0.4), (5, 0.3)]
        )
        return steady + series

    traj = _integrate(model, jnp.asarray(exact(0.0)), TIMES)
    # The sine series is the exact solution of the PDE, and our basis is that series.
    assert rel_error(traj, np.stack([exact(t) for t in np.asarray(TIMES)])) < 1e-12


def test_heat2d_dirichlet_matches_sine_series():
    model = Heat2D(shape=(15, 23), kappa=0.1, boundary=Dirichlet())
    x, y = np.meshgrid(*model.grid, indexing="ij")
    rate = 0.1 * np.pi**2 * (1 + 4)

    def exact(t):
        return np.exp(-rate * t) * np.sin(np.pi * x) * np.sin(2 * np.pi * y)

    traj = _integrate(model, jnp.asarray(exact(0.0)), TIMES)
    assert rel_error(traj, np.stack([exact(t) for t in np.asarray(TIMES)])) < 1e-12


@pytest.mark.parametrize(
    "boundary", [Periodic(), Dirichlet(0.5, -1.0)], ids=["periodic", "dirichlet"]
)
def test_heat_exact_flow_agrees_with_implicit_integration_with_source(boundary):
    # A rough initial field and a source: both paths integrate the same ODE system,
    # so they agree to the implicit solver's tolerance (rtol = atol = 1e-10).
    rng = np.random.default_rng(0)
    source = jnp.asarray(rng.normal(size=20))
    x0 = jnp.asarray(rng.normal(size=20))
    exact = Heat1D(n=20, kappa=0.05, boundary=boundary, source=source)
    implicit = dataclasses.replace(exact, integrator=IMPLICIT)
    assert (
        rel_error(_integrate(implicit, x0, TIMES), _integrate(exact, x0, TIMES)) < 1e-7
    )


@pytest.mark.parametrize(
    "model",
    [
        Heat1D(n=9, kappa=0.3, source=jnp.linspace(-1.0, 2.0, 9)),
        Heat1D(n=9, kappa=0.3, boundary=Dirichlet(1.0, -1.0), source=jnp.ones(9)),
        Heat2D(shape=(6, 5), kappa=0.2, boundary=Dirichlet(1.0, 2.0)),
        Heat2D(shape=(4, 6), kappa=0.2, source=jnp.ones((4, 6)), lengths=(1.0, 3.0)),
        AdvectionDiffusion1D(n=10, velocity=-0.6, kappa=0.05),
    ],
)
def test_vector_field_is_the_time_derivative_of_the_exact_flow(model, getkey):
    # d/dt of the closed-form flow at t = 0, by forward-mode autodiff (no
    # finite-difference error), must be the tendency, for a rough random field.
    x0 = jax.random.normal(getkey(), model.state_shape)

    def flow(t):
        return model.exact_flow(x0, jnp.stack([jnp.zeros_like(t), t]))[1]

    @jax.jit
    def both(x0):
        _, derivative = jax.jvp(flow, (jnp.array(0.0),), (jnp.array(1.0),))
        return derivative, model.vector_field(0.0, x0)

    derivative, tendency = both(x0)
    assert rel_error(derivative, tendency) < 1e-12


def test_periodic_heat_source_mean_grows_linearly():
    # The mean mode has eigenvalue 0: it must grow by t * mean(source) exactly.
    source = jnp.full(16, 2.0)
    model = Heat1D(n=16, kappa=0.5, source=source)
    traj = _integrate(model, jnp.zeros(16), TIMES)
    assert np.allclose(traj.mean(axis=1), 2.0 * TIMES, rtol=0, atol=1e-14)


@pytest.mark.parametrize(
    "model",
    [
        Heat2D(shape=(8, 6), kappa=0.7),
        # Same structure as the implicit runs above, so diffrax's compile is reused.
        Heat1D(n=20, kappa=0.7, source=jnp.zeros(20), integrator=IMPLICIT),
    ],
    ids=["exact-2d", "implicit-1d"],
)
def test_mass_is_conserved_under_periodic_diffusion(model, getkey):
    x0 = jax.random.normal(getkey(), model.state_shape)
    traj = _integrate(model, x0, TIMES)
    mass = traj.reshape(traj.shape[0], -1).sum(axis=1)
    # The mean mode has eigenvalue 0 (and a zero tendency): rounding only.
    assert np.allclose(mass, x0.sum(), rtol=0, atol=1e-11)


@pytest.mark.parametrize(
    "model",
    [
        Heat1D(n=12, kappa=1.0),
        Heat1D(n=12, kappa=1.0, boundary=Dirichlet(3.0, 3.0)),
        Heat2D(shape=(6, 4), kappa=1.0, boundary=Dirichlet(3.0, 3.0)),
        AdvectionDiffusion1D(n=12, velocity=2.0, kappa=0.1),
        Heat1D(
            n=20,
            kappa=1.0,
            boundary=Dirichlet(3.0, 3.0),
            source=jnp.zeros(20),
            integrator=IMPLICIT,
        ),
    ],
)
def test_constant_field_stays_constant(model):
    x0 = 3.0 * jnp.ones(model.state_shape)
    traj = _integrate(model, x0, TIMES)
    assert np.allclose(traj, 3.0, rtol=0, atol=1e-12)


def test_advection_diffusion_matches_translated_damped_wave():
    velocity, kappa, k = 0.7, 0.01, 2 * np.pi * 3
    model = AdvectionDiffusion1D(n=32, velocity=velocity, kappa=kappa)
    x = model.grid[0]
    times = np.array([0.0, 0.1, 0.5, 1.3])

    def exact(t):
        return np.exp(-kappa * k**2 * t) * np.sin(k * (x - velocity * t))

    traj = _integrate(model, jnp.asarray(exact(0.0)), jnp.asarray(times))
    assert rel_error(traj, np.stack([exact(t) for t in times])) < 1e-12
    # The diffrax path (explicit Tsit5: this grid is not stiff) agrees too.
    tsit = dataclasses.replace(
        model,
        integrator=Integrator(
            stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10)
        ),
    )
    assert rel_error(_integrate(tsit, jnp.asarray(exact(0.0)), times), traj) < 1e-8


# ------------------------------------------------------------------------ Lorenz


def _numpy_rk4(f, x0, dt, steps):
    """Classical RK4 in NumPy: the reference (DAPPER's ``rk4`` is the same scheme)."""
    out, x = [x0], x0
    for _ in range(steps):
        k1 = f(x)
        k2 = f(x + 0.5 * dt * k1)
        k3 = f(x + 0.5 * dt * k2)
        k4 = f(x + dt * k3)
        x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        out.append(x)
    return np.stack(out)


def _l96(F):
    return lambda x: (np.roll(x, -1) - np.roll(x, 2)) * np.roll(x, 1) - x + F


def _l63(s, r, b):
    return lambda x: np.array(
        [s * (x[1] - x[0]), x[0] * (r - x[2]) - x[1], x[0] * x[1] - b * x[2]]
    )


def test_lorenz96_matches_numpy_rk4():
    rng = np.random.default_rng(2)
    x0 = 8.0 + rng.normal(size=40)
    ref = _numpy_rk4(_l96(8.0), x0, 0.05, 40)
    steps = np.array([0, 1, 4, 10, 40])
    traj = Lorenz96(n=40, F=8.0).integrate(jnp.asarray(x0), 0.05 * steps)
    # Same scheme and step: only rounding, amplified by chaos (exp(1.7 * 2) ~ 30).
    assert np.max(np.abs(traj - ref[steps])) < 1e-10


def test_fixed_step_rk4_falls_back_to_diffrax_with_same_values():
    model = Lorenz96(n=12)
    x0 = jnp.asarray(8.0 + np.cos(np.arange(12.0)))
    ref = _numpy_rk4(_l96(8.0), np.asarray(x0), 0.05, 6)
    times = 0.05 * jnp.array([0.0, 2.0, 6.0])
    # Traced times: the step count is unknown at trace time, so diffrax runs RK4.
    traced = jax.jit(lambda x, t: model.integrate(x, t))(x0, times)
    assert np.max(np.abs(traced - ref[[0, 2, 6]])) < 1e-12
    # Times off the step grid: diffrax's RK4 with interpolation, identical values.
    off = jnp.array([0.0, 0.1, 0.12])
    diffrax_rk4 = Lorenz96(
        n=12,
        integrator=Integrator(
            solver=RK4(), dt0=0.05, stepsize_controller=dfx.ConstantStepSize()
        ),
    )
    assert np.array_equal(model.integrate(x0, off), diffrax_rk4.integrate(x0, off))


def test_fixed_step_rk4_scans_numpy_times_inside_jit():
    # Times known at trace time (a NumPy array built inside the jitted function)
    # stay concrete: the scan path, not diffrax's while loop, with RK4's values.
    model = Lorenz96(n=12)
    x0 = jnp.asarray(8.0 + np.cos(np.arange(12.0)))

    def final_sum(x):
        return model.integrate(x, 0.05 * np.array([0.0, 2.0, 6.0]))[-1].sum()

    jaxpr = str(jax.make_jaxpr(jax.grad(final_sum))(x0))
    assert "scan" in jaxpr and "while" not in jaxpr
    ref = _numpy_rk4(_l96(8.0), np.asarray(x0), 0.05, 6)
    np.testing.assert_allclose(jax.jit(final_sum)(x0), ref[6].sum(), rtol=1e-13)


def test_lorenz96_adaptive_matches_fine_rk4_any_n():
    x0 = np.sin(np.arange(7.0))
    ref = _numpy_rk4(_l96(5.0), x0, 1e-3, 500)
    model = Lorenz96(
        n=7,
        F=5.0,
        integrator=Integrator(
            stepsize_controller=dfx.PIDController(rtol=1e-10, atol=1e-10)
        ),
    )
    traj = model.integrate(jnp.asarray(x0), jnp.array([0.0, 0.25, 0.5]))
    # RK4 at dt = 1e-3 has a global error ~1e-11 here; Tsit5 at 1e-10 tolerances too.
    assert np.max(np.abs(traj - ref[[0, 250, 500]])) < 1e-8


def test_lorenz63_matches_numpy_rk4():
    x0 = np.array([1.0, -2.0, 20.0])
    ref = _numpy_rk4(_l63(10.0, 28.0, 8.0 / 3.0), x0, 0.01, 100)
    steps = np.array([0, 3, 50, 100])
    traj = Lorenz63().integrate(jnp.asarray(x0), 0.01 * steps)
    assert np.max(np.abs(traj - ref[steps])) < 1e-10


def test_lorenz96_vmap_jit_and_float32():
    model = Lorenz96(n=10)
    x0 = 8.0 + jnp.linspace(-1, 1, 30).reshape(3, 10)
    times = jnp.array([0.0, 0.05, 0.1])
    batched = eqx.filter_jit(
        jax.vmap(lambda x, t: model.integrate(x, t), in_axes=(0, None))
    )(x0, times)
    refs = [_numpy_rk4(_l96(8.0), np.asarray(x), 0.05, 2) for x in x0]
    assert batched.shape == (3, 3, 10)
    assert np.allclose(batched, np.stack(refs), rtol=1e-13, atol=0)
    low = model.integrate(x0[1].astype(jnp.float32), times)
    assert low.dtype == jnp.float32
    # float32 rounding (~1e-7 relative) over two steps.
    assert np.allclose(low, refs[1], rtol=1e-5)
    for grid_model in (Heat1D(n=8), AdvectionDiffusion1D(n=8)):
        out = grid_model.integrate(jnp.ones(8, jnp.float32), times)
        assert out.dtype == jnp.float32


# --------------------------------------------------------------------- gradients


def _central_difference(fn, h):
    return (fn(h) - fn(-h)) / (2 * h)


def _functional(weights):
    return lambda traj: jnp.sum(weights * jnp.sin(traj))


CASES = [
    # (model, x0, times, names of scalar fields to differentiate)
    (Heat1D(n=16, kappa=0.3), "heat", jnp.array([0.0, 0.01, 0.05]), ["kappa"]),
    (
        Heat1D(n=10, kappa=0.3, boundary=Dirichlet(0.5, 1.0), source=jnp.ones(10)),
        "heat",
        jnp.array([0.0, 0.01, 0.05]),
        ["kappa", "boundary.left", "boundary.right"],
    ),
    (Heat2D(shape=(6, 8), kappa=0.2), "heat", jnp.array([0.0, 0.02]), ["kappa"]),
    (
        AdvectionDiffusion1D(n=16, velocity=0.4, kappa=0.02),
        "heat",
        jnp.array([0.0, 0.3]),
        ["velocity", "kappa"],
    ),
    (Lorenz96(n=12, F=8.0), "l96", jnp.array([0.0, 0.1, 0.4]), ["F"]),
    (  # 20 steps of its default dt = 0.005, non-default parameters.
        TwoScaleLorenz96(K=5, J=3, F=7.5, h=0.7, b=8.0, c=12.0),
        "two-scale",
        jnp.array([0.0, 0.05, 0.1]),
        ["F", "h"],
    ),
    (  # Through diffrax (RK4 in a checkpointed while loop) rather than the scan.
        Lorenz63(integrator=DIFFRAX_RK4),
        "l63",
        jnp.array([0.0, 0.05, 0.2]),
        ["sigma", "rho", "beta"],
    ),
]


def _x0(model, kind):
    rng = np.random.default_rng(3)
    if kind == "l63":
        return jnp.array([1.0, -2.0, 20.0])
    if kind == "two-scale":  # slow variables ~5, fast ones ~0.5
        slow = 5.0 * rng.normal(size=model.K)
        return jnp.asarray(
            np.concatenate([slow, 0.5 * rng.normal(size=model.K * model.J)])
        )
    base = 8.0 if kind == "l96" else 0.0
    return jnp.asarray(base + rng.normal(size=model.state_shape))


def _get(model, name):
    for part in name.split("."):
        model = getattr(model, part)
    return model


@pytest.mark.parametrize("model, kind, times, names", CASES)
def test_gradients_match_central_differences(model, kind, times, names, getkey):
    x0 = _x0(model, kind)
    weights = jax.random.normal(getkey(), (times.shape[0],) + x0.shape)
    loss = _functional(weights)

    # One compiled forward and one compiled gradient (plain jax.grad on the module
    # itself: its array fields are the differentiable parameters).
    value = jax.jit(lambda m, x: loss(m.integrate(x, times)))
    grad_m, grad_x0 = jax.jit(jax.grad(value, argnums=(0, 1)))(model, x0)

    # Central differences: truncation O(h^2) ~ 1e-10 and rounding ~ eps / h ~ 1e-11,
    # relative to O(1) values; 1e-6 leaves room for chaos-amplified curvature.
    def check(derivative, fd, what):
        assert abs(derivative - fd) <= 1e-6 * max(1.0, abs(fd)), what

    direction = jax.random.normal(getkey(), x0.shape)
    fd = _central_difference(lambda h: value(model, x0 + h * direction), 1e-5)
    check(jnp.vdot(grad_x0, direction), fd, "x0")
    for name in names:
        field = _get(model, name)

        def perturbed(h, name=name, field=field):
            return value(eqx.tree_at(lambda m: _get(m, name), model, field + h), x0)

        check(_get(grad_m, name), _central_difference(perturbed, 1e-5), name)


def test_gradient_wrt_source_field_matches_finite_differences(getkey):
    model = Heat1D(n=12, kappa=0.1, source=jnp.zeros(12))
    x0 = jax.random.normal(getkey(), (12,))
    times = jnp.array([0.0, 0.2, 0.5])
    loss = _functional(jax.random.normal(getkey(), (3, 12)))
    grad = eqx.filter_grad(lambda m: loss(m.integrate(x0, times)))(model).source
    direction = jax.random.normal(getkey(), (12,))

    def perturbed(h):
        return loss(
            eqx.tree_at(lambda m: m.source, model, h * direction).integrate(x0, times)
        )

    fd = _central_difference(perturbed, 1e-5)
    assert abs(jnp.vdot(grad, direction) - fd) <= 1e-7 * max(1.0, abs(fd))


# ------------------------------------------------------ bring your own dynamics


def _decay(t, x, rate):
    return -rate * x


def test_vector_field_dynamics_matches_exponential_and_differentiates():
    model = VectorFieldDynamics(
        _decay,
        jnp.array(0.8),
        shape=(3,),
        # Fixed RK4 steps (a scan): global error ~ (0.8 dt)^4 t / 120 ~ 1e-11.
        integrator=FixedStepRK4(dt=0.01),
    )
    x0 = jnp.array([1.0, -2.0, 0.5])
    times = jnp.array([0.0, 0.5, 2.0])
    traj = model.integrate(x0, times)
    exact = np.exp(-0.8 * np.asarray(times))[:, None] * np.asarray(x0)
    assert rel_error(traj, exact) < 1e-10
    grad = eqx.filter_grad(lambda m: m.integrate(x0, times)[-1].sum())(model).params
    # d/drate of sum(x0) exp(-2 rate) = -2 sum(x0) exp(-2 rate).
    assert abs(grad - (-2.0 * x0.sum() * np.exp(-1.6))) < 1e-8
    assert np.allclose(model.vector_field(0.0, x0), -0.8 * x0)


class _Decay(AbstractODEDynamics):
    """A user model by subclassing: fields, a vector field and a closed form."""

    rate: jax.Array
    integrator: AbstractIntegrator = eqx.field(static=True, default=ExactFlow())

    def vector_field(self, t, x, args=None):
        return -self.rate * x

    def exact_flow(self, x0, times):
        return jnp.exp(-self.rate * (times - times[0]))[:, None] * x0[None]


def test_subclassed_dynamics_exact_and_integrated_agree():
    exact = _Decay(jnp.array(0.3))
    rk4 = _Decay(jnp.array(0.3), integrator=FixedStepRK4(dt=0.01))
    x0, times = jnp.array([1.0, 2.0]), jnp.array([0.0, 0.5, 1.0])
    # RK4 at dt = 0.01: global error ~ (0.3 dt)^4 / 120 per unit time ~ 1e-13.
    assert rel_error(rk4.integrate(x0, times), exact.integrate(x0, times)) < 1e-12
    grad = jax.grad(lambda m: m.integrate(x0, times)[-1, 0])(exact).rate
    assert np.isclose(grad, -np.exp(-0.3), rtol=1e-14)  # d/dr exp(-r), at r = 0.3


def test_discrete_dynamics_steps_and_gradient():
    model = DiscreteDynamics(lambda x, a: a * x, dt=0.1, params=jnp.array(0.9))
    x0 = jnp.array([1.0, 2.0])
    times = 0.1 * np.array([0, 3, 5]) + 1.0
    traj = model.integrate(x0, times)
    assert np.allclose(
        traj, np.array([1.0, 0.9**3, 0.9**5])[:, None] * np.asarray(x0), rtol=1e-14
    )
    grad = eqx.filter_grad(lambda m: m.integrate(x0, times)[-1].sum())(model).params
    assert np.isclose(grad, 5 * 0.9**4 * 3.0, rtol=1e-13)
    # A subclass-free way to wrap a Lorenz-96 RK4 step, as DAPPER's step functions.
    l96 = Lorenz96(n=8)
    step = DiscreteDynamics(
        lambda x, m: m.integrate(x, jnp.array([0.0, 0.05]))[-1], 0.05, l96
    )
    x8 = 8.0 + jnp.sin(jnp.arange(8.0))
    assert np.allclose(
        step.integrate(x8, 0.05 * np.arange(4)),
        l96.integrate(x8, 0.05 * jnp.arange(4.0)),
        rtol=1e-12,
    )


# ------------------------------------------------------------------------ errors


def test_time_and_state_errors():
    model = Heat1D(n=128)
    x0 = jnp.zeros(128)
    with pytest.raises(ValueError, match=r"`times` must be 1-D"):
        model.integrate(x0, jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"at least one time"):
        model.integrate(x0, jnp.zeros(0))
    with pytest.raises(ValueError, match=r"`times` must be strictly increasing"):
        model.integrate(x0, jnp.array([0.0, 0.2, 0.1]))
    with pytest.raises(ValueError, match=r"`times` must be strictly increasing"):
        model.integrate(x0, jnp.array([0.0, 0.0]))
    with pytest.raises(ValueError, match=r"`x0` has shape \(64,\) but Heat1D"):
        model.integrate(jnp.zeros(64), jnp.array([0.0, 1.0]))
    with pytest.raises(TypeError, match=r"`x0` must be floating point"):
        model.integrate(jnp.zeros(128, int), jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"`x0` has shape \(3, 3\) but Heat2D"):
        Heat2D(shape=(3, 4)).integrate(jnp.zeros((3, 3)), jnp.array([0.0]))
    with pytest.raises(Exception, match=r"`times` must be strictly increasing"):
        jax.jit(lambda x, t: model.integrate(x, t))(x0, jnp.array([0.0, 0.2, 0.1]))
    # A single time is the initial state.
    assert np.array_equal(
        Lorenz63().integrate(jnp.ones(3), jnp.array([2.0])), jnp.ones((1, 3))
    )


def test_construction_errors():
    with pytest.raises(ValueError, match=r"Heat1D\(kappa=...\) must be >= 0"):
        Heat1D(kappa=-1.0)
    with pytest.raises(ValueError, match=r"Heat1D\(kappa=...\) must be a scalar"):
        Heat1D(kappa=jnp.ones(2))
    with pytest.raises(ValueError, match=r"Heat1D\(n=...\) must be >= 2"):
        Heat1D(n=1)
    with pytest.raises(ValueError, match=r"Heat1D\(length=...\) must be > 0"):
        Heat1D(length=0.0)
    with pytest.raises(ValueError, match=r"Heat1D\(source=...\) has shape \(3,\)"):
        Heat1D(n=4, source=jnp.ones(3))
    # Under pytest, jaxtyping's runtime check catches a wrong type first; both it and
    # our own check (the one users see) name the field.
    with pytest.raises(TypeError, match=r"boundary"):
        Heat2D(boundary="periodic")
    with pytest.raises(ValueError, match=r"Heat2D\(shape=...\) must be two sizes"):
        Heat2D(shape=(4,))
    with pytest.raises(ValueError, match=r"Heat2D\(lengths=...\) must be two lengths"):
        Heat2D(lengths=(1.0, -1.0))
    with pytest.raises(ValueError, match=r"Dirichlet\(left=...\) must be a scalar"):
        Dirichlet(jnp.ones(2))
    with pytest.raises(
        ValueError, match=r"AdvectionDiffusion1D\(kappa=...\) must be >= 0"
    ):
        AdvectionDiffusion1D(kappa=-0.1)
    with pytest.raises(
        ValueError, match=r"AdvectionDiffusion1D\(velocity=...\) must be a"
    ):
        AdvectionDiffusion1D(velocity=jnp.ones(3))
    with pytest.raises(ValueError, match=r"Lorenz96\(n=...\) must be >= 4"):
        Lorenz96(n=3)
    with pytest.raises(ValueError, match=r"Lorenz96\(F=...\) must be a scalar"):
        Lorenz96(F=jnp.ones(2))
    with pytest.raises(TypeError, match=r"Lorenz96 has no closed-form flow"):
        Lorenz96(integrator=ExactFlow())
    with pytest.raises(TypeError, match=r"integrator"):
        Lorenz63(integrator="rk4")


def test_integrator_errors():
    with pytest.raises(ValueError, match=r"FixedStepRK4\(dt=...\) must be > 0"):
        FixedStepRK4(dt=0.0)
    with pytest.raises(ValueError, match=r"Integrator\(solver=RK4\(\)\) has no error"):
        Integrator(solver=RK4())
    with pytest.raises(ValueError, match=r"Integrator\(dt0=...\) is required"):
        Integrator(stepsize_controller=dfx.ConstantStepSize())
    with pytest.raises(ValueError, match=r"Integrator\(dt0=...\) must be > 0"):
        Integrator(dt0=-0.1)
    with pytest.raises(ValueError, match=r"Integrator\(max_steps=...\) must be >= 1"):
        Integrator(max_steps=0)


def test_custom_dynamics_errors():
    with pytest.raises(TypeError, match=r"fn"):
        VectorFieldDynamics(3.0)
    with pytest.raises(TypeError, match=r"step_fn"):
        DiscreteDynamics(3.0, 0.1)
    with pytest.raises(ValueError, match=r"DiscreteDynamics\(dt=...\) must be > 0"):
        DiscreteDynamics(_decay, 0.0)
    model = DiscreteDynamics(lambda x, p: x, 0.1, shape=(2,))
    with pytest.raises(ValueError, match=r"multiples of DiscreteDynamics\(dt=0.1\)"):
        model.integrate(jnp.zeros(2), jnp.array([0.0, 0.15]))
    with pytest.raises(ValueError, match=r"`x0` has shape \(3,\) but DiscreteDynamics"):
        model.integrate(jnp.zeros(3), jnp.array([0.0, 0.1]))
    with pytest.raises(ValueError, match=r"needs concrete `times`"):
        jax.jit(lambda x, t: model.integrate(x, t))(jnp.zeros(2), jnp.array([0.0, 0.1]))
    with pytest.raises(TypeError, match=r"DiscreteDynamics has no vector field"):
        model.vector_field(0.0, jnp.zeros(2))


def test_grid_of_field_models_and_none_otherwise():
    # Models on a spatial grid give their coordinates (for xarray coords); the
    # others say they have none, so callers ask instead of probing.
    assert Heat1D(n=4, length=2.0).grid[0].tolist() == [0.0, 0.5, 1.0, 1.5]
    x, y = Heat2D(shape=(3, 2), boundary=Dirichlet()).grid
    np.testing.assert_allclose(x, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(y, [1 / 3, 2 / 3])
    np.testing.assert_allclose(AdvectionDiffusion1D(n=4).grid[0], [0, 0.25, 0.5, 0.75])
    for model in (Lorenz63(), Lorenz96(n=8), DiscreteDynamics(lambda x, p: x, dt=1.0)):
        assert model.grid is None
