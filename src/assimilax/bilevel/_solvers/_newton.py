"""Newton's method for ``F(z) = 0``, each step one lineax solve with the Jacobian."""

import equinox as eqx
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx

from ..._custom_types import Args, ScalarLike, X
from ._base import InnerState
from ._root import AbstractRootSolver, residual_state


class Newton(AbstractRootSolver):
    """``z <- z - step_size * (∂zF)⁻¹ F(z)``, the Jacobian matrix-free.

    Each step solves ``∂zF(z) d = -F(z)`` with a lineax solver on
    `lx.JacobianLinearOperator` (Jacobian-vector products; the dense solvers
    materialise the Jacobian with one `jacfwd`). Written on lineax rather than as
    an adapter of `optimistix.Newton` because every hypergradient strategy needs
    the iteration one step at a time (`init`/`step`), and Optimistix's solvers
    stop on the size of the step, not on the residual the strategies test.

    **Fields:**

    - `linear_solver`: any lineax solver for a square, non-symmetric system;
      default `lx.LU()` (dense, exact; O(n³) per step). For large states use
      ``lx.GMRES(rtol, atol)`` (matrix-free).
    - `step_size`: a scalar, 1 for Newton's method; below 1 damps it (no line search, so
      Newton converges from starts close enough to a regular root).
    - `max_steps`, `rtol`, `atol`: stop when ``|F(z)| <= atol + rtol * |F(z0)|``
      (``rtol=None``: 1e-10 in float64, 2.4e-5 in float32).

    **Convergence:** quadratic near a root with an invertible Jacobian. A singular
    Jacobian gives a non-finite step, reported as ``inner_nonfinite``.
    **Cost:** one Jacobian solve per step.
    """

    linear_solver: lx.AbstractLinearSolver = lx.LU()
    step_size: ScalarLike = 1.0
    max_steps: int = eqx.field(static=True, default=50)
    rtol: float | None = None
    atol: float = 0.0

    def __check_init__(self):
        if not isinstance(self.linear_solver, lx.AbstractLinearSolver):
            raise TypeError(
                "Newton(linear_solver=...) must be a lineax solver such as lx.LU() "
                f"or lx.GMRES(rtol=1e-8, atol=1e-8); got {self.linear_solver!r}."
            )
        if isinstance(self.step_size, (int, float)) and not self.step_size > 0:
            raise ValueError(
                f"Newton(step_size=...) must be > 0, got {self.step_size}."
            )

    def init(self, fn, x: X, args: Args) -> InnerState:
        return residual_state(fn, x, args)

    def step(self, fn, x: X, args: Args, state: InnerState) -> tuple[X, InnerState]:
        jacobian = lx.JacobianLinearOperator(lambda z, a: fn(z, a), x, args)
        minus_f = jtu.tree_map(lambda f: -f, state.grad)
        solution = lx.linear_solve(jacobian, minus_f, self.linear_solver, throw=False)
        # A failed solve (singular Jacobian) makes the step NaN: the loop stops on
        # it and `argmin`'s result code reports ``inner_nonfinite``.
        ok = solution.result == lx.RESULTS.successful
        x = jtu.tree_map(
            lambda zi, di: zi + jnp.where(ok, self.step_size * di, jnp.nan),
            x,
            solution.value,
        )
        return x, residual_state(fn, x, args, state.residual0)
