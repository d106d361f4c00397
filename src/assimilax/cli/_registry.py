"""The only map from config names to library objects, with every option declared.

One `Family` per config section that selects a choice by name: models,
observation operators, backgrounds, priors, problems, inner solvers,
hypergradient strategies and outer optimisers. ``docs/cli.md`` documents each
option listed here (a test checks it).
"""

import diffrax as dfx
import lineax as lx
import numpy as np
import optax
import xarray as xr

from .. import bilevel as bl, learning
from .._progress import NoProgress, TqdmProgress
from ..costs import StrongConstraint4DVar, ThreeDVar, WeakConstraint4DVar
from ..dynamics import (
    AdvectionDiffusion1D,
    Dirichlet,
    FixedStepRK4,
    Heat1D,
    Heat2D,
    Lorenz63,
    Lorenz96,
    Periodic,
)
from ..observations import Identity, Mask, Stations
from ..priors import (
    CovarianceBackground,
    DiagonalBackground,
    DiffusionBackground,
    Tikhonov,
)
from ._options import Choice, exactly_one, Family, FRACTION, Option, UNIT_INTERVAL
from ._table import Bound, ConfigError, NONNEGATIVE, POSITIVE


AT_LEAST_1 = Bound(">=", 1)
AT_LEAST_2 = Bound(">=", 2)


# --- models -------------------------------------------------------------------


def _boundary(o):
    if o["boundary"] == "periodic":
        return Periodic()
    return Dirichlet(o["left"], o["right"])


def _check_boundary(o, where):
    if o["boundary"] == "periodic" and (o["left"] != 0 or o["right"] != 0):
        raise ConfigError(
            f"{where}.left/right are the values of boundary = 'dirichlet'; "
            "they do not apply to boundary = 'periodic'"
        )
    return o


KAPPA = Option("kappa", "number", 1.0, NONNEGATIVE, learnable=True, help="diffusivity")
BOUNDARY = (
    Option("boundary", "string", "periodic", choices=("periodic", "dirichlet")),
    Option("left", "number", 0.0, help="Dirichlet value at x = 0"),
    Option("right", "number", 0.0, help="Dirichlet value at x = L"),
)
N = Option("n", "integer", 128, AT_LEAST_2, help="grid points")
LENGTH = Option("length", "number", 1.0, POSITIVE, help="domain length")

MODELS = Family(
    "model",
    "name",
    {
        "heat1d": Choice(
            "heat1d",
            lambda o: Heat1D(
                n=o["n"], kappa=o["kappa"], length=o["length"], boundary=_boundary(o)
            ),
            (N, KAPPA, LENGTH, *BOUNDARY),
            "1D heat equation (spectral, exact in time)",
            _check_boundary,
        ),
        "heat2d": Choice(
            "heat2d",
            lambda o: Heat2D(
                shape=tuple(o["shape"]),
                kappa=o["kappa"],
                lengths=tuple(o["lengths"]),
                boundary=_boundary(o),
            ),
            (
                Option("shape", "integers", (64, 64), AT_LEAST_2, length=2),
                KAPPA,
                Option("lengths", "numbers", (1.0, 1.0), POSITIVE, length=2),
                *BOUNDARY,
            ),
            "2D heat equation",
            _check_boundary,
        ),
        "advection_diffusion1d": Choice(
            "advection_diffusion1d",
            lambda o: AdvectionDiffusion1D(
                n=o["n"], velocity=o["velocity"], kappa=o["kappa"], length=o["length"]
            ),
            (
                N,
                Option("velocity", "number", 1.0, learnable=True),
                Option("kappa", "number", 0.01, NONNEGATIVE, learnable=True),
                LENGTH,
            ),
            "periodic advection-diffusion",
        ),
        "lorenz63": Choice(
            "lorenz63",
            lambda o: Lorenz63(
                sigma=o["sigma"],
                rho=o["rho"],
                beta=o["beta"],
                integrator=FixedStepRK4(dt=o["dt"]),
            ),
            (
                Option("sigma", "number", 10.0, POSITIVE, learnable=True),
                Option("rho", "number", 28.0, POSITIVE, learnable=True),
                Option("beta", "number", 8.0 / 3.0, POSITIVE, learnable=True),
                Option("dt", "number", 0.01, POSITIVE, help="RK4 step"),
            ),
            "Lorenz (1963)",
        ),
        "lorenz96": Choice(
            "lorenz96",
            lambda o: Lorenz96(n=o["n"], F=o["F"], integrator=FixedStepRK4(dt=o["dt"])),
            (
                Option("n", "integer", 40, Bound(">=", 4)),
                Option("F", "number", 8.0, learnable=True),
                Option("dt", "number", 0.05, POSITIVE, help="RK4 step"),
            ),
            "Lorenz (1996)",
        ),
    },
)


