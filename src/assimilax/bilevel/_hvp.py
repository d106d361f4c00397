"""Hessian-vector products for the implicit hypergradient: autodiff or differences.

Both give, at an inner solution ``x``, the two products the implicit function
theorem needs, for ``U(x, params)``:

- `hvp`:   ``v -> (d/dx grad_x U) v``  (the Hessian times a vector);
- `mixed`: ``w -> (d/dparams grad_x U)^T w``  (the mixed second derivative).
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import Array, PyTree

from .._custom_types import X
from ._solvers._base import tree_norm


# `U(x, params) -> scalar`, with ``params = (fn, args)`` after closure conversion.
Objective2 = Callable[[X, PyTree], Array]


class AbstractHVP(eqx.Module):
    """How `Implicit` forms Hessian-vector and mixed-derivative products."""

    @abc.abstractmethod
    def hvp(self, objective: Objective2, x: X, params: PyTree, v: X) -> X:
        """``(∂²U/∂x²) v`` at ``x`` (same tree as ``x``)."""

    @abc.abstractmethod
    def mixed(self, objective: Objective2, x: X, params: PyTree, w: X) -> PyTree:
        """``(∂²U/∂params∂x)^T w``: a tree like `params` (`None` where not floating)."""


class AutodiffHVP(AbstractHVP):
    """Exact products by forward-over-reverse autodiff (the default).

    **Cost:** about 2-3 gradient evaluations per product; never forms the Hessian.
    """

    def hvp(self, objective: Objective2, x: X, params: PyTree, v: X) -> X:
        grad_x = jax.grad(objective)
        return jax.jvp(lambda y: grad_x(y, params), (x,), (v,))[1]

    def mixed(self, objective: Objective2, x: X, params: PyTree, w: X) -> PyTree:
        grad_x = jax.grad(objective)
        _, vjp = eqx.filter_vjp(lambda p: grad_x(x, p), params)
        return vjp(w)[0]


class FiniteDifferenceHVP(AbstractHVP):
    """Products from central differences of first derivatives only.

    ``H v ≈ (∇ₓU(x + h v) - ∇ₓU(x - h v)) / 2h`` and
    ``(∂θ∇ₓU)^T w ≈ (∇θU(x + h w) - ∇θU(x - h w)) / 2h``, with
    ``h = eps * (1 + |x|) / |v|``. Useful when second-order autodiff of the objective
    is unavailable or too costly (the approach of Pedregosa's HOAG and the
    "Graduate Descent" notes). Exact up to rounding on quadratics; O(h²) otherwise.

    **Fields:** `eps`, the relative step. Default (`None`): the cube root of the
    machine epsilon of ``x``'s dtype (6e-6 in float64, 4.9e-3 in float32), which
    balances the O(h²) truncation error of central differences against the
    rounding error of the gradients divided by h.
    """

    eps: float | None = None

    def __check_init__(self):
        if self.eps is not None and self.eps <= 0:
            raise ValueError(
                f"FiniteDifferenceHVP(eps=...) must be > 0, got {self.eps}."
            )

    def _step(self, x: X, v: X) -> Array:
        norm_v = tree_norm(v)
        safe = jnp.where(norm_v > 0, norm_v, 1.0)
        eps = self.eps
        if eps is None:
            dtype = jnp.result_type(*jtu.tree_leaves(x))
            eps = float(jnp.finfo(dtype).eps) ** (1 / 3)
        return eps * (1.0 + tree_norm(x)) / safe

    def hvp(self, objective: Objective2, x: X, params: PyTree, v: X) -> X:
        h = self._step(x, v)
        grad_x = jax.grad(objective)
        plus = grad_x(jtu.tree_map(lambda a, b: a + h * b, x, v), params)
        minus = grad_x(jtu.tree_map(lambda a, b: a - h * b, x, v), params)
        return jtu.tree_map(lambda p, m: (p - m) / (2 * h), plus, minus)

    def mixed(self, objective: Objective2, x: X, params: PyTree, w: X) -> PyTree:
        h = self._step(x, w)
        grad_p = eqx.filter_grad(lambda p, y: objective(y, p))
        plus = grad_p(params, jtu.tree_map(lambda a, b: a + h * b, x, w))
        minus = grad_p(params, jtu.tree_map(lambda a, b: a - h * b, x, w))
        return jtu.tree_map(
            lambda p, m: None if p is None else (p - m) / (2 * h),
            plus,
            minus,
            is_leaf=lambda t: t is None,
        )
