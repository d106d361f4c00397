"""A deep equilibrium layer: the output is the fixed point of a learnable cell."""

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from ._hypergradients._base import AbstractHypergradient
from ._hypergradients._implicit import Implicit
from ._root_find import fixed_point
from ._solution import Solution
from ._solvers._anderson import Anderson
from ._solvers._root import AbstractRootSolver


def _apply_cell(z, args):
    cell, x = args
    return cell(z, x)


class DEQ(eqx.Module):
    """Deep equilibrium layer (Bai et al. 2019): ``x -> z*`` with ``z* = cell(z*, x)``.

    The cell is any callable ``cell(z, x) -> z`` (an `eqx.Module` whose arrays are
    the layer's weights). Its fixed point is found from ``z = 0`` by `fixed_point`,
    and derivatives w.r.t. the cell's weights and the input follow `hypergradient`:
    with `Implicit()` (default) one backward linear solve, memory flat in the
    number of forward iterations.

    **Fields:**

    - `cell`: the map ``cell(z, x)``; it should be a contraction in ``z`` for every
      input (e.g. spectrally normalised weights), or the solve is reported as
      not converged.
    - `state_shape`: the shape of ``z`` (static).
    - `solver`: a root solver, default `Anderson()`.
    - `hypergradient`: default `Implicit()`; `Unrolled()`, `Truncated(k)`,
      `ForwardMode()` apply too.
    - `throw`: raise on a failed solve (default `True`).

    **Call:** ``layer(x)`` returns ``z*`` of shape `state_shape` (dtype of ``x``);
    ``layer.solve(x)`` returns the whole `Solution` (result code, iterations). Use
    `jax.vmap` for batches.
    """

    cell: Callable
    state_shape: tuple[int, ...] = eqx.field(static=True)
    solver: AbstractRootSolver = Anderson()
    hypergradient: AbstractHypergradient = Implicit()
    throw: bool = eqx.field(static=True, default=True)

    def solve(self, x: Float[ArrayLike, "..."]) -> Solution:
        """The fixed-point `Solution` for input ``x`` (the shape the cell takes);
        its `value` has shape `state_shape`."""
        x = jnp.asarray(x)
        z0 = jnp.zeros(self.state_shape, jnp.result_type(x))
        return fixed_point(
            _apply_cell,
            z0,
            (self.cell, x),
            solver=self.solver,
            hypergradient=self.hypergradient,
            throw=self.throw,
        )

    def __call__(self, x: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
        return self.solve(x).value
