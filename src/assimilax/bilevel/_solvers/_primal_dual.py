"""The Condat-Vu primal-dual splitting for ``f(x) + g(x) + h(Hx)``."""

from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import PyTree

from ..._custom_types import Args, Objective, ScalarLike, X
from .._checks import eval_shape
from ._base import AbstractInnerSolver, InnerState, tree_norm, value_and_grad
from ._prox import AbstractProx, Zero
from ._proximal import check_positive, check_prox, check_prox_shapes


class PrimalDualMemory(eqx.Module):
    """`PrimalDual`'s `extra`: the dual variable ``y`` at the current iterate, and the
    next pair ``(x⁺, y⁺)`` (computed with the state because the residual needs it)."""

    dual: PyTree
    candidate: X
    candidate_dual: PyTree


def _sub(a, b):
    return jtu.tree_map(jnp.subtract, a, b)


def _axpy(a, x, y):
    return jtu.tree_map(lambda xi, yi: a * xi + yi, x, y)


class PrimalDual(AbstractInnerSolver):
    """Minimise ``f(x, args) + g(x; args) + h(H(x, args); args)`` (Condat-Vu).

    ``f = fn`` is smooth, ``g`` and ``h`` have proximal operators, and ``H`` is
    linear in ``x``. One iteration, with the dual variable ``y``:

    ``x⁺ = prox_{τg}(x - τ (grad f(x) + Hᵀy))``,
    ``y⁺ = prox_{σh*}(y + σ H(2x⁺ - x))``.

    The prox of the convex conjugate ``h*`` comes from the Moreau identity
    ``prox_{σh*}(v) = v - σ prox_{h/σ}(v/σ)``, so `prox_h` is the ordinary prox of
    ``h``. ``Hᵀ`` is obtained by `jax.vjp` of `operator` (exact for a linear map, and
    itself differentiable for unrolling).

    **Fields:**

    - `operator`: ``H(x, args)``, linear in ``x`` (it may depend on `args`, e.g. a
      learned analysis operator); e.g. ``lambda x, args: D @ x``.
    - `prox_h`: an `AbstractProx` for ``h`` (e.g. `L1(weight)` gives ``|Hx|_1``).
    - `tau`, `sigma`: primal and dual step sizes (positive scalars).
    - `prox_g`: an `AbstractProx` for ``g`` (default `Zero()`: no such term).
    - `operator_norm`: an upper bound on ``|H|`` (optional). When given, the
      convergence condition ``1/τ - σ|H|² > L/2`` is checked at construction.
      Without it the condition is the caller's responsibility (estimate ``|H|``
      by a few power iterations; ``|D|² <= 4`` for 1D differences).
    - `lipschitz`: the Lipschitz constant ``L`` of ``grad f`` used in that check
      (default 0.0, which checks only ``τσ|H|² < 1``).
    - `max_steps` (static), `rtol`, `atol`: stop when the fixed-point residual
      ``sqrt(|x - x⁺|²/τ² + |y - y⁺|²/σ²)`` is ``<= atol + rtol * (its value at x0)``.
      The default ``rtol=None`` follows the dtype: 1e-8 in float64, 2.4e-5 in
      float32 (see `AbstractInnerSolver.tolerances`).

    The dual starts at zero. The state's `value` is ``f + g + h∘H`` (indicators
    count as 0); its `grad` is ``grad f``.

    **Cost:** per step one gradient of ``f``, one prox of each of ``g`` and ``h``,
    two applications of ``H`` and one of ``Hᵀ``. **Hypergradients:** `Unrolled`,
    `Truncated`, `ForwardMode`, `FiniteDifference`. Not `Implicit`: the fixed point
    couples ``x`` and ``y``, and with a non-smooth ``h`` the optimal dual is not a
    function of the primal solution alone (on the flat pieces of TV, for example),
    so no residual in ``x`` only has the right derivative, and `Implicit`'s
    interface carries only ``x``. Differentiating with `Implicit` raises a
    `ValueError` (the forward solve runs).

    ??? cite "References"

        Condat. *A primal-dual splitting method for convex optimization involving
        Lipschitzian, proximable and linear composite terms*. JOTA 2013.
        Vũ. *A splitting algorithm for dual monotone inclusions involving
        cocoercive operators*. Adv. Comput. Math. 2013.
    """

    operator: Callable[[X, Args], PyTree]
    prox_h: AbstractProx
    tau: ScalarLike
    sigma: ScalarLike
    prox_g: AbstractProx = Zero()
    operator_norm: float | None = None
    lipschitz: float = 0.0
    max_steps: int = eqx.field(static=True, default=1000)
    rtol: float | None = None
    atol: float = 0.0

    optimality_is_gradient = False
    # Read by nothing in the engine yet; see `optimality` for where Implicit is refused.
    implicit_differentiable: ClassVar[bool] = False

    def __check_init__(self):
        if not callable(self.operator):
            raise TypeError(
                "PrimalDual(operator=...) must be a function (x, args) -> Hx, linear "
                f"in x; got {self.operator!r}."
            )
        check_prox("PrimalDual", "prox_h", self.prox_h)
        check_prox("PrimalDual", "prox_g", self.prox_g)
        check_positive("PrimalDual", "tau", self.tau)
        check_positive("PrimalDual", "sigma", self.sigma)
        if self.lipschitz < 0:
            raise ValueError(
                f"PrimalDual(lipschitz=...) must be >= 0, got {self.lipschitz}."
            )
        self._check_steps()

    def _check_steps(self):
        norm = self.operator_norm
        if norm is None:
            return
        if not norm > 0:
            raise ValueError(f"PrimalDual(operator_norm=...) must be > 0, got {norm}.")
        if not all(isinstance(s, (int, float)) for s in (self.tau, self.sigma)):
            return
        margin = 1.0 / self.tau - self.sigma * norm**2 - self.lipschitz / 2.0
        if not margin > 0:
            raise ValueError(
                "PrimalDual(tau=..., sigma=...) violate the Condat-Vu condition "
                "1/tau - sigma * operator_norm**2 > lipschitz / 2: with "
                f"tau={self.tau}, sigma={self.sigma}, operator_norm={norm}, "
                f"lipschitz={self.lipschitz} the left side minus the right is "
                f"{margin:.3g}. Reduce tau or sigma (e.g. sigma = 1 / (tau * "
                "operator_norm**2) / 2 with tau < 1 / lipschitz)."
            )

    def check_objective(self, fn: Objective, x0: X, args: Args) -> None:
        try:
            hx = eval_shape(self.operator, x0, args)
        except Exception as error:  # re-raised with context: which field failed
            raise ValueError(
                "PrimalDual(operator=...) failed on x0 of shape "
                f"{jtu.tree_map(jnp.shape, x0)}: {type(error).__name__}: {error}"
            ) from error
        check_prox_shapes("PrimalDual", "prox_g", self.prox_g, x0, args)
        dual = jtu.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), hx)
        check_prox_shapes("PrimalDual", "prox_h", self.prox_h, dual, args)

    def _prox_h_conjugate(self, v, args):
        # Moreau: prox_{σh*}(v) = v - σ prox_{h/σ}(v/σ).
        sigma = self.sigma
        scaled = jtu.tree_map(lambda vi: vi / sigma, v)
        return _axpy(-sigma, self.prox_h(scaled, 1.0 / sigma, args), v)

    def _state_at(self, fn, x, dual, args, residual0) -> InnerState:
        tau, sigma = self.tau, self.sigma
        f, grad = value_and_grad(fn, x, args)
        hx, adjoint = jax.vjp(lambda u: self.operator(u, args), x)
        (h_t_dual,) = adjoint(dual)
        descent = jtu.tree_map(jnp.add, grad, h_t_dual)
        x_next = self.prox_g(_axpy(-tau, descent, x), tau, args)
        # H is linear, so H(2x⁺ - x) costs one application.
        reflected = jtu.tree_map(lambda a, b: 2.0 * a - b, x_next, x)
        h_extra = self.operator(reflected, args)
        dual_next = self._prox_h_conjugate(_axpy(sigma, h_extra, dual), args)
        primal_gap = tree_norm(_sub(x, x_next)) / tau
        dual_gap = tree_norm(_sub(dual, dual_next)) / sigma
        residual = jnp.sqrt(primal_gap**2 + dual_gap**2)
        if residual0 is None:
            residual0 = residual
        value = f + self.prox_g.value(x, args) + self.prox_h.value(hx, args)
        memory = PrimalDualMemory(dual, x_next, dual_next)
        return InnerState(value, grad, residual, residual0, memory)

    def init(self, fn: Objective, x: X, args: Args) -> InnerState:
        shape = eval_shape(self.operator, x, args)
        dual = jtu.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shape)
        return self._state_at(fn, x, dual, args, None)

    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        memory = state.extra
        x_next = memory.candidate
        new_state = self._state_at(
            fn, x_next, memory.candidate_dual, args, state.residual0
        )
        return x_next, new_state

    def refresh(self, fn: Objective, x: X, args: Args, state: InnerState) -> InnerState:
        # The cached next pair depends on `args`: recompute it with live ones.
        return self._state_at(fn, x, state.extra.dual, args, state.residual0)

    def optimality(self, fn: Objective, x: X, args: Args) -> X:
        """Not available: `Implicit` cannot differentiate `PrimalDual` (see above)."""
        del fn, x, args
        raise ValueError(
            "Implicit() cannot differentiate PrimalDual: its fixed point couples the "
            "primal x with the dual variable, and the optimal dual is not a function "
            "of x alone when h is non-smooth, so no optimality condition in x only "
            "gives the right derivative. Use Unrolled(), Truncated(k), ForwardMode() "
            "or FiniteDifference() with PrimalDual, or ProximalGradient with "
            "Implicit(linear_solver=lx.GMRES(...)) when h(Hx) has a direct prox "
            "(e.g. TotalVariation1D)."
        )
