"""Cycled 4DVar with a flow-dependent ``B`` (`FourDVarCycling(covariance=CycledB())`):
the Kalman filter on a linear model, and a better analysis on Lorenz-96."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax
from assimilax.assimilation import (
    AbstractBackgroundCovariance,
    cycle,
    CycledB,
    FourDVarCycling,
    MDA,
    SDA,
    StaticB,
)
from assimilax.dynamics import DiscreteDynamics, Lorenz96
from assimilax.io import twin_experiment
from assimilax.observations import Identity, Linear, Observations, ScalarNoise
from assimilax.priors import CovarianceBackground, DiagonalBackground
from helpers import compilations


SOLVER = ax.LBFGS(rtol=1e-10, max_steps=500)
NOISE = 0.7


def _linear_problem(num_times, seed=0):
    """``x_{k+1} = M x_k`` (3 variables) seen through a 2x3 ``H`` at t = 1, 2, ..."""
    keys = jax.random.split(jax.random.key(seed), 5)
    model_matrix = jnp.eye(3) + 0.3 * jax.random.normal(keys[0], (3, 3))
    model = DiscreteDynamics(lambda x, m: m @ x, dt=1.0, params=model_matrix)
    operator = jax.random.normal(keys[1], (2, 3))
    values = jax.random.normal(keys[2], (num_times, 2))
    times = jnp.arange(1.0, num_times + 1.0)
    observations = Observations(
        values, None, times, Linear(operator), ScalarNoise(NOISE)
    )
    root = jax.random.normal(keys[3], (3, 3))
    covariance = root @ root.T + 0.5 * jnp.eye(3)
    xb = jax.random.normal(keys[4], (3,))
    return model, model_matrix, operator, observations, xb, covariance


def _kalman_filter(m, h, values, xb, covariance, *, lag, inflation, additive):
    """Filter means at t = lag, lag + 1, ... and the covariance at each window
    start (t = 0, 1, ...), written out in numpy: forecast ``m``, then update with
    the observation unless its time is before `lag` (SDA windows of `lag`
    intervals never assimilate those); the next window start's prior is the
    inflated posterior plus `additive` times the first ``B``."""
    m, h, values = np.asarray(m), np.asarray(h), np.asarray(values)
    mean, prior = np.asarray(xb), np.asarray(covariance)
    r = NOISE**2 * np.eye(h.shape[0])
    means, starts = [], [prior]
    for k, y in enumerate(values, start=1):
        mean, prior = m @ mean, m @ prior @ m.T
        if k >= lag:
            gain = prior @ h.T @ np.linalg.inv(h @ prior @ h.T + r)
            mean = mean + gain @ (y - h @ mean)
            prior = (np.eye(3) - gain @ h) @ prior
            means.append(mean)
        if lag == 1:  # the window start is the last analysis time
            prior = inflation * prior + additive * np.asarray(covariance)
            starts.append(prior)
    return np.array(means), starts


@pytest.mark.parametrize("inflation, additive", [(1.0, 0.0), (1.2, 0.05)])
def test_window_of_one_interval_is_the_kalman_filter(inflation, additive):
    model, m, h, observations, xb, b = _linear_problem(8)
    method = FourDVarCycling(
        CovarianceBackground(jnp.zeros(3), b),
        window=1,
        covariance=CycledB(inflation=inflation, additive=additive),
    )
    out = cycle(model, observations, xb, method=method, solver=SOLVER)
    means, starts = _kalman_filter(
        m, h, observations.values, xb, b, lag=1, inflation=inflation, additive=additive
    )
    np.testing.assert_allclose(out["analysis"].values, means, rtol=1e-8, atol=1e-9)
    spreads = [np.sqrt(np.trace(p) / 3) for p in starts[:-1]]
    np.testing.assert_allclose(out["background_spread"].values, spreads, rtol=1e-10)
    assert bool(out["converged"].all())


def test_longer_windows_give_the_kalman_filter_at_their_ends():
    # SDA windows of 3 intervals sliding by one: the window start's analysis is
    # the smoothed state given every observation up to the window end, so its
    # forecast to the end is the filter mean there (no model error: additive=0).
    model, m, h, observations, xb, b = _linear_problem(9, seed=1)
    method = FourDVarCycling(
        DiagonalBackground(jnp.zeros(3), 1.5),
        window=3,
        shift=1,
        covariance=CycledB(additive=0.0),
    )
    out = cycle(model, observations, xb, method=method, solver=SOLVER)
    means, _ = _kalman_filter(
        m,
        h,
        observations.values,
        xb,
        1.5**2 * np.eye(3),
        lag=3,
        inflation=1.0,
        additive=0.0,
    )
    np.testing.assert_allclose(out["time"].values, np.arange(3.0, 10.0))
    np.testing.assert_allclose(out["analysis"].values, means, rtol=1e-8, atol=1e-9)
    # The static B of the same windows is a different (worse-informed) analysis.
    static = FourDVarCycling(DiagonalBackground(jnp.zeros(3), 1.5), window=3, shift=1)
    other = cycle(model, observations, xb, method=static, solver=SOLVER)
    assert np.abs(other["analysis"].values - means).max() > 1e-2
    assert "background_spread" not in other


def _lorenz96_twin(num_obs, seed=0, n=10, every=4):
    model = Lorenz96(n=n)
    keys = jax.random.split(jax.random.key(seed), 3)
    start = 8.0 + 0.01 * jax.random.normal(keys[0], (n,))
    truth0 = model.integrate(start, np.arange(201.0) * 0.05)[-1]
    times = np.arange(num_obs * every + 1.0) * 0.05
    ds = twin_experiment(
        model,
        truth0,
        times,
        Identity(),
        ScalarNoise(1.0),
        keys[1],
        observe_every=every,
    )
    return model, ds, truth0 + jax.random.normal(keys[2], (n,))


# A claim on 300 Lorenz-96 windows (~13 s); the Kalman-filter identities above
# test the method exactly. Run by CI's slow part.
@pytest.mark.slow
def test_cycled_b_beats_the_static_b_on_lorenz96():
    # Lorenz-96 (n=10), observations every 0.2 with unit noise, windows of two
    # intervals: the static B is the background error covariance scale of a
    # tuned 4DVar; the cycled B starts from it and follows the flow.
    model, ds, first_guess = _lorenz96_twin(150)
    background = DiagonalBackground(jnp.zeros(10), 0.6)
    kwargs = dict(solver=ax.LBFGS(rtol=1e-8), noise=ScalarNoise(1.0), burn_in=5.0)
    static = FourDVarCycling(background, window=2, shift=1)
    cycled = FourDVarCycling(
        background, window=2, shift=1, covariance=CycledB(additive=1e-3)
    )
    out_static = cycle(model, ds, first_guess, method=static, **kwargs)
    out_cycled = cycle(model, ds, first_guess, method=cycled, **kwargs)
    assert bool(out_cycled["converged"].all())
    rmse_static, rmse_cycled = out_static.attrs["rmse.a"], out_cycled.attrs["rmse.a"]
    assert rmse_cycled < 0.8 * rmse_static, (rmse_cycled, rmse_static)
    # The cycled B's spread tracks the background error it describes.
    errors = (
        out_cycled["background"].values
        - ds["truth"]
        .sel(time=out_cycled["window_start"].values, method="nearest")
        .values
    )
    later = out_cycled["window_start"].values > 5.0
    rmse_b = np.sqrt((errors[later] ** 2).mean())
    spread = np.sqrt((out_cycled["background_spread"].values[later] ** 2).mean())
    assert 0.5 < spread / rmse_b < 2.0, (spread, rmse_b)


def test_cycled_covariance_errors():
    background = DiagonalBackground(jnp.zeros(4), 1.0)
    # Under the test suite's jaxtyping hook the annotation is checked first; both
    # messages name the argument.
    with pytest.raises(TypeError, match="covariance"):
        FourDVarCycling(background, covariance="cycled")
    with pytest.raises(
        ValueError, match=r"covariance=CycledB\(...\), windows=MDA\(\)\): a cycled B"
    ):
        FourDVarCycling(
            background, window=2, shift=1, windows=MDA(), covariance=CycledB()
        )
    with pytest.raises(ValueError, match=r"covariance=CycledB\(...\)\) needs a 1-D"):
        FourDVarCycling(
            DiagonalBackground(jnp.zeros((2, 2)), 1.0), covariance=CycledB()
        )
    with pytest.raises(ValueError, match=r"CycledB\(inflation=...\) must be .* > 0"):
        CycledB(inflation=0.0)
    with pytest.raises(ValueError, match=r"CycledB\(additive=...\) must be .* >= 0"):
        CycledB(additive=-1.0)
    # Under the jaxtyping hook the annotation is checked first; both messages
    # name the field.
    with pytest.raises(TypeError, match="inflation"):
        CycledB(inflation="1")
    with pytest.raises(TypeError, match="additive"):
        CycledB(additive=None)
    # MDA with shift == window inflates nothing: it is SDA, and a cycled B suits.
    same = FourDVarCycling(background, window=2, windows=MDA(), covariance=CycledB())
    assert same.assimilated == 2


def test_covariance_models_own_their_state():
    # The static model carries nothing and keeps the template's B; the cycled one
    # carries the dense B and builds the window's background from it.
    template = DiagonalBackground(jnp.zeros(3), jnp.array([1.0, 2.0, 3.0]))
    xb = jnp.array([0.5, -0.5, 1.0])
    assert StaticB().init(template) is None and StaticB().spread(None) is None
    static = StaticB().background(template, xb, None)
    assert isinstance(static, DiagonalBackground)
    np.testing.assert_allclose(static.xb, xb)
    np.testing.assert_allclose(static.std, template.std)
    state = CycledB().init(template)
    np.testing.assert_allclose(state, np.diag([1.0, 4.0, 9.0]), atol=1e-12)
    np.testing.assert_allclose(CycledB().spread(state), np.sqrt(14.0 / 3.0))
    cycled = CycledB().background(template, xb, state)
    np.testing.assert_allclose(cycled.covariance_matrix, state, atol=1e-12)
    np.testing.assert_allclose(cycled.xb, xb)
    for model in (StaticB(), CycledB(1.1, 0.0)):
        assert isinstance(model, AbstractBackgroundCovariance)
    assert FourDVarCycling(template).covariance == StaticB()
    assert FourDVarCycling(template).windows == SDA()


def test_equal_options_compile_once():
    # The options are Equinox modules, hashed by structure, and the model's step
    # function (a new `lambda` each time) is compared by its code and closure: a
    # second cycle with equal, newly built objects reuses the compiled scan.
    def run():
        model, _, _, observations, xb, b = _linear_problem(4, seed=2)
        method = FourDVarCycling(
            CovarianceBackground(jnp.zeros(3), b),
            window=2,
            covariance=CycledB(inflation=1.01, additive=0.02),
            windows=SDA(),
        )
        return cycle(model, observations, xb, method=method, solver=SOLVER)

    with compilations() as messages:
        first = run()
        compiled = len(messages)
        second = run()
    scans = [m for m in messages if m.startswith("Compiling jit(_run)")]
    assert compiled > 0 and len(scans) == 1, scans
    again = [m for m in messages[compiled:] if m.startswith("Compiling")]
    assert again == [], again
    np.testing.assert_array_equal(first["analysis"], second["analysis"])
