"""Hypergradient error against what each strategy is given: inner steps,
truncation ``k``, backward tolerance (for ``hypergradients.py``).

The result is the Dataset layout that `assimilax.plotting.hypergradient_error`
draws: one variable per sweep, each on its own sweep dim.

- ``error_steps`` (``strategy``, ``steps``): gradient descent stopped after
  exactly ``steps`` iterations (``rtol=0``), differentiated by `Unrolled`,
  `Implicit(CG)` and `Truncated(k)` (``k`` the smallest truncation swept that is
  at least 10, capped at ``steps``).
- ``error_k`` (``k``): `Truncated(k)` after the steps the inner solve needs.
- ``error_rtol`` (``rtol``): `Implicit` with ``lx.CG(rtol, atol=rtol)`` after a
  converged inner solve.

Each error is relative, ``|g - g_exact| / |g_exact|`` against the float64 closed
form of ``_tikhonov.py``. In the JSON results the Dataset is stored as
``Dataset.to_dict(data="list")`` (read it back with `from_payload`).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import xarray as xr

import assimilax as ax
from _tikhonov import Problem


def _rel_error(problem: Problem, solver, strategy) -> float:
    def loss(lam):
        sol = ax.argmin(
            problem.fn,
            problem.y,
            lam,
            solver=solver,
            hypergradient=strategy,
            throw=False,  # a fixed number of steps is "not converged" by design
        )
        return problem.outer(sol.value)

    grad = float(jax.jit(jax.grad(loss))(jnp.asarray(problem.lam)))
    return abs(grad - problem.hypergrad) / abs(problem.hypergrad)


def error_sweeps(
    problem: Problem,
    *,
    steps: Sequence[int],
    ks: Sequence[int],
    rtols: Sequence[float],
    needed: int,
    linear_rtol: float,
) -> xr.Dataset:
    """The three sweeps on `problem` (`needed`: gradient-descent steps to converge)."""
    lr = 1.0 / problem.lipschitz

    def fixed(n: int) -> ax.GradientDescent:
        return ax.GradientDescent(learning_rate=lr, max_steps=n, rtol=0.0)

    cg = lx.CG(rtol=linear_rtol, atol=linear_rtol)
    k_steps = min([k for k in ks if k >= 10] or [10])
    strategies = {
        "Unrolled": lambda n: ax.Unrolled(),
        "Implicit(CG)": lambda n: ax.Implicit(linear_solver=cg),
        f"Truncated(k={k_steps})": lambda n: ax.Truncated(k=min(k_steps, n)),
    }
    by_steps = [
        [_rel_error(problem, fixed(n), make(n)) for n in steps]
        for make in strategies.values()
    ]
    by_k = [_rel_error(problem, fixed(max(needed, k)), ax.Truncated(k=k)) for k in ks]
    converged = fixed(needed)
    by_rtol = [
        _rel_error(problem, converged, ax.Implicit(linear_solver=lx.CG(r, r)))
        for r in rtols
    ]
    error = {"long_name": "relative error of dL/dλ"}
    return xr.Dataset(
        {
            "error_steps": (("strategy", "steps"), np.asarray(by_steps), error),
            "error_k": (("k",), np.asarray(by_k), error),
            "error_rtol": (("rtol",), np.asarray(by_rtol), error),
        },
        coords={
            "strategy": list(strategies),
            "steps": ("steps", list(steps), {"long_name": "inner GD steps"}),
            "k": ("k", list(ks), {"long_name": f"Truncated k ({needed} GD steps)"}),
            "rtol": ("rtol", list(rtols), {"long_name": "Implicit: CG rtol = atol"}),
        },
        attrs={"problem": problem.name, "gd_steps_needed": needed},
    )


def from_payload(data: dict) -> xr.Dataset:
    """The Dataset of `error_sweeps` back from the results JSON."""
    return xr.Dataset.from_dict(data)
