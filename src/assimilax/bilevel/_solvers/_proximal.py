"""Proximal gradient descent (ISTA) and its accelerated form (FISTA)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jaxtyping import PyTree

from ..._custom_types import Args, Objective, Scalar, ScalarLike, X
from .._checks import eval_shape
from ._base import AbstractInnerSolver, InnerState, tree_norm, tree_vdot, value_and_grad
from ._prox import AbstractProx


class ProximalMemory(eqx.Module):
    """`ProximalGradient`'s `extra`.

    - `candidate`: ``prox(x - t grad f(x))``, the ISTA step from the current ``x``
      (kept because the residual needs it, and ISTA's next iterate is it).
    - `previous`: the previous iterate (FISTA's momentum direction; `None` for ISTA).
    - `momentum`: FISTA's ``t_k`` (`None` for ISTA).
    """

    candidate: X
    previous: X | None
    momentum: Scalar | None


def _axpy(a, x, y):
    return jtu.tree_map(lambda xi, yi: a * xi + yi, x, y)


def check_prox(owner: str, name: str, prox: object) -> None:
    """`prox` fields must be `AbstractProx` objects."""
    if not isinstance(prox, AbstractProx):
        raise TypeError(
            f"{owner}({name}=...) must be a proximal operator object such as "
            f"L1(weight=0.1), NonNegative() or TotalVariation1D(weight=0.1); "
            f"got {prox!r}."
        )


def check_prox_shapes(owner: str, name: str, prox: AbstractProx, x: X, args: Args):
    """Trace `prox` and `prox.value` at ``x``; raise a `ValueError` naming the field."""
    try:
        out = eval_shape(prox, x, 1.0, args)
        value = eval_shape(prox.value, x, args)
    except Exception as error:  # re-raised with context: which field failed
        raise ValueError(
            f"{owner}({name}={type(prox).__name__}(...)) failed on an input of shape "
            f"{jtu.tree_map(jnp.shape, x)}: {type(error).__name__}: {error}"
        ) from error
    expected = jax.eval_shape(lambda: x)
    if jtu.tree_structure(out) != jtu.tree_structure(expected) or any(
        a.shape != b.shape
        for a, b in zip(jtu.tree_leaves(out), jtu.tree_leaves(expected))
    ):
        raise ValueError(
            f"{owner}({name}=...) must return the structure and shapes of its input "
            f"{jtu.tree_map(jnp.shape, x)}, got {jtu.tree_map(jnp.shape, out)}."
        )
    if value.shape != ():
        raise ValueError(
            f"{owner}({name}=...).value must return a scalar, got shape {value.shape}."
        )


def check_positive(owner: str, name: str, value: object) -> None:
    """Eager check of a constant step size (traced values pass unchecked)."""
    if isinstance(value, (int, float)) and not value > 0:
        raise ValueError(f"{owner}({name}=...) must be > 0, got {value}.")


class ProximalGradient(AbstractInnerSolver):
    """Minimise ``f(x, args) + g(x; args)`` with ``f = fn`` smooth and ``g`` = `prox`.

    ISTA: ``x <- prox(x - t grad f(x), t)``. With `acceleration` (FISTA) the
    gradient step is taken from the extrapolated point
    ``y = x + (t_{k-1} - 1)/t_k (x - x_prev)``, and the momentum is restarted when
    it points uphill (O'Donoghue and Candès' gradient test), which restores a
    linear rate on problems that are strongly convex near the solution (lasso with
    a stable support).

    **Fields:**

    - `prox`: an `AbstractProx`, e.g. `L1(weight=...)`, `NonNegative()`, `Box`,
      `L2Ball`, `TotalVariation1D`. Its parameters may be functions of `args`
      (then they are learnable).
    - `step_size`: the step ``t``, a positive scalar; converges for ``t <= 1/L``
      with ``L`` the Lipschitz constant of ``grad f`` (ISTA also for ``t < 2/L``).
    - `acceleration`: FISTA (default `True`) or ISTA.
    - `max_steps`: iteration cap (static).
    - `rtol`, `atol`: stop when the gradient mapping
      ``|x - prox(x - t grad f(x))| / t`` is ``<= atol + rtol * (its value at x0)``.
      The default ``rtol=None`` follows the dtype: 1e-8 in float64, 2.4e-5 in
      float32 (see `AbstractInnerSolver.tolerances`).
      It is zero exactly at a minimiser.

    The state's `value` is the full objective ``f + g``; its `grad` is ``grad f``.

    **Cost:** ISTA, one gradient of ``f`` and one prox per step; FISTA, two of
    each (at the extrapolated point, and at the new iterate where the residual is
    measured). **Hypergradients:** `Unrolled`, `Truncated`, `ForwardMode` and
    `Implicit` with a non-symmetric linear solver (`lx.GMRES`, `lx.BiCGStab`):
    the implicit function theorem is applied to the fixed-point residual
    ``x - prox(x - t grad f(x))``, differentiable wherever the prox is (for `L1`,
    wherever no entry sits exactly at the threshold). `Implicit` with `lx.CG`
    is refused.

    ??? cite "References"

        Beck, Teboulle. *A fast iterative shrinkage-thresholding algorithm for
        linear inverse problems*. SIAM J. Imaging Sci. 2009.
        O'Donoghue, Candès. *Adaptive restart for accelerated gradient schemes*.
        FoCM 2015.
    """

    prox: AbstractProx
    step_size: ScalarLike
    acceleration: bool = eqx.field(static=True, default=True)
    max_steps: int = eqx.field(static=True, default=1000)
    rtol: float | None = None
    atol: float = 0.0

    optimality_is_gradient = False

    def __check_init__(self):
        check_prox("ProximalGradient", "prox", self.prox)
        check_positive("ProximalGradient", "step_size", self.step_size)

    def check_objective(self, fn: Objective, x0: X, args: Args) -> None:
        check_prox_shapes("ProximalGradient", "prox", self.prox, x0, args)

    def _state_at(self, fn, x, args, residual0, previous, momentum) -> InnerState:
        t = self.step_size
        f, grad = value_and_grad(fn, x, args)
        candidate = self.prox(_axpy(-t, grad, x), t, args)
        residual = tree_norm(jtu.tree_map(jnp.subtract, x, candidate)) / t
        if residual0 is None:
            residual0 = residual
        value = f + self.prox.value(x, args)
        memory = ProximalMemory(candidate, previous, momentum)
        return InnerState(value, grad, residual, residual0, memory)

    def init(self, fn: Objective, x: X, args: Args) -> InnerState:
        if self.acceleration:
            one = jnp.ones((), jnp.result_type(*jtu.tree_leaves(x)))
            return self._state_at(fn, x, args, None, x, one)
        return self._state_at(fn, x, args, None, None, None)

    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        memory = state.extra
        if not self.acceleration:
            x_new = memory.candidate
            return x_new, self._state_at(fn, x_new, args, state.residual0, None, None)
        t = self.step_size
        momentum = memory.momentum
        momentum_next = (1.0 + jnp.sqrt(1.0 + 4.0 * momentum**2)) / 2.0
        beta = (momentum - 1.0) / momentum_next
        y = _axpy(beta, jtu.tree_map(jnp.subtract, x, memory.previous), x)
        grad_y = jax.grad(fn)(y, args)
        x_new = self.prox(_axpy(-t, grad_y, y), t, args)
        # Gradient restart: drop the momentum when the step y -> x_new opposes the
        # last move x -> x_new (a sign that it overshoots).
        direction = jtu.tree_map(jnp.subtract, x_new, x)
        uphill = tree_vdot(jtu.tree_map(jnp.subtract, y, x_new), direction) > 0
        momentum_next = jnp.where(uphill, jnp.ones_like(momentum), momentum_next)
        new_state = self._state_at(fn, x_new, args, state.residual0, x, momentum_next)
        return x_new, new_state

    def optimality(self, fn: Objective, x: X, args: Args) -> X:
        """The fixed-point residual ``x - prox(x - t grad f(x, args), t, args)``."""
        t = self.step_size
        grad = jax.grad(fn)(x, args)
        return jtu.tree_map(jnp.subtract, x, self.prox(_axpy(-t, grad, x), t, args))

    def refresh(self, fn: Objective, x: X, args: Args, state: InnerState) -> InnerState:
        # The cached ISTA candidate depends on `args`: recompute it with live ones.
        memory: PyTree = state.extra
        return self._state_at(
            fn, x, args, state.residual0, memory.previous, memory.momentum
        )
