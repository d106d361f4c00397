"""LISTA: the untrained network is ISTA, and trained it needs far fewer layers.

The problem: a random 20 x 40 dictionary with unit-norm columns, codes with 3
non-zero N(0, 1) entries, noise 0.01, lam = 0.05. The error of both methods is the
normalised squared error to the lasso solutions (computed by FISTA through
`argmin`) on held-out examples, ``sum_i |z_i - z_i*|² / sum_i |z_i*|²``.
"""

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
import numpy as np
import optax
import pytest

from assimilax import argmin, Implicit, ProximalGradient, TqdmProgress, Unrolled
from assimilax.bilevel import L1
from assimilax.learning import ista_iterates, LISTA, train_lista


OBS, CODE, NONZEROS, NOISE, LAM = 20, 40, 3, 0.01, 0.05
NUM_TRAIN, NUM_TEST = 2000, 500


def _observations(rng, D, num):
    support = np.argsort(rng.random((num, CODE)), axis=1)[:, :NONZEROS]
    codes = np.zeros((num, CODE))
    np.put_along_axis(codes, support, rng.normal(size=(num, NONZEROS)), axis=1)
    return codes @ D.T + NOISE * rng.normal(size=(num, OBS))


def _lasso(D, y):
    solver = ProximalGradient(
        prox=L1(weight=LAM),
        step_size=1.0 / jnp.linalg.norm(D, ord=2) ** 2,
        max_steps=10_000,
        rtol=1e-10,
    )
    # Forward solves only (throw=True: every one converged); GMRES because the
    # default Implicit() uses CG, which proximal solvers refuse.
    strategy = Implicit(linear_solver=lx.GMRES(rtol=1e-8, atol=1e-8))

    def fn(z, y_i):
        return 0.5 * jnp.sum((D @ z - y_i) ** 2)

    def solve(y_i):
        return argmin(fn, jnp.zeros(CODE), y_i, solver=solver, hypergradient=strategy)

    return jax.vmap(solve)(y).value


@functools.cache
def problem():
    """Dictionary, training and held-out observations and their lasso solutions."""
    rng = np.random.default_rng(0)
    D = rng.normal(size=(OBS, CODE))
    D /= np.linalg.norm(D, axis=0)
    y = np.vstack([_observations(rng, D, NUM_TRAIN), _observations(rng, D, NUM_TEST)])
    D, y = jnp.asarray(D), jnp.asarray(y)
    z = _lasso(D, y)
    return D, (y[:NUM_TRAIN], z[:NUM_TRAIN]), (y[NUM_TRAIN:], z[NUM_TRAIN:])


def nmse(z, z_star) -> float:
    return float(jnp.sum((z - z_star) ** 2) / jnp.sum(z_star**2))


@functools.cache
def trained():
    """LISTA-16 trained on the training set; returns (net, losses)."""
    D, (y, z), _ = problem()
    steps = 1000
    schedule = optax.cosine_decay_schedule(1e-2, steps, alpha=0.01)
    return train_lista(
        LISTA.from_dictionary(D, LAM, 16),
        y,
        z,
        optimiser=optax.adam(schedule),
        steps=steps,
        batch_size=64,
        key=jr.key(0),
    )


@pytest.mark.parametrize("untied", [False, True])
def test_untrained_lista_is_ista(untied):
    D, _, (y, _) = problem()
    y = y[:20]
    net = LISTA.from_dictionary(D, LAM, 7, untied_inhibition=untied)
    assert net.num_layers == 7 and net.untied_inhibition == untied
    layers = jax.jit(jax.vmap(net.iterates))(y)
    ista = jax.vmap(lambda y_i: ista_iterates(D, LAM, y_i, 7))(y)
    assert layers.shape == ista.shape == (20, 7, CODE)
    # Two algebraically equal forms (W_e y + S z against z - Dᵀ(Dz - y)/L) of
    # size-1 numbers: they differ by rounding only.
    np.testing.assert_allclose(layers, ista, rtol=0, atol=1e-12)
    np.testing.assert_allclose(jax.vmap(net)(y), ista[:, -1], rtol=0, atol=1e-12)
    # `ista_iterates` is the package's ISTA: the same point as `argmin` with
    # ProximalGradient(acceleration=False) stopped after 7 steps.
    solver = ProximalGradient(
        prox=L1(weight=LAM),
        step_size=1.0 / jnp.linalg.norm(D, ord=2) ** 2,
        acceleration=False,
        max_steps=7,
        rtol=0.0,
    )
    fn = lambda z, y_i: 0.5 * jnp.sum((D @ z - y_i) ** 2)  # noqa: E731
    for i in range(3):
        sol = argmin(
            fn, jnp.zeros(CODE), y[i], solver=solver, hypergradient=Unrolled(),
            throw=False,
        )  # fmt: skip
        assert int(sol.stats.num_steps) == 7
        np.testing.assert_allclose(sol.value, ista[i, -1], rtol=0, atol=1e-12)


