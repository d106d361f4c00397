"""`assimilate`: one assimilation window, from a problem to an analysis Dataset."""

import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._dims import OBS, TRUTH
from .._results import RESULTS
from ..bilevel import AbstractHypergradient, AbstractInnerSolver, argmin, Implicit
from ..costs import AbstractVariationalProblem
from ..io import observations_to_dataset, trajectory_to_dataset


def cost(control, problem: AbstractVariationalProblem):
    """The objective of every window's `argmin`: the problem's cost, a scalar (a
    module-level function, so that repeated solves share one compiled program)."""
    return problem.cost(control)


def assimilate(
    problem: AbstractVariationalProblem,
    *,
    solver: AbstractInnerSolver,
    control0=None,
    hypergradient: AbstractHypergradient = Implicit(),
    throw: bool = True,
) -> xr.Dataset:
    """Run one assimilation window and return the analysis as an `xarray.Dataset`.

    **Arguments:**

    - `problem`: a variational problem (`ThreeDVar`, `StrongConstraint4DVar`,
      `WeakConstraint4DVar`).
    - `solver`: the inner solver, e.g. `LBFGS()` or
      `GaussNewton(residuals=lambda c, p: p.residuals(c))`.
    - `control0`: the first guess of the control (default: the problem's
      `first_guess()`, the background).
    - `hypergradient`, `throw`: as for `argmin` (the Dataset is data, not
      differentiable; use `argmin` on `problem.cost` to learn through a window).

    **Returns:** a Dataset with `analysis` and `background` trajectories (``time,
    x[, y]``), `obs` (NaN where not observed), and the cost components before and
    after (`cost_before`, `cost_after` along a `term` dim), with attrs `converged`,
    `num_steps`, `grad_norm` and `result` (the message of the result code).

    **Raises:** as `argmin` (with `throw=True`, an unconverged solve is an error).
    """
    first_guess = problem.first_guess() if control0 is None else jnp.asarray(control0)
    sol = argmin(
        cost,
        first_guess,
        problem,
        solver=solver,
        hypergradient=hypergradient,
        throw=throw,
    )
    analysis, times = problem.states_and_times(sol.value)
    background, _ = problem.states_and_times(first_guess)
    before = problem.components(first_guess)
    after = problem.components(sol.value)
    terms = list(before)
    ds = xr.merge(
        [
            trajectory_to_dataset(analysis, times, name="analysis"),
            trajectory_to_dataset(background, times, name="background"),
            observations_to_dataset(problem.observations, variable=OBS),
        ],
        join="outer",
        combine_attrs="override",
    )
    ds["cost_before"] = ("term", np.asarray([float(before[t]) for t in terms]))
    ds["cost_after"] = ("term", np.asarray([float(after[t]) for t in terms]))
    ds = ds.assign_coords(term=terms)
    ds.attrs.update(
        converged=int(sol.stats.converged),
        num_steps=int(sol.stats.num_steps),
        grad_norm=float(sol.stats.grad_norm),
        result=RESULTS[sol.result] or "successful",
    )
    return ds


def analysis_rmse(ds: xr.Dataset, truth: xr.DataArray | None = None) -> float:
    """Root-mean-square error of `analysis` against `truth` at the analysis times.

    `truth` defaults to the Dataset's own `truth` variable (twin experiments).
    """
    truth = ds[TRUTH] if truth is None else truth
    diff = ds["analysis"] - truth.sel(time=ds["analysis"].time)
    return float(np.sqrt((diff**2).mean()))
