"""Line searches for `LBFGS`: a backtracking search (the default) and Optax's.

Written by hand because neither library has the search a quasi-Newton step wants
here. Optax's zoom search (strong Wolfe) costs 1.1x to 1.6x the time per `LBFGS`
step of this one (measured in ``benchmarks/peers.py``); Optax's and
Optimistix's backtracking searches test the decrease on values only, so they stall
once it is below the round-off of the objective. This one backtracks from the
quasi-Newton step and also accepts the *approximate* Armijo test of Hager and
Zhang (from the directional derivative, which the gradient evaluated at the trial
point gives for free), which still holds at round-off level.
"""

import abc
from typing import Any

import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
import jax.tree_util as jtu
import optax

from ..._custom_types import Args, BoolScalar, Objective, Scalar, X
from ..._promotion import optax_promotion
from ._base import tree_vdot, value_and_grad


class AbstractLineSearch(eqx.Module):
    """A step-length rule along a descent direction (for `LBFGS`).

    `search` returns the accepted point with the objective and its gradient there,
    so that the solver evaluates nothing again. `init` builds the search's own
    state (carried from step to step); stateless searches return `None`.
    """

    def init(self, x: X) -> Any:
        """The search's state before the first step (`None` if it keeps none)."""
        del x
        return None

    @abc.abstractmethod
    def search(
        self,
        fn: Objective,
        args: Args,
        x: X,
        value: Scalar,
        grad: X,
        direction: X,
        state: Any,
    ) -> tuple[X, Scalar, X, BoolScalar, Any]:
        """A step along `direction` (a descent direction, ``grad . direction < 0``).

        **Returns:** ``(x_new, value_new, grad_new, ok, state)``: the new point, the
        objective and its gradient there, whether the search's test held, and the
        search's next state. A failed search returns its best point if the value
        decreased there, else ``x`` itself (and `ok` is `False`).
        """


