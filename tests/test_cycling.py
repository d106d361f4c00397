"""Cycling 3DVar / 4DVar over consecutive windows on a small Lorenz-96 (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import assimilax as ax
from assimilax.assimilation import (
    cycle,
    cycling_statistics,
    FourDVarCycling,
    MDA,
    SDA,
    ThreeDVarCycling,
)
from assimilax.dynamics import DiscreteDynamics, Lorenz96
from assimilax.io import twin_experiment
from assimilax.observations import Identity, Observations, ScalarNoise
from assimilax.priors import DiagonalBackground


N = 10
DT = 0.05
NOISE = 1.0


def _twin(every, num_obs, seed=0):
    model = Lorenz96(n=N)
    keys = jax.random.split(jax.random.key(seed), 3)
    start = 8.0 + 0.01 * jax.random.normal(keys[0], (N,))
    truth0 = model.integrate(start, np.arange(201.0) * DT)[-1]  # on the attractor
    times = np.arange(num_obs * every + 1.0) * DT
    ds = twin_experiment(
        model,
        truth0,
        times,
        Identity(),
        ScalarNoise(NOISE),
        keys[1],
        observe_every=every,
    )
    first_guess = truth0 + 2.0 * jax.random.normal(keys[2], (N,))
    return model, ds, first_guess


def _free_run_rmse(model, ds, first_guess, after):
    # No assimilation: the first guess forecast over the whole run.
    obs_times = ds["time"].values[~np.isnan(ds["obs"].values).all(axis=1)]
    t0 = obs_times[0] - (obs_times[1] - obs_times[0])
    free = model.integrate(first_guess, np.concatenate([[t0], obs_times]))[1:]
    truth = ds["truth"].sel(time=obs_times).values
    rmse = np.sqrt(np.mean((np.asarray(free) - truth) ** 2, axis=1))
    return rmse[obs_times > t0 + after].mean()


SOLVER = ax.LBFGS(rtol=1e-8)


@pytest.mark.parametrize(
    "every, method",
    [
        (1, ThreeDVarCycling(DiagonalBackground(jnp.zeros(N), 0.6))),
        (4, FourDVarCycling(DiagonalBackground(jnp.zeros(N), 0.6), window=2)),
        (4, FourDVarCycling(DiagonalBackground(jnp.zeros(N), 0.6), window=2, shift=1)),
    ],
)
def test_cycling_beats_observations_and_free_run(every, method):
    model, ds, first_guess = _twin(every, num_obs=60)
    out = cycle(
        model,
        ds,
        first_guess,
        method=method,
        solver=SOLVER,
        noise=ScalarNoise(NOISE),
        burn_in=2.0,
    )
    assert bool(out["converged"].all())
    # After burn-in the analysis is well below the observation noise (sd 1; with
    # H = I a pure observation "analysis" would have RMSE ~1) and far below the
    # free run, which decorrelates from the truth within a few time units.
    assert out.attrs["rmse.a"] < 0.6 * NOISE, out.attrs["rmse.a"]
    assert out.attrs["rmse.a"] <= out.attrs["rmse.f"]
    free = _free_run_rmse(model, ds, first_guess, after=2.0)
    assert out.attrs["rmse.a"] < 0.25 * free, (out.attrs["rmse.a"], free)
    # Each window analyses `shift` new observation times, in order.
    assert out.sizes["time"] == out.sizes["window"] * method.shift
    assert np.all(np.diff(out["time"].values) > 0)


def test_statistics_match_numpy():
    model, ds, first_guess = _twin(4, num_obs=12)
    method = FourDVarCycling(DiagonalBackground(jnp.zeros(N), 0.6), window=3)
    out = cycle(
        model,
        ds,
        first_guess,
        method=method,
        solver=SOLVER,
        noise=ScalarNoise(NOISE),
        burn_in=1.0,
    )
    a, f, x = (out[v].values for v in ("analysis", "forecast", "truth"))
    rmse_a = np.sqrt(((a - x) ** 2).mean(axis=1))
    rmse_f = np.sqrt(((f - x) ** 2).mean(axis=1))
    np.testing.assert_allclose(out["rmse.a"], rmse_a, rtol=1e-12)
    np.testing.assert_allclose(out["rmse.f"], rmse_f, rtol=1e-12)
    after = out["time"].values > out.attrs["t0"] + 1.0
    np.testing.assert_allclose(out.attrs["rmse.a"], rmse_a[after].mean(), rtol=1e-12)
    np.testing.assert_allclose(out.attrs["rmse.f"], rmse_f[after].mean(), rtol=1e-12)
    # The truth was taken at the right times, and the first window's forecast is
    # the free forecast of the first guess from t0.
    np.testing.assert_allclose(x, ds["truth"].sel(time=out["time"]).values)
    times = np.concatenate([[out.attrs["t0"]], out["time"].values[:3]])
    free = model.integrate(first_guess, times)[1:]
    np.testing.assert_allclose(f[:3], free, rtol=1e-12, atol=1e-12)
    # Consecutive windows: the next background is this analysis, forecast on.
    np.testing.assert_allclose(
        f[3], model.integrate(a[2], np.array([0.0, 0.2]))[-1], rtol=1e-10
    )


class _Bar:
    def __init__(self, log):
        self.log = log

    def update(self, n=1, **postfix):
        self.log.append(("update", n))

    def close(self):
        self.log.append(("close",))


class _Recording(ax.AbstractProgress):
    """A meter that records what `cycle` tells it."""

    log: list

    def open(self, *, total, initial=0, desc):
        self.log.append(("open", total, desc))
        return _Bar(self.log)


def test_progress_chunks_match_one_scan():
    model, ds, first_guess = _twin(1, num_obs=7)
    method = ThreeDVarCycling(DiagonalBackground(jnp.zeros(N), 0.6))
    kwargs = dict(method=method, solver=SOLVER, noise=ScalarNoise(NOISE))
    whole = cycle(model, ds, first_guess, **kwargs)
    log = []
    chunked = cycle(model, ds, first_guess, progress=_Recording(log), chunk=3, **kwargs)
    np.testing.assert_allclose(chunked["analysis"], whole["analysis"], rtol=1e-12)
    assert chunked.sizes["window"] == whole.sizes["window"] == 8
    # 8 windows in chunks of 3: three updates, the last chunk padded.
    assert log == [("open", 3, "cycle")] + [("update", 1)] * 3 + [("close",)]
    # Without `chunk`, a meter gets its preferred number of updates (at most).
    log.clear()
    cycle(model, ds, first_guess, progress=_Recording(log), **kwargs)
    assert log[0] == ("open", 8, "cycle")  # 20 wanted, 8 windows
    assert ax.NoProgress().preferred_updates == 1
    assert ax.TqdmProgress().preferred_updates == 20
    out = cycle(model, ds, first_guess, progress=ax.TqdmProgress(), chunk=4, **kwargs)
    np.testing.assert_allclose(out["analysis"], whole["analysis"], rtol=1e-12)


def test_cycling_errors():
    model, ds, first_guess = _twin(1, num_obs=5)
    background = DiagonalBackground(jnp.zeros(N), 0.6)
    method = ThreeDVarCycling(background)
    kwargs = dict(solver=SOLVER, noise=ScalarNoise(NOISE))
    # Under the test suite's jaxtyping hook the annotation is checked first; both
    # messages name the argument.
    with pytest.raises(TypeError, match="method"):
        cycle(model, ds, first_guess, method="3dvar", **kwargs)
    with pytest.raises(TypeError, match="progress"):
        cycle(model, ds, first_guess, method=method, progress=True, **kwargs)
    with pytest.raises(ValueError, match="chunk=...\\) must be an int >= 1"):
        cycle(model, ds, first_guess, method=method, chunk=0, **kwargs)
    with pytest.raises(ValueError, match="needs `noise=`"):
        cycle(model, ds, first_guess, method=method, solver=SOLVER)
    with pytest.raises(ValueError, match="x_first_guess=...\\) has shape"):
        cycle(model, ds, first_guess[:3], method=method, **kwargs)
    irregular = ds.copy(deep=True)
    irregular["obs"][2] = np.nan
    with pytest.raises(ValueError, match="must be at regular times"):
        cycle(model, irregular, first_guess, method=method, **kwargs)
    with pytest.raises(ValueError, match="fewer than one window"):
        long = FourDVarCycling(background, window=9)
        cycle(model, ds, first_guess, method=long, **kwargs)
    with pytest.raises(ValueError, match="t0=...\\) must be one observation"):
        cycle(model, ds, first_guess, method=method, t0=-1.0, **kwargs)
    with pytest.raises(ValueError, match="truth=...\\) must hold one state per"):
        cycle(model, ds, first_guess, method=method, truth=np.zeros((3, N)), **kwargs)
    # A truth DataArray is read by dim names (a dim of another name is refused).
    site = ds["truth"].rename(x="site")
    with pytest.raises(
        ValueError, match="`ds\\['truth'\\]` has space dims \\('site',\\)"
    ):
        cycle(model, ds, first_guess, method=method, truth=site, **kwargs)
    with pytest.raises(ValueError, match="window=...\\) must be an int >= 1"):
        FourDVarCycling(background, window=0)
    with pytest.raises(ValueError, match="shift=...\\) must be an int in"):
        FourDVarCycling(background, window=2, shift=3)
    with pytest.raises(TypeError, match="background"):
        ThreeDVarCycling(jnp.zeros(N))
    with pytest.raises(TypeError, match="control"):
        FourDVarCycling(background, control="v")


def test_statistics_errors():
    model, ds, first_guess = _twin(1, num_obs=5)
    method = ThreeDVarCycling(DiagonalBackground(jnp.zeros(N), 0.6))
    out = cycle(
        model, ds, first_guess, method=method, solver=SOLVER, noise=ScalarNoise(1.0)
    )
    with pytest.raises(ValueError, match="has no variable 'truth'"):
        cycling_statistics(out.drop_vars("truth"))
    with pytest.raises(ValueError, match="burn_in=...\\) must be >= 0"):
        cycling_statistics(out, burn_in=-1.0)
    with pytest.raises(ValueError, match="leaves no time to average"):
        cycling_statistics(out, burn_in=100.0)


def _linear_twin(num_times, n=3, seed=0):
    """A linear model x_{k+1} = M x_k observed with noise at t = 1, 2, ..."""
    keys = jax.random.split(jax.random.key(seed), 3)
    matrix = jnp.eye(n) + 0.3 * jax.random.normal(keys[0], (n, n))
    model = DiscreteDynamics(lambda x, m: m @ x, dt=1.0, params=matrix)
    values = jax.random.normal(keys[1], (num_times, n))
    times = jnp.arange(1.0, num_times + 1.0)
    observations = Observations(values, None, times, Identity(), ScalarNoise(0.7))
    return model, matrix, observations, jax.random.normal(keys[2], (n,))


def test_mda_window_matches_closed_form():
    # One window of two intervals, both observations assimilated with R x 2.
    model, m, observations, xb = _linear_twin(2)
    std, r = 1.3, 0.7**2 * 2
    method = FourDVarCycling(
        DiagonalBackground(jnp.zeros(3), std), window=2, shift=1, windows=MDA()
    )
    out = cycle(model, observations, xb, method=method, solver=SOLVER)
    propagators = [m, m @ m]
    hessian = jnp.eye(3) / std**2 + sum(p.T @ p for p in propagators) / r
    rhs = (
        xb / std**2 + sum(p.T @ y for p, y in zip(propagators, observations.values)) / r
    )
    x0 = jnp.linalg.solve(hessian, rhs)
    assert out.sizes["window"] == 1
    np.testing.assert_allclose(out["background"].values[0], xb, rtol=1e-12)
    np.testing.assert_allclose(out["analysis"].values[0], m @ m @ x0, rtol=1e-7)
    np.testing.assert_allclose(out["time"].values, [2.0])


def test_mda_cycles_its_smoothed_state():
    # Two overlapping windows: the second starts from the first's analysis one
    # interval in (at t = 1), which is M x0 of the first window.
    model, m, observations, xb = _linear_twin(3)
    background = DiagonalBackground(jnp.zeros(3), 1.3)
    mda = FourDVarCycling(background, window=2, shift=1, windows=MDA())
    out = cycle(model, observations, xb, method=mda, solver=SOLVER)
    first = cycle(model, _first_two(observations), xb, method=mda, solver=SOLVER)
    x_end = first["analysis"].values[0]  # M² x0 at t = 2
    np.testing.assert_allclose(
        out["background"].values[1], np.linalg.solve(m, x_end), rtol=1e-7
    )
    np.testing.assert_allclose(out["window_start"].values, [0.0, 1.0])
    # With window == shift, MDA and SDA are the same method.
    sda = FourDVarCycling(background, window=1, windows=SDA())
    same = FourDVarCycling(background, window=1, windows=MDA())
    a = cycle(model, observations, xb, method=sda, solver=SOLVER)["analysis"]
    b = cycle(model, observations, xb, method=same, solver=SOLVER)["analysis"]
    np.testing.assert_allclose(a, b, rtol=1e-12)


def _first_two(observations):
    return Observations(
        observations.values[:2],
        None,
        observations.times[:2],
        observations.operator,
        observations.noise,
    )


def test_mda_errors():
    background = DiagonalBackground(jnp.zeros(N), 0.6)
    with pytest.raises(ValueError, match="shift=2 must divide window=3"):
        FourDVarCycling(background, window=3, shift=2, windows=MDA())
    # The jaxtyping hook of the test suite checks the annotation first; both
    # messages name the argument.
    with pytest.raises(TypeError, match="windows"):
        FourDVarCycling(background, window=2, windows="mda")
    with pytest.raises(TypeError, match="windows"):
        FourDVarCycling(background, window=2, windows=True)


def test_window_schemes_own_their_weights():
    # SDA: the last `shift` times at full weight; MDA: all `window` times, R
    # inflated by window / shift (its whitened residual is 1/sqrt(4) smaller).
    assert SDA().assimilated(4, 1) == 1 and SDA().r_inflation(4, 1) == 1.0
    assert MDA().assimilated(4, 1) == 4 and MDA().r_inflation(4, 2) == 2.0
    assert FourDVarCycling(DiagonalBackground(jnp.zeros(3), 1.0)).windows == SDA()
    _, _, observations, _ = _linear_twin(2)
    inflated = MDA().observations(observations, 4, 1)
    residual = jnp.ones(3)
    np.testing.assert_allclose(
        inflated.noise.whiten(residual), observations.noise.whiten(residual) / 2.0
    )
    assert SDA().observations(observations, 4, 1) is observations
    samples = inflated.noise.sample(jax.random.key(0), (20000, 3), jnp.float64)
    # 0.7 * sqrt(4) = 1.4; the sample std of 60000 draws is within 1%.
    np.testing.assert_allclose(samples.std(), 1.4, rtol=1e-2)
