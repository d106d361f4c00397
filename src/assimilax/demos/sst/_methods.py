"""The reconstructions compared: climatology, persistence, EOF (DINEOF), optimal
interpolation with a background learnt through the argmin, a learned prior."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optax
import xarray as xr

from ... import bilevel as ax
from ..._progress import TqdmProgress
from ...bilevel import AbstractProblem
from ...costs import ControlVariable, ThreeDVar
from ...learning import Denoising, fit, pretrain_prior, Sequential
from ...observations import Identity, Observations, ScalarNoise
from ...priors import (
    ConvDenoiser2D,
    DiffusionBackground,
    EnergyPrior,
    EOFBasis,
    Precision,
)


# The problems without a learned prior are quadratic: one Gauss-Newton step with
# a tight CG solve is their minimiser.
GAUSS_NEWTON = ax.GaussNewton(
    residuals=lambda control, problem: problem.residuals(control),
    linear_solver=lx.CG(rtol=1e-10, atol=1e-10, max_steps=1000),
    max_steps=3,
    rtol=1e-8,
)
TIMES = np.zeros(1)


# ---------------------------------------------------------------- EOF (DINEOF)


def eof_basis(data: dict, rank: int) -> EOFBasis:
    """The leading `rank` EOFs of the training months' anomalies (ocean only)."""
    train = data["anomaly"][data["blocks"]["train"]]
    return EOFBasis.fit(train, rank, valid=data["ocean"])


@eqx.filter_jit
def eof_analyses(basis: EOFBasis, windows: dict):
    """DINEOF reconstructions of every window, ``(w, ny, nx)``."""

    def one(obs):
        observed = jnp.isfinite(obs)
        return basis.reconstruct(jnp.where(observed, obs, 0.0), observed)

    return jax.lax.map(one, windows["obs"])


# ----------------------------------------------- optimal interpolation (3DVar)


def oi_problem(params: dict, window: dict, noise_std: float, priors=()):
    """3DVar of one month's anomaly: background 0 with the diffusion covariance
    of `params` (``log_std``, ``log_length``), observations where not NaN."""
    observations = Observations(
        window["obs"][None], None, TIMES, Identity(), ScalarNoise(noise_std)
    )
    background = DiffusionBackground(
        jnp.zeros_like(window["obs"]),
        jnp.exp(params["log_std"]),
        jnp.exp(params["log_length"]),
    )
    return ThreeDVar(observations, background, priors=priors, control=ControlVariable())


def _cost(control, problem):
    return problem.cost(control)


def ocean_error(ocean: np.ndarray):
    """The outer loss ``(state, params, window) -> scalar``: the mean-square error
    of the analysis over the `ocean` points."""
    ocean = np.asarray(ocean, bool)
    count = float(ocean.sum())

    def loss(state, params, window):
        error = jnp.where(ocean, state - window["truth"], 0.0)
        return jnp.sum(error**2) / count

    return loss


def learn_oi(train: dict, ocean, noise_std: float, steps: int, key):
    """The background std and length scale learnt by `fit` (`Implicit`) on the
    training windows, from 1 K and 3 grid points."""

    def problem_fn(params, window):
        return oi_problem(params, window, noise_std)

    return fit(
        problem_fn,
        ocean_error(ocean),
        {"log_std": jnp.asarray(0.0), "log_length": jnp.asarray(np.log(3.0))},
        train,
        optimiser=optax.adam(0.1),
        solver=GAUSS_NEWTON,
        hypergradient=ax.Implicit(),
        steps=steps,
        batch_size=8,
        key=key,
    )


@eqx.filter_jit
def analyses(params: dict, windows: dict, noise_std: float, priors, starts, solver):
    """Analyses ``(w, ny, nx)`` of every window and whether each converged; each
    solve starts from `starts` (controls, or `None`: the background)."""

    def one(args):
        window, start = args
        problem = oi_problem(params, window, noise_std, priors)
        start = problem.first_guess() if start is None else start
        sol = ax.argmin(_cost, start, problem, solver=solver, throw=False)
        return problem.to_state(sol.value), sol.value, sol.stats.converged

    return jax.lax.map(one, (windows, starts))


# ------------------------------------------------------------- learned prior

# With the learned prior (evaluated in float32): L-BFGS to a relative gradient
# norm of 1e-5, which float32 round-off in the prior's gradient allows.
LBFGS = ax.LBFGS(rtol=1e-5, max_steps=500)


def pretrain(data: dict, width: int, depth: int, steps: int, key):
    """A `ConvDenoiser2D` (float32) trained to denoise the training months'
    anomalies (`Denoising(noise_std=0.5)`, standardised units); wrapped in
    `Precision` for the float64 problems."""
    keys = jax.random.split(key)
    train = data["anomaly"][data["blocks"]["train"]].astype(np.float32)
    network, history = pretrain_prior(
        ConvDenoiser2D(width=width, depth=depth, key=keys[0], dtype=jnp.float32),
        xr.DataArray(train, dims=("sample", "lat", "lon")),
        objective=Denoising(noise_std=0.5),
        optimiser=optax.adam(optax.cosine_decay_schedule(2e-3, steps)),
        steps=steps,
        batch_size=4,
        key=keys[1],
        validation_every=max(steps // 10, 1),
    )
    return Precision(network), history


def check_prior(network, shape: tuple[int, int]) -> None:
    """The prior's network must map a field of `shape` to one of the same shape.

    **Raises:** `ValueError` naming both shapes (e.g. a network pretrained, and
    standardised, on another grid).
    """
    field = jax.ShapeDtypeStruct(shape, jnp.float64)
    try:
        out = eqx.filter_eval_shape(network, field)
    except Exception as error:  # re-raised with the shapes named
        raise ValueError(
            f"The prior's network does not accept the field's shape {shape}: "
            f"{type(error).__name__}: {error}. Pretrain it on fields of this grid."
        ) from error
    if out.shape != tuple(shape):
        raise ValueError(
            f"The prior's network maps a field of shape {shape} to {out.shape}; it "
            "must keep the shape."
        )


class StartedAt(AbstractProblem):
    """A problem whose inner solve starts from `start` (`fit` calls
    `first_guess`), here the window's OI analysis (its control)."""

    problem: ThreeDVar
    start: jax.Array

    def cost(self, control):
        return self.problem.cost(control)

    def first_guess(self):
        return self.start

    def to_state(self, control):
        return self.problem.to_state(control)


def fine_tune(oi_params, network, weight, train, starts, noise_std, ocean, cfg, key):
    """The network's weights and ``log weight`` learnt end to end through the
    3DVar argmin on the training windows; each solve starts from the window's
    OI analysis (then from its last analysis: `fit`'s warm starts)."""

    def problem_fn(params, window):
        prior = EnergyPrior(params["network"], jnp.exp(params["log_weight"]))
        problem = oi_problem(oi_params, window, noise_std, (prior,))
        return StartedAt(problem, window["start"])

    return fit(
        problem_fn,
        ocean_error(ocean),
        {"network": network, "log_weight": jnp.asarray(np.log(weight))},
        {**train, "start": starts},
        optimiser=optax.adam(cfg.fine_tune_lr),
        solver=LBFGS,
        hypergradient=ax.Implicit(
            linear_solver=lx.CG(rtol=1e-2, atol=1e-8, max_steps=200),
            preconditioner=ax.LBFGSPreconditioner(),
        ),
        steps=cfg.fine_tune_steps,
        batch_size=cfg.batch_size,
        key=key,
        progress=TqdmProgress(),
        batching=Sequential(),
    )
