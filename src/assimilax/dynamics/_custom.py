"""Bring your own model: a vector-field function with parameters."""

from collections.abc import Callable

import equinox as eqx
from jaxtyping import Array, Float, PyTree

from .._custom_types import ScalarLike
from .._structure import by_structure
from ._base import AbstractODEDynamics
from ._integrator import AbstractIntegrator, Integrator


class VectorFieldDynamics(AbstractODEDynamics):
    """``dx/dt = fn(t, x, params)`` for any function `fn`.

    **Arguments:**

    - `fn`: the vector field ``fn(t, x, params) -> dx/dt`` (same shape as `x`); a
      static field, so use a module-level function or an `eqx.Module` to avoid
      recompilation.
    - `params`: any pytree of parameters (a trainable field: gradients of a
      trajectory with respect to it come through `eqx.filter_grad`).
    - `shape`: the state shape, checked against `x0` (static; None: any shape).
    - `integrator`: default ``Integrator()`` (adaptive `Tsit5`, rtol = atol =
      1e-6); pick an implicit solver for stiff models.

    For a model with its own fields and methods (e.g. a closed-form flow for
    `ExactFlow()`), subclass [`assimilax.dynamics.AbstractODEDynamics`][] instead:
    define the parameter fields, an `integrator` field with a default,
    `vector_field`, and optionally `state_shape` and `exact_flow`.

    ```python
    def decay(t, x, rate):
        return -rate * x

    model = VectorFieldDynamics(decay, jnp.array(0.5), shape=(3,))
    model.integrate(jnp.ones(3), jnp.linspace(0.0, 1.0, 5))
    ```
    """

    fn: Callable = eqx.field(static=True, converter=by_structure)
    params: PyTree = None
    shape: tuple[int, ...] | None = eqx.field(static=True, default=None)
    integrator: AbstractIntegrator = eqx.field(static=True, default=Integrator())

    def __check_init__(self):
        if not callable(self.fn):
            raise TypeError(
                f"VectorFieldDynamics(fn=...) must be callable, got {self.fn!r}."
            )

    @property
    def state_shape(self) -> tuple[int, ...] | None:
        return None if self.shape is None else tuple(self.shape)

    def vector_field(
        self, t: ScalarLike, x: Float[Array, "*state"], args: PyTree = None
    ) -> Float[Array, "*state"]:
        del args
        return self.fn(t, x, self.params)