# --- observation operators ----------------------------------------------------


def model_grid(model) -> tuple[np.ndarray, ...]:
    """Coordinates of the model's grid along each axis (indices if it has none)."""
    if model.grid is not None:
        return tuple(np.asarray(axis, float) for axis in model.grid)
    return tuple(np.arange(n, dtype=float) for n in model.state_shape)


def _stations(o, model):
    shape = tuple(model.state_shape)
    if o["every"] is not None:
        return Stations.every(o["every"], shape, offset=o["offset"])
    if o["indices"] is not None:
        return Stations(np.asarray(o["indices"]), grid_shape=shape)
    return Stations.nearest(np.asarray(o["positions"], float), model_grid(model))


def _check_stations(o, where):
    which = exactly_one(o, ("every", "indices", "positions"), where)
    if which == "every" and o["offset"] >= o["every"]:
        raise ConfigError(f"{where}.offset must be < every ({o['every']})")
    for key in ("indices", "positions"):
        value = o[key]
        if value is not None and (not isinstance(value, list) or not value):
            raise ConfigError(f"{where}.{key} must be a non-empty list, got {value!r}")
    if o["indices"] is not None:
        array = np.asarray(o["indices"], dtype=object)
        if not all(isinstance(i, int) and i >= 0 for i in array.ravel()):
            raise ConfigError(
                f"{where}.indices must hold grid indices (integers >= 0): [i, ...] "
                "on a 1D grid, [[i, j], ...] on a 2D grid"
            )
    if o["positions"] is not None:
        # TOML has `nan` and `inf`: without this check they would reach
        # `Stations.nearest`, whose message does not name the key.
        array = np.asarray(o["positions"], dtype=object)
        numbers = all(
            isinstance(p, (int, float)) and not isinstance(p, bool)
            for p in array.ravel()
        )
        if not numbers or not np.isfinite(array.astype(float)).all():
            raise ConfigError(
                f"{where}.positions must hold finite coordinates (no nan or inf): "
                "[x, ...] on a 1D grid, [[x, y], ...] on a 2D grid"
            )
    return o


def _mask(o, model):
    shape = tuple(model.state_shape)
    mask = np.random.default_rng(o["seed"]).random(shape) < o["fraction"]
    mask.flat[0] = mask.flat[0] or not mask.any()  # never an empty network
    return Mask(mask)


OPERATORS = Family(
    "observations",
    "operator",
    {
        "identity": Choice("identity", lambda o, model: Identity(), (), "every point"),
        "stations": Choice(
            "stations",
            _stations,
            (
                Option("every", "integer", None, AT_LEAST_1),
                Option("offset", "integer", 0, NONNEGATIVE),
                Option("indices", "raw", None),
                Option("positions", "raw", None),
            ),
            "point observations at grid points",
            _check_stations,
        ),
        "mask": Choice(
            "mask",
            _mask,
            (
                Option("fraction", "number", bound=FRACTION),
                Option("seed", "integer", 0, NONNEGATIVE),
            ),
            "a random gappy field",
        ),
    },
    common=(Option("noise_std", "number_or_numbers", bound=POSITIVE, learnable=True),),
    default="identity",
)


# --- backgrounds and priors ---------------------------------------------------


def as_array(value):
    """A list option (a tuple) as a NumPy array; numbers and traced values as is."""
    return np.asarray(value, float) if isinstance(value, tuple) else value


def _covariance(o, where):
    which = exactly_one(o, ("matrix", "file"), where)
    if which == "file":
        try:
            with xr.open_dataset(o["file"]) as ds:
                matrix = np.asarray(ds[o["variable"]].values, float)
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(
                f"{where}.file: cannot read variable {o['variable']!r} from "
                f"{o['file']}: {error}"
            ) from None
    else:
        try:
            matrix = np.asarray(o["matrix"], float)
        except (TypeError, ValueError):
            matrix = np.zeros(0)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ConfigError(
            f"{where}: the covariance must be a square matrix, got shape {matrix.shape}"
        )
    return {**o, "matrix": matrix}