class BacktrackingLineSearch(AbstractLineSearch):
    """Backtracking from the full step, with Armijo's test or its approximate form.

    Tries ``t = 1`` (the quasi-Newton step), then shrinks ``t`` to the minimiser
    of the quadratic through ``f(x)``, the directional derivative at ``x`` and
    ``f(x + t d)``, kept within ``[0.1 t, 0.5 t]``, until either

    - Armijo's sufficient decrease ``f(x + t d) <= f(x) + c1 t g.d``, or
    - its approximate form (Hager and Zhang 2005): ``f(x + t d) <= f(x) +
      value_rtol |f(x)|`` and ``g(x + t d).d <= (2 c1 - 1) g.d``. On a quadratic
      this is Armijo's test computed from gradients, so it still decides once the
      decrease is below the round-off of `f` (where the value test alone fails
      and a search that uses only it stalls).

    Every trial evaluates the value and the gradient together (one reverse pass),
    so the accepted trial's gradient is the next step's.

    **Fields:**

    - `c1`: sufficient-decrease constant, in (0, 0.5). Default 1e-4.
    - `max_steps`: shrinks before giving up (static). Default 20 (``t`` down to
      between 1e-20 and 1e-6).
    - `value_rtol`: the relative increase of `f` the approximate test tolerates
      (round-off); `None` (default) is ``sqrt(eps)`` of the objective's dtype
      (1.5e-8 in float64, 3.5e-4 in float32); 0 switches the approximate test off.

    **Cost:** one value-and-gradient evaluation per trial; a quasi-Newton step is
    usually accepted at the first (measured: 1.05 to 1.15 trials per L-BFGS step
    on the problems of ``benchmarks/peers.py``).

    **Limits:** no curvature (Wolfe) condition: `LBFGS` skips the curvature pairs
    with ``s.y <= 0`` instead, so its inverse-Hessian approximation stays positive
    definite. A failed search (no acceptable trial after `max_steps` shrinks)
    returns its best point if the value decreased there, else the start; `LBFGS`
    then clears its memory and retries along the gradient.

    ??? cite "References"

        Hager, Zhang. *A new conjugate gradient method with guaranteed descent and
        an efficient line search*. SIAM J. Optim. 2005 (the approximate Wolfe
        conditions). Nocedal, Wright. *Numerical Optimization*, 2nd ed., 2006,
        Section 3.5 (interpolating backtracking).
    """

    c1: float = 1e-4
    max_steps: int = eqx.field(static=True, default=20)
    value_rtol: float | None = None

    def __check_init__(self):
        if not 0 < self.c1 < 0.5:
            raise ValueError(
                f"BacktrackingLineSearch(c1=...) must be in (0, 0.5), got {self.c1}."
            )
        if self.max_steps < 0:
            raise ValueError(
                "BacktrackingLineSearch(max_steps=...) must be >= 0, got "
                f"{self.max_steps}."
            )
        if self.value_rtol is not None and not self.value_rtol >= 0:
            raise ValueError(
                "BacktrackingLineSearch(value_rtol=...) must be >= 0, got "
                f"{self.value_rtol}."
            )

    def search(self, fn, args, x, value, grad, direction, state):
        dtype = value.dtype
        slope = tree_vdot(grad, direction)  # < 0: a descent direction
        if self.value_rtol is None:
            value_rtol = jnp.sqrt(jnp.finfo(dtype).eps)
        else:
            value_rtol = jnp.asarray(self.value_rtol, dtype)
        value_tol = value + value_rtol * jnp.abs(value)
        c1 = jnp.asarray(self.c1, dtype)

        def trial(t):
            y = jtu.tree_map(lambda xi, di: xi + t.astype(xi.dtype) * di, x, direction)
            f, g = value_and_grad(fn, y, args)
            return y, f, g

        def acceptable(t, f, g):
            armijo = f <= value + c1 * t * slope
            approximate = (f <= value_tol) & (
                tree_vdot(g, direction) <= (2 * c1 - 1) * slope
            )
            return jnp.isfinite(f) & (armijo | approximate)

        def cond(carry):
            t, _, f, g, k = carry
            return jnp.logical_not(acceptable(t, f, g)) & (k < self.max_steps)

        def body(carry):
            t, _, f, _, k = carry
            # Minimiser of the quadratic with f(x), slope and f(x + t d); a NaN
            # or inf trial falls to the lower safeguard.
            curvature = 2 * (f - value - slope * t)
            ok = jnp.isfinite(f) & (curvature > 0)
            guess = -slope * t**2 / jnp.where(ok, curvature, 1)
            t = jnp.clip(jnp.where(ok, guess, 0), 0.1 * t, 0.5 * t)
            y, f, g = trial(t)
            return t, y, f, g, k + 1

        one = jnp.ones((), dtype)
        y, f, g = trial(one)
        t, y, f, g, _ = lax.while_loop(cond, body, (one, y, f, g, jnp.array(0)))
        ok = acceptable(t, f, g)
        # A failed search keeps its last trial only if it decreased the value.
        keep = ok | (f < value)
        y, f, g = _select(keep, (y, f, g), (x, value, grad))
        return y, f, g, ok, state


class OptaxLineSearch(AbstractLineSearch):
    """An Optax line search (`optax.scale_by_zoom_linesearch`,
    `optax.scale_by_backtracking_linesearch`) behind the `AbstractLineSearch`
    interface: what ``LBFGS(linesearch=optax...)`` runs."""

    transformation: optax.GradientTransformation

    def init(self, x):
        with optax_promotion():
            return self.transformation.init(x)

    def search(self, fn, args, x, value, grad, direction, state):
        def value_fn(y):
            return fn(y, args)

        with optax_promotion():
            updates, state = self.transformation.update(
                direction, state, x, value=value, grad=grad, value_fn=value_fn
            )
            y = optax.apply_updates(x, updates)
            stored = (optax.tree.get(state, k) for k in ("value", "grad"))
            if any(leaf is None for leaf in stored):
                # A search that keeps no value/grad (the backtracking one without
                # `store_grad=True`): evaluate them.
                f, g = value_and_grad(fn, y, args)
            else:
                # The search evaluated the objective at the accepted point; Optax's
                # helper reuses it (and re-evaluates if not finite).
                f, g = optax.value_and_grad_from_state(value_fn)(y, state=state)
        # Optax's searches report no failure in a common form: never reset.
        return y, f, g, jnp.array(True), state


def _select(pred, on_true, on_false):
    return jtu.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
