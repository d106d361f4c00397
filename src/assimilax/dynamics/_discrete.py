"""Bring your own discrete-time model: a step function applied every `dt`."""

from collections.abc import Callable

import equinox as eqx
import jax.lax as lax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree, Real

from .._custom_types import ScalarLike
from .._structure import by_structure
from ._base import AbstractDynamics
from ._checks import check_state, check_times, is_concrete, step_counts


class DiscreteDynamics(AbstractDynamics):
    """A map ``x_{k+1} = step_fn(x_k, params)`` that advances time by `dt`.

    **Arguments:**

    - `step_fn`: one model step ``step_fn(x, params) -> x_next`` (static field).
    - `dt`: the time one step covers (static float, > 0).
    - `params`: any pytree of parameters (trainable; `eqx.filter_grad` works
      through `integrate`).
    - `shape`: the state shape, checked against `x0` (static; None: any shape).

    `integrate(x0, times)` applies the step with `jax.lax.scan` up to the last
    time and returns the states at `times`, which must be multiples of `dt` after
    ``times[0]``.

    **Cost and limits:** ``(times[-1] - times[0]) / dt`` steps, and every
    intermediate state is kept (memory O(steps x state)). The number of steps
    fixes array shapes, so `times` must be concrete: under `jit`, close over them
    or mark them static instead of passing them as traced arrays.
    There is no vector field: `vector_field` raises a `TypeError`.
    """

    step_fn: Callable = eqx.field(static=True, converter=by_structure)
    dt: float = eqx.field(static=True)
    params: PyTree = None
    shape: tuple[int, ...] | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not callable(self.step_fn):
            raise TypeError(
                f"DiscreteDynamics(step_fn=...) must be callable, got {self.step_fn!r}."
            )
        if not self.dt > 0:
            raise ValueError(f"DiscreteDynamics(dt=...) must be > 0, got {self.dt}.")

    @property
    def state_shape(self) -> tuple[int, ...] | None:
        return None if self.shape is None else tuple(self.shape)

    def vector_field(
        self, t: ScalarLike, x: Float[Array, "*state"], args: PyTree = None
    ) -> Float[Array, "*state"]:
        raise TypeError(
            "DiscreteDynamics has no vector field, only a step: use `integrate`."
        )

    def integrate(
        self, x0: Real[ArrayLike, "*state"], times: Real[ArrayLike, "..."]
    ) -> Float[Array, " time *state"]:
        x0 = check_state("DiscreteDynamics", x0, self.state_shape)
        if not is_concrete(times):
            raise ValueError(
                "DiscreteDynamics needs concrete `times` (the step count fixes "
                "array shapes): close over them rather than tracing them under jit."
            )
        times = check_times(times, x0.dtype)
        steps = step_counts(times, self.dt, x0.dtype)
        if steps is None:
            raise ValueError(
                f"`times` must be times[0] plus multiples of DiscreteDynamics(dt="
                f"{self.dt}); got times {np.asarray(times).tolist()}."
            )

        states = _step_states(self, x0, int(steps[-1]))
        return jnp.concatenate([x0[None], states])[steps]


# Compiled once per model structure, shapes and step count: an eager `lax.scan`
# of a closure built per call would compile anew every call.
@eqx.filter_jit
def _step_states(model: DiscreteDynamics, x0, length: int):
    """The states after each of `length` steps from `x0`, ``(length, *state)``."""

    def body(x, _):
        x_next = model.step_fn(x, model.params)
        return x_next, x_next

    _, states = lax.scan(body, x0, length=length)
    return states