BACKGROUNDS = Family(
    "background",
    "kind",
    {
        "diagonal": Choice(
            "diagonal",
            lambda o, xb: DiagonalBackground(xb, as_array(o["std"])),
            (Option("std", "number_or_numbers", bound=POSITIVE, learnable=True),),
            "uncorrelated errors, B = diag(std^2)",
        ),
        "diffusion": Choice(
            "diffusion",
            lambda o, xb: DiffusionBackground(
                xb, o["std"], o["length_scale"], spacing=o["spacing"], steps=o["steps"]
            ),
            (
                Option("std", "number", bound=POSITIVE, learnable=True),
                Option("length_scale", "number", bound=POSITIVE, learnable=True),
                Option("spacing", "number", 1.0, POSITIVE),
                Option("steps", "integer", 2, AT_LEAST_1),
            ),
            "correlated errors through a diffusion operator (periodic grid)",
        ),
        "covariance": Choice(
            "covariance",
            lambda o, xb: CovarianceBackground(xb, o["matrix"]),
            (
                Option("matrix", "raw", None),
                Option("file", "path", None),
                Option("variable", "string", "covariance"),
            ),
            "a full B matrix (small states)",
            _covariance,
        ),
    },
    common=(Option("mean", "number_or_numbers", 0.0),),
)

PRIORS = Family(
    "prior",
    "kind",
    {
        "tikhonov": Choice(
            "tikhonov",
            lambda o: Tikhonov(o["weight"], order=o["order"]),
            (
                Option("weight", "number", bound=NONNEGATIVE, learnable=True),
                Option("order", "integer", 1, (NONNEGATIVE, Bound("<=", 2))),
            ),
            "0.5 weight |D^order x|^2",
        ),
    },
)


# --- variational problems -----------------------------------------------------

T0 = Option("t0", "number", None, help="window start; default the first data time")

PROBLEMS = Family(
    "problem",
    "kind",
    {
        "strong4dvar": Choice(
            "strong4dvar",
            lambda o, model, obs, background, priors, control: StrongConstraint4DVar(
                model, obs, background, t0=o["t0"], priors=priors, control=control
            ),
            (T0,),
        ),
        "weak4dvar": Choice(
            "weak4dvar",
            lambda o, model, obs, background, priors, control: WeakConstraint4DVar(
                model,
                obs,
                background,
                o["model_error_std"],
                t0=o["t0"],
                priors=priors,
                control=control,
            ),
            (T0, Option("model_error_std", "number", bound=POSITIVE, learnable=True)),
        ),
        "3dvar": Choice(
            "3dvar",
            lambda o, model, obs, background, priors, control: ThreeDVar(
                obs, background, priors=priors, control=control
            ),
            (Option("analysis_time", "number", None),),
        ),
    },
    common=(Option("control", "string", "variable", choices=("variable", "state")),),
    default="strong4dvar",
)


# --- inner solvers ------------------------------------------------------------


def problem_residuals(control, problem):
    """The problem's whitened residuals (what `GaussNewton` minimises)."""
    return problem.residuals(control)


def _tolerances(max_steps, rtol):
    return (
        Option("max_steps", "integer", max_steps, AT_LEAST_1),
        Option("rtol", "number", rtol, NONNEGATIVE),
        Option("atol", "number", 0.0, NONNEGATIVE),
    )


def _steps(o):
    return {k: o[k] for k in ("max_steps", "rtol", "atol")}


SOLVERS = Family(
    "solver",
    "name",
    {
        "gauss_newton": Choice(
            "gauss_newton",
            lambda o: bl.GaussNewton(
                residuals=problem_residuals,
                linear_solver=lx.CG(
                    rtol=o["cg_rtol"], atol=o["cg_atol"], max_steps=o["cg_max_steps"]
                ),
                damping=o["damping"],
                **_steps(o),
            ),
            (
                *_tolerances(50, 1e-8),
                Option("damping", "number", 1e-8, NONNEGATIVE),
                Option("cg_rtol", "number", 1e-6, NONNEGATIVE),
                Option("cg_atol", "number", 1e-6, NONNEGATIVE),
                Option("cg_max_steps", "integer", 100, AT_LEAST_1),
            ),
            "incremental 4DVar: Gauss-Newton with CG",
        ),
        "lbfgs": Choice(
            "lbfgs",
            lambda o: bl.LBFGS(memory_size=o["memory_size"], **_steps(o)),
            (*_tolerances(500, 1e-8), Option("memory_size", "integer", 10, AT_LEAST_1)),
        ),
        "gradient_descent": Choice(
            "gradient_descent",
            lambda o: bl.GradientDescent(learning_rate=o["learning_rate"], **_steps(o)),
            (*_tolerances(500, 1e-6), Option("learning_rate", "number", 0.1, POSITIVE)),
        ),
        "adam": Choice(
            "adam",
            lambda o: bl.OptaxSolver(optax.adam(o["learning_rate"]), **_steps(o)),
            (
                *_tolerances(1000, 1e-8),
                Option("learning_rate", "number", 0.01, POSITIVE),
            ),
        ),
        "gradient_flow": Choice(
            "gradient_flow",
            lambda o: bl.GradientFlow(
                t1=o["t1"],
                dt=o["dt"],
                max_steps=o["max_steps"],
                rtol=o["rtol"],
                atol=o["atol"],
            ),
            (
                Option("t1", "number", 10.0, POSITIVE),
                Option("dt", "number", 0.1, POSITIVE),
                Option("max_steps", "integer", None, AT_LEAST_1),
                Option("rtol", "number", 0.0, NONNEGATIVE),
                Option("atol", "number", 0.0, NONNEGATIVE),
            ),
        ),
    },
)


