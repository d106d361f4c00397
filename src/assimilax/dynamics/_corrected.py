"""A model plus a learnable correction of its tendency (model-error learning)."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PyTree

from .._custom_types import ScalarLike
from ._base import AbstractODEDynamics
from ._integrator import AbstractIntegrator, ExactFlow


class CorrectedDynamics(AbstractODEDynamics):
    """``dx/dt = base.vector_field(t, x) + correction(x)``: a hybrid model.

    The physical model `base` is kept and a learnt term, typically a small
    network, is added to its tendency (Brajard et al. 2020; Bocquet et al. 2020):
    the outer loop of `fit` learns the correction's weights, and the base's own
    parameters (its `F`...) too unless they are frozen, through the trajectories
    of this model.

    **Arguments:**

    - `base`: any [`assimilax.dynamics.AbstractODEDynamics`][] (a trainable
      field). Its `state_shape` and `grid` are this model's.
    - `correction`: a callable ``correction(x)`` returning an array of `x`'s shape
      ``(*state)``, e.g. [`assimilax.dynamics.LocalConvCorrection`][] or
      [`assimilax.dynamics.LinearCorrection`][] (a trainable field: make it an
      `eqx.Module`, so that its arrays are parameters and jit keys it by
      structure). Its output is cast to the dtype of the base's tendency.
    - `integrator`: keyword-only; default None: the base's integrator,
      resolved at construction (so ``dataclasses.replace(model, base=...)``
      keeps the integrator it had: pass `integrator=` again if the new base
      needs another one).

    **Cost:** one base tendency plus one correction evaluation per stage; the
    correction is evaluated inside the integrator, so reverse mode stores its
    activations at every stage of every step.

    **Raises:** `TypeError` when `base` is not an `AbstractODEDynamics` or
    `correction` is not callable, or when the base integrates by `ExactFlow()`
    (a corrected model has no closed-form flow) and no `integrator` is given.
    `ValueError` when the base has a `state_shape` and the correction, applied
    (by `jax.eval_shape`, nothing is computed) to a state of that shape, fails or
    returns another shape or a non-floating dtype.

    ??? cite "References"

        Brajard, Carrassi, Bocquet, Bertino. *Combining data assimilation and
        machine learning to emulate a dynamical model from sparse and noisy
        observations: a case study with the Lorenz 96 model*. J. Comput. Sci.
        2020.
        Bocquet, Brajard, Carrassi, Bertino. *Bayesian inference of chaotic
        dynamics by merging data assimilation, machine learning and
        expectation-maximization*. Found. Data Sci. 2020.
    """

    base: AbstractODEDynamics
    correction: Callable
    integrator: AbstractIntegrator = eqx.field(static=True)

    def __init__(
        self,
        base: AbstractODEDynamics,
        correction: Callable,
        *,
        integrator: AbstractIntegrator | None = None,
    ):
        if not isinstance(base, AbstractODEDynamics):
            raise TypeError(
                "CorrectedDynamics(base=...) must be an AbstractODEDynamics (a "
                f"continuous model such as Lorenz96()), got {type(base).__name__}."
            )
        if not callable(correction):
            raise TypeError(
                "CorrectedDynamics(correction=...) must be callable, e.g. "
                f"LocalConvCorrection(key=...), got {correction!r}."
            )
        if integrator is None:
            if isinstance(base.integrator, ExactFlow):
                raise TypeError(
                    f"CorrectedDynamics(base={type(base).__name__}(...)) would "
                    "inherit integrator=ExactFlow(), but a corrected model has no "
                    "closed-form flow: pass integrator=Integrator(...) (diffrax)."
                )
            integrator = base.integrator
        self.base = base
        self.correction = correction
        self.integrator = integrator

    def __check_init__(self):
        shape = self.state_shape
        if shape is None:
            return
        state = jax.ShapeDtypeStruct(shape, jnp.result_type(float))
        try:
            out = jax.eval_shape(self.correction, state)
        except Exception as error:
            raise ValueError(
                f"CorrectedDynamics(correction=...) fails on a state of shape "
                f"{shape} (the state shape of {type(self.base).__name__}): {error}"
            ) from error
        if not (
            isinstance(out, jax.ShapeDtypeStruct)
            and out.shape == shape
            and jnp.issubdtype(out.dtype, jnp.floating)
        ):
            got = (
                f"shape {out.shape} and dtype {out.dtype}"
                if isinstance(out, jax.ShapeDtypeStruct)
                else f"{jax.tree.structure(out)}"
            )
            raise ValueError(
                "CorrectedDynamics(correction=...) must return a floating array of "
                f"the state's shape {shape} (the state shape of "
                f"{type(self.base).__name__}), got {got}."
            )

    @property
    def state_shape(self) -> tuple[int, ...] | None:
        return self.base.state_shape

    @property
    def grid(self) -> tuple[np.ndarray, ...] | None:
        return self.base.grid

    def vector_field(
        self, t: ScalarLike, x: Float[Array, "*state"], args: PyTree = None
    ) -> Float[Array, "*state"]:
        tendency = self.base.vector_field(t, x, args)
        return tendency + self.correction(x).astype(tendency.dtype)
