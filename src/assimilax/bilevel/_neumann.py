"""A truncated Neumann series as a lineax linear solver.

Lineax has no Neumann/Richardson solver; the implicit hypergradient literature
(Lorraine et al. 2020; Shaban et al. 2019) uses one, so it is written here, as an
`lx.AbstractLinearSolver` so that it plugs in wherever lineax solvers do.
"""

from typing import Any

import jax
import jax.lax as lax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import lineax as lx
from jaxtyping import Array, PyTree

from ._solvers._base import tree_norm, tree_vdot


class Neumann(lx.AbstractLinearSolver):
    """Solve ``A w = b`` by ``w = α Σ_{i<k} (I - α A)^i b`` (Richardson iteration).

    **Fields:**

    - `num_terms`: ``k``, the number of terms (= matrix-vector products).
    - `step_size`: ``α``; must satisfy ``α < 2 / λ_max(A)``. `None` estimates
      ``λ_max`` by 20 power iterations and uses ``α = 1 / λ_max``.

    The error after k terms is ``(1 - α λ_min)^k`` relative: fine for well
    conditioned Hessians, slow for ill-conditioned ones (prefer `lx.CG`). The
    final residual is reported by `Implicit` in its statistics. Accepts the option
    ``y0`` (warm start). For symmetric positive definite ``A`` only.
    """

    num_terms: int = 100
    step_size: float | None = None

    def __check_init__(self):
        if self.num_terms < 1:
            raise ValueError(
                f"Neumann(num_terms=...) must be >= 1, got {self.num_terms}."
            )
        if self.step_size is not None and self.step_size <= 0:
            raise ValueError(
                f"Neumann(step_size=...) must be > 0, got {self.step_size}."
            )

    def init(self, operator: lx.AbstractLinearOperator, options: dict[str, Any]):
        """The solver state: the operator itself (lineax's solver interface)."""
        del options
        return operator

    def compute(
        self, state: lx.AbstractLinearOperator, vector: PyTree[Array], options: dict
    ) -> tuple[PyTree[Array], lx.RESULTS, dict[str, Any]]:
        """Sum the `num_terms` terms of the series for ``A w = vector``.

        **Returns:** ``(w, result, stats)``: ``w`` of the pytree structure and
        shapes of `vector`, always `lx.RESULTS.successful` (the residual is not
        checked here: `Implicit` measures and reports it), and
        ``{"num_steps": num_terms}``.
        """
        operator = state
        if self.step_size is None:
            alpha = 1.0 / _largest_eigenvalue(operator, vector)
        else:
            alpha = self.step_size
        y0 = options.get("y0", jtu.tree_map(jnp.zeros_like, vector))

        def body(_, w):
            residual = jtu.tree_map(lambda b, aw: b - aw, vector, operator.mv(w))
            return jtu.tree_map(lambda wi, ri: wi + alpha * ri, w, residual)

        w = lax.fori_loop(0, self.num_terms, body, y0)
        return w, lx.RESULTS.successful, {"num_steps": jnp.array(self.num_terms)}

    def transpose(self, state, options):
        """The state for solving with ``Aᵀ`` (lineax's solver interface)."""
        return state.transpose(), options

    def conj(self, state, options):
        """The state for solving with the conjugate of ``A``: ``A`` itself (real)."""
        return state, options

    def assume_full_rank(self) -> bool:
        """`True`: ``A`` is assumed symmetric positive definite, so invertible."""
        return True


def _largest_eigenvalue(operator: lx.AbstractLinearOperator, like: PyTree[Array]):
    """λ_max of a symmetric PSD operator by power iteration (20 products)."""
    leaves, treedef = jtu.tree_flatten(like)
    keys = jr.split(jr.key(0), len(leaves))
    v = jtu.tree_unflatten(
        treedef, [jr.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
    )

    def body(_, v):
        av = operator.mv(v)
        return jtu.tree_map(lambda a: a / tree_norm(av), av)

    v = lax.fori_loop(0, 20, body, jtu.tree_map(lambda a: a / tree_norm(v), v))
    return jax.lax.stop_gradient(tree_vdot(v, operator.mv(v)))