# A learning claim (~7 s of training): run by CI's slow part.
@pytest.mark.slow
def test_trained_lista_16_reaches_ista_100_on_held_out_data():
    D, _, (y, z_star) = problem()
    net, losses = trained()
    ista = jax.vmap(lambda y_i: ista_iterates(D, LAM, y_i, 100))(y)
    ista_16, ista_100 = nmse(ista[:, 15], z_star), nmse(ista[:, 99], z_star)
    lista_16 = nmse(jax.vmap(net)(y), z_star)
    untrained = nmse(jax.vmap(LISTA.from_dictionary(D, LAM, 16))(y), z_star)
    # Measured (seed 0, float64): ISTA-16 0.324, ISTA-100 0.0261, LISTA-16 0.0074.
    # Issue 4, acceptance 4: LISTA with 16 layers at or below ISTA after 100
    # iterations (a factor 3.5 below it here).
    assert lista_16 <= ista_100, (lista_16, ista_100)
    # Training is what did it: untrained, the same network is ISTA-16, and
    # ISTA-16 is over 40 times worse than trained LISTA-16 (10 asked).
    assert untrained == pytest.approx(ista_16, rel=1e-10)
    assert ista_16 > 10 * lista_16, (ista_16, lista_16)
    assert losses.shape == (1000,) and isinstance(losses, np.ndarray)
    assert np.mean(losses[-50:]) < 0.1 * np.mean(losses[:50])


def test_train_lista_progress_and_dtype(capsys):
    D, (y, z), _ = problem()
    D32, y32, z32 = (a.astype(jnp.float32) for a in (D, y[:64], z[:64]))
    net = LISTA.from_dictionary(D32, LAM, 3)
    assert net.encoder.dtype == net.inhibition.dtype == jnp.float32
    net, losses = train_lista(
        net,
        y32,
        z32,
        optimiser=optax.adam(1e-3),
        steps=5,
        batch_size=32,
        key=jr.key(1),
        progress=TqdmProgress(),
    )
    assert net(y32[0]).dtype == jnp.float32 and losses.shape == (5,)
    assert "train_lista" in capsys.readouterr().err


def test_errors_name_the_field():
    D, (y, z), _ = problem()
    with pytest.raises(ValueError, match=r"from_dictionary\(lam=\.\.\.\) must be > 0"):
        LISTA.from_dictionary(D, -0.1, 4)
    with pytest.raises(ValueError, match=r"num_layers=\.\.\.\) must be an int >= 1"):
        LISTA.from_dictionary(D, LAM, 0)
    net = LISTA.from_dictionary(D, LAM, 2)
    with pytest.raises(ValueError, match=r"one observation of shape \(20,\)"):
        net(jnp.zeros(21))
    options = dict(optimiser=optax.adam(1e-3), steps=2, batch_size=8, key=jr.key(0))
    with pytest.raises(ValueError, match=r"observations=\.\.\.\) must have shape"):
        train_lista(net, y[:, :-1], z, **options)
    with pytest.raises(ValueError, match=r"targets=\.\.\.\) must have shape"):
        train_lista(net, y, z[:, :-1], **options)
    with pytest.raises(ValueError, match=r"batch_size=\.\.\.\) must be an int in"):
        train_lista(net, y[:4], z[:4], **options)
    with pytest.raises(ValueError, match=r"inhibition=\.\.\.\) must have shape"):
        LISTA(net.encoder, net.inhibition, net.thresholds, untied_inhibition=True)
    # A diverging optimiser is reported, not returned as a good-looking network.
    with pytest.raises(FloatingPointError, match="lower the optimiser's learning"):
        train_lista(net, y, z, **(options | dict(optimiser=optax.sgd(1e12), steps=5)))
