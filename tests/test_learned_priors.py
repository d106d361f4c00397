"""Learned priors (energy, denoiser), their networks, and their use in 4DVar.

Float64 where accuracy matters: energies against residuals, gradients and
hypergradients against central finite differences.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import pytest

import assimilax as ax
from assimilax.costs import StrongConstraint4DVar
from assimilax.dynamics import Lorenz96
from assimilax.observations import Observations, ScalarNoise, Stations
from assimilax.priors import (
    ConvAutoencoder1D,
    ConvAutoencoder2D,
    ConvDenoiser1D,
    ConvDenoiser2D,
    DenoiserPrior,
    DiagonalBackground,
    EnergyPrior,
    MLPAutoencoder,
    Precision,
    Standardised,
)


def _networks(key, dtype):
    k = jr.split(key, 6)
    small = dict(width=4, dtype=dtype)
    return [
        (ConvAutoencoder1D(latent_channels=1, depth=2, key=k[0], **small), (16,)),
        (ConvAutoencoder1D(depth=1, periodic=False, key=k[1], **small), (10,)),
        (ConvDenoiser1D(depth=3, key=k[2], **small), (12,)),
        (ConvAutoencoder2D(depth=1, key=k[3], **small), (6, 4)),
        (ConvDenoiser2D(depth=2, periodic=False, key=k[4], **small), (5, 7)),
        (MLPAutoencoder(24, 3, width=8, dtype=dtype, key=k[5]), (4, 6)),
    ]


@eqx.filter_jit
def _outputs(nets, states):
    return [net(x) for net, x in zip(nets, states)]


# Mixed precision both ways: the output follows the state's dtype, under strict
# dtype promotion (float64 weights never promote a float32 state, and back).
@pytest.mark.parametrize(
    "weights, state", [(jnp.float32, jnp.float64), (jnp.float64, jnp.float32)]
)
def test_networks_preserve_shape_and_dtype(weights, state, getkey):
    nets, shapes = zip(*_networks(getkey(), weights))
    states = [jr.normal(getkey(), shape, state) for shape in shapes]
    for net, x, y in zip(nets, states, _outputs(nets, states)):
        assert y.shape == x.shape and y.dtype == state, type(net).__name__
        leaves = jax.tree.leaves(eqx.filter(net, eqx.is_inexact_array))
        assert all(leaf.dtype == weights for leaf in leaves)
        if isinstance(net, ConvDenoiser1D | ConvDenoiser2D):
            # Untrained (zero last layer): the identity.
            assert jnp.array_equal(y, x)


def test_network_gradients_and_vmap(getkey):
    net = ConvAutoencoder1D(width=4, depth=1, dtype=jnp.float32, key=getkey())
    x = jr.normal(getkey(), (3, 8))

    @eqx.filter_jit
    def run(net, x):
        grads = eqx.filter_grad(lambda n: jnp.sum(jax.vmap(n)(x) ** 2))(net)
        return jax.vmap(net)(x), grads

    y, grads = run(net, x)
    assert y.shape == (3, 8) and y.dtype == jnp.float64
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in leaves)
    assert sum(float(jnp.sum(jnp.abs(leaf))) for leaf in leaves) > 0


def test_energy_prior_is_half_squared_residuals(getkey):
    net = ConvAutoencoder1D(width=4, depth=1, key=getkey())
    prior = EnergyPrior(net, 0.7)
    x = jr.normal(getkey(), (16,))
    residuals = prior.residuals(x)
    assert residuals.shape == x.shape
    expected = 0.5 * 0.7 * jnp.sum((x - net(x)) ** 2)
    np.testing.assert_allclose(prior.energy(x), expected, rtol=1e-14)
    np.testing.assert_allclose(prior.energy(x), 0.5 * jnp.sum(residuals**2), rtol=1e-14)


def test_energy_prior_gradient_matches_finite_differences(getkey):
    net = MLPAutoencoder(8, 2, width=16, depth=1, key=getkey())
    prior = EnergyPrior(Standardised(net, 1.5, 2.0), 0.3)
    x, v = jr.normal(getkey(), (8,)), jr.normal(getkey(), (8,))
    h = 1e-5
    fd = (prior.energy(x + h * v) - prior.energy(x - h * v)) / (2 * h)
    directional = jnp.vdot(jax.grad(prior.energy)(x), v)
    # Central differences: O(h²) ~ 1e-10 truncation, 1e-16 / h ~ 1e-11 rounding.
    np.testing.assert_allclose(directional, fd, rtol=1e-8)
    assert abs(float(fd)) > 1e-3


def test_energy_prior_is_zero_for_an_exact_reconstruction():
    prior = EnergyPrior(Standardised(lambda z: z, 2.0, 3.0), 1.0)
    x = jnp.linspace(-1.0, 1.0, 6)
    # Exact up to rounding in the standardisation (x - 2) / 3 * 3 + 2.
    assert float(prior.energy(x)) <= 1e-28


def test_denoiser_prior_energy_and_prox(getkey):
    def shrink(x):  # a linear "denoiser" D(x) = 0.5 x
        return 0.5 * x

    prior = DenoiserPrior(shrink, 2.0, centre=1.0)
    x = jr.normal(getkey(), (5,))
    # RED energy 0.5 w (x - c)ᵀ (x - D(x)).
    expected = 0.5 * 2.0 * jnp.vdot(x - 1.0, x - 0.5 * x)
    np.testing.assert_allclose(prior.energy(x), expected, rtol=1e-14)
    # PnP: x + θ (D(x) - x), θ = step w / (1 + step w) = 0.5 for step 0.5.
    np.testing.assert_allclose(prior.prox(x, 0.5), x + 0.5 * (0.5 * x - x), rtol=1e-14)
    # Large step w: the denoiser's output (classical plug-and-play).
    np.testing.assert_allclose(prior.prox(x, 1e12), 0.5 * x, rtol=1e-10)
    assert isinstance(prior, ax.priors.AbstractProximablePrior)
    with pytest.raises(TypeError, match="not a sum of squares"):
        prior.residuals(x)


def test_standardised_works_in_physical_units(getkey):
    mean, std = jnp.asarray([1.0, -2.0, 3.0]), jnp.asarray([0.5, 2.0, 4.0])
    seen = []

    def spy(z):
        seen.append(z)
        return z

    x = jr.normal(getkey(), (3,))
    np.testing.assert_allclose(Standardised(spy, mean, std)(x), x, rtol=1e-14)
    np.testing.assert_allclose(seen[0], (x - mean) / std, rtol=1e-14)
    # The statistics are frozen: no gradient reaches them.
    net = Standardised(jnp.tanh, mean, std)
    grads = eqx.filter_grad(lambda s: jnp.sum(s(x) ** 3))(net)
    assert float(jnp.abs(grads.mean).sum() + jnp.abs(grads.std).sum()) == 0.0


def test_precision_runs_the_network_in_float32(getkey):
    network = ConvDenoiser1D(width=4, depth=2, key=getkey(), dtype=jnp.float32)
    network = eqx.tree_at(  # a non-identity denoiser (the last layer starts at 0)
        lambda n: n.layers[-1].weight,
        network,
        0.1 * jr.normal(getkey(), network.layers[-1].weight.shape, jnp.float32),
    )
    x = jr.normal(getkey(), (16,))  # float64
    y = Precision(network)(x)
    assert y.dtype == jnp.float64 and y.shape == x.shape
    # Exactly the float32 evaluation, cast back.
    np.testing.assert_array_equal(y, network(x.astype(jnp.float32)).astype(x.dtype))
    # Close to the float64 evaluation, to float32 round-off, not exactly equal.
    error = float(jnp.max(jnp.abs(y - network(x))) / jnp.max(jnp.abs(network(x))))
    assert 0 < error < 1e-5, error
    # Gradients reach the state (in float64) and the weights.
    prior = EnergyPrior(Precision(network), 2.0)
    grad_x = jax.grad(prior.energy)(x)
    assert grad_x.dtype == jnp.float64 and bool(jnp.any(grad_x != 0))
    grads = eqx.filter_grad(lambda p: p.energy(x))(prior)
    assert float(jnp.abs(grads.network.network.layers[-1].weight).sum()) > 0
    with pytest.raises(TypeError, match="dtype"):
        Precision(network, jnp.int32)
    with pytest.raises(TypeError, match="network"):
        Precision(3.0)


# Errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [-1.0, 0.0, jnp.nan])
def test_energy_prior_rejects_nonpositive_weight(weight):
    with pytest.raises(ValueError, match=r"EnergyPrior\(weight=...\) must be > 0"):
        EnergyPrior(lambda x: x, weight)


def test_energy_prior_rejects_non_scalar_weight():
    with pytest.raises(ValueError, match=r"EnergyPrior\(weight=...\) must be a scalar"):
        EnergyPrior(lambda x: x, jnp.ones(2))


def test_energy_prior_rejects_non_callable_network():
    with pytest.raises(TypeError, match=r"EnergyPrior\(network=...\)"):
        EnergyPrior(jnp.ones(3), 1.0)


def test_energy_prior_rejects_shape_changing_network():
    prior = EnergyPrior(lambda x: x[:-1], 1.0)
    with pytest.raises(ValueError, match=r"EnergyPrior\(network=...\) must map"):
        prior.energy(jnp.ones(4))


def test_denoiser_prior_rejects_bad_weight_and_centre():
    with pytest.raises(ValueError, match=r"DenoiserPrior\(weight=...\) must be > 0"):
        DenoiserPrior(lambda x: x, -0.5)
    prior = DenoiserPrior(lambda x: x, 1.0, centre=jnp.ones(3))
    with pytest.raises(ValueError, match=r"DenoiserPrior\(centre=...\)"):
        prior.energy(jnp.ones(4))


def test_networks_reject_bad_states_and_sizes(getkey):
    with pytest.raises(ValueError, match=r"divisible by 2\*\*depth = 4"):
        ConvAutoencoder1D(width=2, depth=2, key=getkey())(jnp.ones(10))
    with pytest.raises(ValueError, match="ConvDenoiser2D takes states of 2"):
        ConvDenoiser2D(width=2, key=getkey())(jnp.ones(8))
    with pytest.raises(ValueError, match=r"MLPAutoencoder\(size=6\)"):
        MLPAutoencoder(6, 2, key=getkey())(jnp.ones(5))
    with pytest.raises(ValueError, match=r"ConvDenoiser1D\(depth=...\) must be"):
        ConvDenoiser1D(depth=1, key=getkey())
    with pytest.raises(ValueError, match=r"ConvAutoencoder2D\(width=...\) must be"):
        ConvAutoencoder2D(width=0, key=getkey())
    with pytest.raises(ValueError, match=r"Standardised\(std=...\) must be > 0"):
        Standardised(lambda x: x, 0.0, jnp.asarray([1.0, 0.0]))


# Inside 4DVar: analysis, Gauss-Newton residuals, hypergradients ---------------------


def _problem(prior):
    n, times = 8, jnp.asarray([0.0, 0.05, 0.1])
    rng = np.random.default_rng(0)
    model = Lorenz96(n=n)
    truth0 = jnp.asarray(8.0 + 3.0 * rng.normal(size=n))
    truth = model.integrate(truth0, times)
    op = Stations.every(2, n)
    values = jax.vmap(op)(truth) + 0.5 * jnp.asarray(rng.normal(size=(3, n // 2)))
    obs = Observations(values, None, times, op, ScalarNoise(0.5))
    background = DiagonalBackground(truth0 + jnp.asarray(rng.normal(size=n)), 1.0)
    problem = StrongConstraint4DVar(model, obs, background, t0=0.0, priors=(prior,))
    return problem, truth0


def _cost(x, problem):
    return problem.cost(x)


def test_energy_prior_in_4dvar_hypergradient_matches_finite_differences(getkey):
    net = Standardised(MLPAutoencoder(8, 3, width=8, key=getkey()), 8.0, 3.0)
    base, truth0 = _problem(EnergyPrior(net, 2.0))
    # A sum of squares: the problem's cost is half its squared residuals.
    x = base.first_guess()
    half = 0.5 * sum(jnp.sum(r**2) for r in jax.tree.leaves(base.residuals(x)))
    np.testing.assert_allclose(base.cost(x), half, rtol=1e-13)

    solver = ax.LBFGS(rtol=1e-13, max_steps=1000)
    implicit = ax.Implicit(linear_solver=lx.CG(rtol=1e-12, atol=1e-12))

    def outer(problem):
        sol = ax.argmin(
            _cost, problem.first_guess(), problem, solver=solver, hypergradient=implicit
        )
        return 0.5 * jnp.sum((sol.value - truth0) ** 2)

    loss = float(outer(base))
    grads = eqx.filter_grad(outer)(base)
    prior_grads = grads.priors[0].network.network
    leaves = jax.tree.leaves(eqx.filter(prior_grads, eqx.is_inexact_array))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 1e-6
    # Frozen statistics: no hypergradient.
    assert float(grads.priors[0].network.mean) == 0.0

    # One scalar: the first bias of the decoder's last layer.
    def where(p):
        return p.priors[0].network.network.decoder.layers[-1].bias

    def perturbed(h):
        bias = where(base)
        return float(outer(eqx.tree_at(where, base, bias.at[0].add(h))))

    h = 1e-4
    fd = (perturbed(h) - perturbed(-h)) / (2 * h)
    grad = float(where(grads)[0])
    # O(h²) truncation ~ 1e-8; solves to 1e-13 contribute ~1e-9 / h.
    assert abs(grad - fd) <= 1e-5 * abs(fd)
    assert abs(fd) > 1e-4 * loss  # a derivative that matters


def test_denoiser_prior_plug_and_play_in_4dvar(getkey):
    # The untrained denoiser is the identity: its RED energy is zero and its PnP
    # step does nothing, so PnP-ISTA must land on the prior-free analysis.
    prior = DenoiserPrior(ConvDenoiser1D(width=4, depth=2, key=getkey()), 1.0)
    problem, _ = _problem(prior)
    pnp = ax.ProximalGradient(
        prox=ax.costs.ProblemProx(), step_size=0.01, max_steps=5000, rtol=1e-9
    )
    x_pnp = ax.argmin(
        lambda x, p: p.smooth_cost(x), problem.first_guess(), problem, solver=pnp
    ).value
    solver = ax.LBFGS(rtol=1e-10, max_steps=500)
    x_red = ax.argmin(_cost, problem.first_guess(), problem, solver=solver).value
    # Gradient-mapping tolerance 1e-9 relative, with step 0.01 on a Hessian of
    # norm ~10: ~1e-8 in x.
    np.testing.assert_allclose(x_pnp, x_red, atol=1e-6)
