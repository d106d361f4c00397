"""Anderson acceleration of a fixed-point iteration (type II, Walker & Ni 2011)."""

import equinox as eqx
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int

from ..._custom_types import Args, ScalarLike, X
from ._base import InnerState
from ._root import AbstractRootSolver, residual_state


# Written by hand: Optimistix has no Anderson acceleration (its fixed-point solvers
# are plain iteration and Newton/chord), and JAXopt's is no longer maintained.


class _History(eqx.Module):
    """The last `memory` iterates and residuals, flattened: a ring buffer."""

    iterates: Float[Array, "memory state"]
    residuals: Float[Array, "memory state"]
    count: Int[Array, ""]


class Anderson(AbstractRootSolver):
    """Anderson acceleration of ``z <- z + F(z)`` (for `fixed_point`: of
    ``z <- T(z)``).

    From the last ``m`` iterates ``z_i`` and residuals ``F_i``, the weights
    ``α = argmin |Σ α_i F_i|`` subject to ``Σ α_i = 1`` give the next iterate
    ``Σ α_i (z_i + damping F_i)``. With ``m = 1`` this is `FixedPointIteration`.

    **Fields:**

    - `memory`: ``m``, the number of past iterates combined (static, >= 1; 5 is the
      usual choice for deep equilibrium layers).
    - `damping`: the mixing parameter (1: undamped).
    - `ridge`: Tikhonov regularisation of the small least-squares system (its
      columns scaled to unit norm), no smaller than the dtype's epsilon (keeps
      nearly collinear residuals finite).
    - `max_steps`, `rtol`, `atol`: stop when ``|F(z)| <= atol + rtol * |F(z0)|``
      (``rtol=None``: 1e-10 in float64, 2.4e-5 in float32).

    **Cost:** one evaluation of `F` and an ``m x m`` solve per step; memory
    ``2 m`` copies of the state (two arrays of shape ``(memory, state)``).
    Differentiable in reverse and forward mode (the small solve is), so
    `Unrolled`, `Truncated` and `ForwardMode` apply.

    ??? cite "References"

        Anderson. *Iterative procedures for nonlinear integral equations*. J. ACM 1965.
        Walker, Ni. *Anderson acceleration for fixed-point iterations*. SIAM J.
        Numer. Anal. 2011.
    """

    memory: int = eqx.field(static=True, default=5)
    damping: ScalarLike = 1.0
    ridge: float = 1e-10
    max_steps: int = eqx.field(static=True, default=500)
    rtol: float | None = None
    atol: float = 0.0

    def __check_init__(self):
        if self.memory < 1:
            raise ValueError(f"Anderson(memory=...) must be >= 1, got {self.memory}.")
        if isinstance(self.damping, (int, float)) and not self.damping > 0:
            raise ValueError(f"Anderson(damping=...) must be > 0, got {self.damping}.")
        if not self.ridge >= 0:
            raise ValueError(f"Anderson(ridge=...) must be >= 0, got {self.ridge}.")

    def init(self, fn, x: X, args: Args) -> InnerState:
        flat, _ = ravel_pytree(x)
        empty = jnp.zeros((self.memory, flat.size), flat.dtype)
        history = _History(empty, empty, jnp.array(0))
        return residual_state(fn, x, args, extra=history)

    def step(self, fn, x: X, args: Args, state: InnerState) -> tuple[X, InnerState]:
        flat_x, unravel = ravel_pytree(x)
        flat_f, _ = ravel_pytree(state.grad)
        history = state.extra
        slot = history.count % self.memory
        iterates = history.iterates.at[slot].set(flat_x)
        residuals = history.residuals.at[slot].set(flat_f)
        count = history.count + 1
        weights = self._weights(residuals, slot, count)
        mixed = weights @ (iterates + self.damping * residuals)
        x = unravel(mixed)
        extra = _History(iterates, residuals, count)
        return x, residual_state(fn, x, args, state.residual0, extra)

    def _weights(
        self,
        residuals: Float[Array, "memory state"],
        newest: Int[Array, ""],
        count: Int[Array, ""],
    ) -> Float[Array, " memory"]:
        """``argmin |Σ α_i F_i|`` s.t. ``Σ α_i = 1`` over the filled slots (the
        others get weight 0).

        The constraint is eliminated against the newest residual: ``α = e_new +
        γ``, ``min |F_new + Σ γ_i (F_i - F_new)|``, with the difference columns
        scaled to unit norm before the regularised normal equations. Scaling
        matters: the residuals shrink by orders of magnitude over the memory,
        and a ridge relative to the oldest would freeze the newest weights.
        """
        index = jnp.arange(self.memory)
        others = (index < count) & (index != newest)
        f_new = residuals[newest]
        differences = jnp.where(others[:, None], residuals - f_new[None, :], 0.0)
        squared = jnp.sum(differences**2, axis=1)
        # Unit columns; unused (or zero) columns keep scale 1, and the double
        # `where` keeps reverse mode finite there (no sqrt at 0).
        usable = others & (squared > 0)
        norms = jnp.sqrt(jnp.where(usable, squared, 1.0))
        unit = differences / norms[:, None]
        # No smaller than the Gram's rounding: in float32 a 1e-10 ridge is below
        # resolution, and nearly collinear residuals would make the solve singular.
        ridge = max(self.ridge, float(jnp.finfo(unit.dtype).eps))
        # Unused slots: identity rows with a zero right-hand side, so gamma_i = 0.
        gram = unit @ unit.T + jnp.diag(jnp.where(usable, ridge, 1.0))
        gamma = jnp.linalg.solve(gram, -(unit @ f_new)) / norms
        gamma = jnp.where(usable, gamma, 0.0)
        weights = gamma.at[newest].add(1.0 - jnp.sum(gamma))
        # A non-finite solve (overflowing residuals) falls back to the newest
        # iterate alone: a plain damped step.
        fallback = (index == newest).astype(weights.dtype)
        return jnp.where(jnp.all(jnp.isfinite(weights)), weights, fallback)
