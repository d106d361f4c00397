"""`Observations`: data, mask and times, the operator ``H`` and the noise ``R``."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Real, Shaped

from .._custom_types import Scalar, ScalarLike
from ._noise import AbstractNoise, is_concrete
from ._operators import AbstractObservationOperator


class Observations(eqx.Module):
    """Observations over an assimilation window and their error model.

    **Arguments** (the fields, in this order):

    - `values`: the data, shape ``(time, *obs)``. NaN marks a missing value: it
      becomes `False` in `mask` and is stored as 0, so that no NaN reaches a
      gradient.
    - `mask`: boolean, ``(time, *obs)``, `True` where observed; or `None` for "all
      values that are not NaN". The stored mask is ``mask & ~isnan(values) &
      operator.observed()``.
    - `times`: strictly increasing observation times, ``(time,)``, cast to the
      dtype of `values`. They need not fall on model steps: the variational
      problem integrates the model to each of them.
    - `operator`: an `AbstractObservationOperator` applied to the state at each time.
    - `noise`: an `AbstractNoise`, the covariance ``R`` at one time.

    **Raises:** `TypeError` for non-floating `values` or an `operator`/`noise` of the
    wrong type; `ValueError` when shapes disagree (naming the field), when
    `times` are not strictly increasing, or when `values` hold inf. Under jit the
    value checks become `eqx.error_if` (an `EquinoxRuntimeError` at run time).

    **Cost:** `misfit` and `residuals` cost one application of ``H`` and of
    ``R^{-1/2}`` per observation time; everything is jit/vmap/grad-able and the
    floating fields (data, noise std, a `Linear` matrix) are valid outer
    parameters.
    """

    values: Float[Array, " time *obs"]
    mask: Bool[Array, " time *obs"]
    times: Float[Array, " time"]
    operator: AbstractObservationOperator
    noise: AbstractNoise

    # Loose input annotations on purpose: the checks below give messages that name
    # the field; the fields' own annotations are strict.
    def __init__(
        self,
        values: Shaped[ArrayLike, "..."],
        mask: Shaped[ArrayLike, "..."] | None,
        times: Real[ArrayLike, "..."],
        operator: AbstractObservationOperator,
        noise: AbstractNoise,
    ):
        if not isinstance(operator, AbstractObservationOperator):
            raise TypeError(
                "Observations(operator=...) must be an AbstractObservationOperator "
                f"(e.g. Identity()), got {type(operator).__name__}."
            )
        if not isinstance(noise, AbstractNoise):
            raise TypeError(
                "Observations(noise=...) must be an AbstractNoise (e.g. "
                f"ScalarNoise(1.0)), got {type(noise).__name__}."
            )
        values = jnp.asarray(values)
        if not jnp.issubdtype(values.dtype, jnp.floating) or values.ndim < 1:
            raise TypeError(
                "Observations(values=...) must be a floating array with a leading "
                f"time axis, got dtype {values.dtype} and shape {values.shape}."
            )
        if is_concrete(times):
            # Concrete times stay concrete under jit/vmap (a problem built there,
            # e.g. per window in `fit`, needs its time grid to fix shapes).
            with jax.ensure_compile_time_eval():
                array_times = jnp.asarray(times, dtype=values.dtype)
        else:
            array_times = jnp.asarray(times, dtype=values.dtype)
        times = _check_times(times, array_times, values.shape[0])
        obs_shape = values.shape[1:]
        if operator.state_shape is not None:
            expected = operator.obs_shape(operator.state_shape)
            if expected != obs_shape:
                raise ValueError(
                    f"Observations(values=...) have shape {obs_shape} at each time but "
                    f"{type(operator).__name__} produces {expected}."
                )
        missing = jnp.isnan(values)
        observed = ~missing
        if mask is not None:
            mask = jnp.asarray(mask)
            if mask.dtype != jnp.bool_ or mask.shape != values.shape:
                raise ValueError(
                    f"Observations(mask=...) must be boolean of shape {values.shape} "
                    f"(that of `values`), got {mask.dtype} of shape {mask.shape}."
                )
            observed = observed & mask
        operator_mask = operator.observed()
        if operator_mask is not None:
            # Explicit broadcast over time: implicit rank promotion is an error.
            observed = observed & jnp.broadcast_to(operator_mask, values.shape)
        values = _check_finite(values, missing)
        # Zeros, not NaN, where unobserved: `where` would still send NaN cotangents.
        self.values = jnp.where(observed, values, jnp.zeros_like(values))
        self.mask = observed
        self.times = times
        self.operator = operator
        self.noise = noise

    def _innovations(self, states: Float[Array, " time *state"]) -> Float[Array, "..."]:
        if states.ndim < 1 or states.shape[0] != self.times.shape[0]:
            raise ValueError(
                f"`states` must have a leading time axis of length "
                f"{self.times.shape[0]} (one state per observation time), got shape "
                f"{states.shape}."
            )
        predicted = jax.vmap(self.operator)(states)
        if predicted.shape != self.values.shape:
            raise ValueError(
                f"H(states) has shape {predicted.shape} but `values` has shape "
                f"{self.values.shape}."
            )
        # Sign: H x - y, so that residuals match the background's (x - xb) / std.
        return jnp.where(self.mask, predicted - self.values, jnp.zeros_like(predicted))

    def misfit(self, states: Float[Array, " time *state"]) -> Scalar:
        """``0.5 Σ_t (H x_t - y_t)ᵀ R⁻¹ (H x_t - y_t)`` over observed entries only.

        `states` are the model states at `times`, shape ``(time, *state)``.
        """
        innovations = self._innovations(states)
        return jnp.sum(jax.vmap(self.noise.weighted_square)(innovations))

    def residuals(
        self, states: Float[Array, " time *state"]
    ) -> Float[Array, " time *obs"]:
        """Whitened residuals ``R^{-1/2} (H x_t - y_t)``, zero where not observed,
        shape ``(time, *obs)``, for `states` of shape ``(time, *state)``.

        For sums-of-squares noise models ``misfit == 0.5 * sum(residuals**2)``.
        """
        return jax.vmap(self.noise.whiten)(self._innovations(states))

    def check_window(self, t0: ScalarLike, t1: ScalarLike) -> "Observations":
        """`self`, after checking that every time lies in ``[t0, t1]`` (scalars).

        **Raises:** `ValueError` naming the first offending time (eagerly), or an
        `EquinoxRuntimeError` at run time when the times are traced.
        """
        t0 = jnp.asarray(t0, dtype=self.times.dtype)
        t1 = jnp.asarray(t1, dtype=self.times.dtype)
        outside = (self.times < t0) | (self.times > t1)
        message = "Observations.times lie outside the assimilation window"
        if is_concrete(self.times) and is_concrete(t0) and is_concrete(t1):
            bad = np.asarray(outside)
            if bad.any():
                first = float(np.asarray(self.times)[bad.argmax()])
                raise ValueError(
                    f"{message} [{float(t0)}, {float(t1)}]: time {first} (and "
                    f"{int(bad.sum()) - 1} more)."
                )
            return self
        times = eqx.error_if(self.times, jnp.any(outside), message + ".")
        return eqx.tree_at(lambda obs: obs.times, self, times)


def _check_times(
    given: Real[ArrayLike, "..."], times: Float[Array, " time"], num: int
) -> Float[Array, " time"]:
    if times.shape != (num,):
        raise ValueError(
            f"Observations(times=...) has shape {times.shape} but `values` has {num} "
            "times."
        )
    message = "Observations(times=...) must be strictly increasing."
    # Judge concreteness on the input as given: under `jit`, even the jnp copy of
    # NumPy times is a tracer, which would defer the check to run time.
    if is_concrete(given):
        concrete = np.asarray(given)
        if not np.all(concrete[1:] > concrete[:-1]):
            raise ValueError(message)
        return times
    return eqx.error_if(times, ~jnp.all(times[1:] > times[:-1]), message)


def _check_finite(
    values: Float[Array, " time *obs"], missing: Bool[Array, " time *obs"]
) -> Float[Array, " time *obs"]:
    # NaN means "missing"; inf is no convention of ours, so it is an error.
    bad = jnp.any(~jnp.isfinite(values) & ~missing)
    message = "Observations(values=...) contain inf (use NaN for missing values)."
    # `values` may be concrete while `missing` (or `bad`) was traced under `jit`.
    if is_concrete(bad):
        if bool(bad):
            raise ValueError(message)
        return values
    return eqx.error_if(values, bad, message)
