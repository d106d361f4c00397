"""Any Optax gradient transformation as an inner solver."""

import equinox as eqx
import optax

from ..._custom_types import Args, Objective, X
from ..._promotion import optax_promotion as _optax_promotion
from ._base import AbstractInnerSolver, InnerState, tree_norm, value_and_grad


class OptaxSolver(AbstractInnerSolver):
    """Minimise with an `optax.GradientTransformation` (Adam, SGD with momentum, ...).

    Each step feeds the gradient at the current iterate to the transformation and
    applies its update: ``x <- x + update``. The transformation's state (moments,
    step counters) is kept in `InnerState.extra`.

    **Fields:**

    - `optimiser`: any `optax.GradientTransformation`, e.g. ``optax.adam(1e-2)``
      or ``optax.sgd(0.1, momentum=0.9)``. A `GradientTransformationExtraArgs`
      (for instance one chained with an Optax line search) also receives
      ``value``, ``grad`` and ``value_fn`` of the objective.
    - `max_steps`: iteration cap (static: fixes the length of unrolled loops).
      Default 1000.
    - `rtol`, `atol`: stop when ``|grad| <= atol + rtol * |grad(x0)|``.
      The default ``rtol=None`` follows the dtype: 1e-8 in float64, 2.4e-5 in
      float32 (see `AbstractInnerSolver.tolerances`).

    **Cost:** one gradient evaluation per step plus the transformation's own
    arithmetic.

    **Limits:** adaptive methods with a constant learning rate (Adam, RMSProp) do not
    converge to high accuracy on deterministic problems: their steps stay of the
    order of the learning rate. Use a schedule, a loose `rtol`/`atol`, or
    `GradientDescent`/`LBFGS` when the implicit hypergradient needs an accurate
    minimiser.

    `Unrolled` and `Truncated` work whenever the transformation is
    reverse-differentiable. Two exceptions: reverse mode through ``optax.adam``
    gives NaN where a gradient entry is exactly zero (the derivative of ``sqrt(v)``
    at 0; use ``optax.adam(lr, eps_root=1e-16)``), and a transformation containing a
    `while_loop` (such as `optax.scale_by_zoom_linesearch`) cannot be
    reverse-differentiated at all (JAX raises): use `LBFGS` with `Implicit()` or
    `ForwardMode()` instead.
    """

    optimiser: optax.GradientTransformation
    max_steps: int = eqx.field(static=True, default=1000)
    rtol: float | None = None
    atol: float = 0.0

    def __check_init__(self):
        if not isinstance(self.optimiser, optax.GradientTransformation):
            raise TypeError(
                "OptaxSolver(optimiser=...) must be an optax.GradientTransformation "
                f"such as optax.adam(1e-2); got {self.optimiser!r}."
            )

    def init(self, fn: Objective, x: X, args: Args) -> InnerState:
        value, grad = value_and_grad(fn, x, args)
        norm = tree_norm(grad)
        with _optax_promotion():
            opt_state = self.optimiser.init(x)
        return InnerState(value, grad, norm, norm, opt_state)

    def step(
        self, fn: Objective, x: X, args: Args, state: InnerState
    ) -> tuple[X, InnerState]:
        with _optax_promotion():
            if isinstance(self.optimiser, optax.GradientTransformationExtraArgs):
                # Line searches need the objective itself; transformations that do
                # not use these keywords ignore them (Optax's extra-args protocol).
                updates, opt_state = self.optimiser.update(
                    state.grad,
                    state.extra,
                    x,
                    value=state.value,
                    grad=state.grad,
                    value_fn=lambda y: fn(y, args),
                )
            else:
                updates, opt_state = self.optimiser.update(state.grad, state.extra, x)
            x = optax.apply_updates(x, updates)
        value, grad = value_and_grad(fn, x, args)
        new_state = InnerState(value, grad, tree_norm(grad), state.residual0, opt_state)
        return x, new_state