# --- hypergradients and outer optimisers --------------------------------------

HYPERGRADIENTS = Family(
    "fit.hypergradient",
    "name",
    {
        "implicit": Choice(
            "implicit",
            lambda o: bl.Implicit(
                linear_solver=lx.CG(
                    rtol=o["cg_rtol"], atol=o["cg_atol"], max_steps=o["cg_max_steps"]
                ),
                damping=o["damping"],
            ),
            (
                Option("cg_rtol", "number", 1e-6, NONNEGATIVE),
                Option("cg_atol", "number", 1e-6, NONNEGATIVE),
                Option("cg_max_steps", "integer", None, AT_LEAST_1),
                Option("damping", "number", 0.0, NONNEGATIVE),
            ),
        ),
        "unrolled": Choice(
            "unrolled",
            lambda o: bl.Unrolled(checkpoint_every=o["checkpoint_every"]),
            (Option("checkpoint_every", "integer", None, AT_LEAST_1),),
        ),
        "truncated": Choice(
            "truncated",
            lambda o: bl.Truncated(k=o["k"]),
            (Option("k", "integer", bound=AT_LEAST_1),),
        ),
        "forward_mode": Choice("forward_mode", lambda o: bl.ForwardMode()),
        "gradient_flow_adjoint": Choice(
            "gradient_flow_adjoint",
            lambda o: bl.GradientFlowAdjoint(
                stepsize_controller=dfx.PIDController(rtol=o["rtol"], atol=o["atol"]),
                max_steps=o["max_steps"],
                checkpoints=o["checkpoints"],
            ),
            (
                Option("rtol", "number", 1e-8, POSITIVE),
                Option("atol", "number", 1e-8, POSITIVE),
                Option("max_steps", "integer", 16384, AT_LEAST_1),
                Option("checkpoints", "integer", 32, AT_LEAST_1),
            ),
        ),
        "finite_difference": Choice(
            "finite_difference",
            lambda o: bl.FiniteDifference(eps=o["eps"]),
            (Option("eps", "number", None, POSITIVE),),
        ),
    },
    default="implicit",
)


def _clipped(o, optimiser):
    if o["clip_norm"] is None:
        return optimiser
    return optax.chain(optax.clip_by_global_norm(o["clip_norm"]), optimiser)


LEARNING_RATE = Option("learning_rate", "number", 0.01, POSITIVE)

OPTIMISERS = Family(
    "fit.optimiser",
    "name",
    {
        "adam": Choice(
            "adam",
            lambda o: _clipped(
                o, optax.adam(o["learning_rate"], b1=o["b1"], b2=o["b2"])
            ),
            (
                LEARNING_RATE,
                Option("b1", "number", 0.9, UNIT_INTERVAL),
                Option("b2", "number", 0.999, UNIT_INTERVAL),
            ),
        ),
        "sgd": Choice(
            "sgd",
            lambda o: _clipped(
                o, optax.sgd(o["learning_rate"], momentum=o["momentum"])
            ),
            (LEARNING_RATE, Option("momentum", "number", None, UNIT_INTERVAL)),
        ),
    },
    common=(Option("clip_norm", "number", None, POSITIVE),),
    default="adam",
)

FAMILIES = (
    MODELS,
    OPERATORS,
    BACKGROUNDS,
    PRIORS,
    PROBLEMS,
    SOLVERS,
    HYPERGRADIENTS,
    OPTIMISERS,
)


# `fit`'s modes, named in `[fit]` (strings and booleans in the TOML file only).
BATCHINGS = {"vmap": learning.Vectorised, "map": learning.Sequential}


def fit_modes(batching: str, warm_start: bool | None, progress: bool) -> dict:
    """`fit`'s mode objects from the `[fit]` table's values."""
    if warm_start is None:
        start = learning.StrategyDefault()
    else:
        start = learning.WarmStart() if warm_start else learning.ColdStart()
    return {
        "batching": BATCHINGS[batching](),
        "warm_start": start,
        "progress": TqdmProgress() if progress else NoProgress(),
    }
