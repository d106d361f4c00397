"""The two-scale Lorenz (1996) model: slow variables coupled to fast ones."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PyTree

from .._custom_types import ScalarLike
from ._base import AbstractODEDynamics
from ._checks import as_float, is_concrete
from ._fixed_step import FixedStepRK4
from ._integrator import AbstractIntegrator


class TwoScaleLorenz96(AbstractODEDynamics):
    """Lorenz-96 with ``K`` slow variables ``X``, each driving ``J`` fast ones ``Y``.

    With ``k(j) = j // J`` the slow variable that fast variable ``j`` belongs to
    and all indices periodic (``X`` on a ring of ``K``, ``Y`` on one ring of
    ``K J``):

    ```
    dX_k/dt = X_{k-1} (X_{k+1} - X_{k-2}) - X_k + F - (h c / b) sum_{j: k(j) = k} Y_j
    dY_j/dt = -c b Y_{j+1} (Y_{j+2} - Y_{j-1}) - c Y_j + (h c / b) X_{k(j)}
    ```

    The fast ring runs "backwards" (its advection is Lorenz-96's mirrored) and is
    ``c`` times faster and ``b`` times smaller than the slow one: the model behind
    parametrisation and model-error learning studies (a truncated model on ``X``
    alone misses the coupling term, which a correction can learn). These are the
    equations and the state ordering of DAPPER's ``LorenzUV`` (``U`` = ``X``,
    ``V`` = ``Y``); the defaults here are Lorenz's (1996) ``K = 36``, ``J = 10``,
    ``F = 10`` rather than DAPPER's Wilks (2005) ones (``K = 8``, ``J = 32``,
    ``F = 20``).

    **Fields:**

    - `K`: number of slow variables (static, >= 4; default 36).
    - `J`: number of fast variables per slow one (static, >= 1; default 10).
    - `F` (forcing, default 10), `h` (coupling, 1), `b` (spatial-scale ratio, 10,
      > 0), `c` (time-scale ratio, 10): scalars, array fields, learnable.
    - `integrator`: default `FixedStepRK4(dt=0.005)` (classical RK4; a step that
      resolves the fast scale with the default parameters, ten times smaller
      than Lorenz-96's 0.05). Larger `c` or `b` needs a smaller step.

    The state is one flat vector of shape ``(K + K J,)``: the ``K`` slow
    variables first, then the ``K J`` fast ones, block ``k`` (entries
    ``K + k J`` to ``K + (k + 1) J - 1``) belonging to ``X_k``. `slow` and `fast`
    split a state or a trajectory into shapes ``(..., K)`` and ``(..., K, J)``;
    `slow_indices` are the positions of ``X`` in the state, e.g. for
    ``Stations(model.slow_indices, grid_shape=model.state_shape)``.

    **Cost:** 4 vector-field evaluations of O(K J) per step. With the defaults the
    time step is set by the fast scale (``c = 10``): 200 steps per time unit, ten
    times Lorenz-96's, and gradients through a window store every step.

    **Raises:** `ValueError` for ``K < 4``, ``J < 1``, a non-scalar parameter, or
    ``b <= 0``.

    ??? cite "References"

        Lorenz. *Predictability: a problem partly solved*. ECMWF seminar 1996.
        Wilks. *Effects of stochastic parametrizations in the Lorenz '96 system*.
        Q. J. R. Meteorol. Soc. 2005.
    """

    K: int = eqx.field(static=True, default=36)
    J: int = eqx.field(static=True, default=10)
    F: Float[Array, ""] = eqx.field(converter=as_float, default=10.0)
    h: Float[Array, ""] = eqx.field(converter=as_float, default=1.0)
    b: Float[Array, ""] = eqx.field(converter=as_float, default=10.0)
    c: Float[Array, ""] = eqx.field(converter=as_float, default=10.0)
    integrator: AbstractIntegrator = eqx.field(
        static=True, default=FixedStepRK4(dt=0.005)
    )

    def __check_init__(self):
        if self.K < 4:
            raise ValueError(f"TwoScaleLorenz96(K=...) must be >= 4, got {self.K}.")
        if self.J < 1:
            raise ValueError(f"TwoScaleLorenz96(J=...) must be >= 1, got {self.J}.")
        for name in ("F", "h", "b", "c"):
            value = getattr(self, name)
            if jnp.ndim(value) != 0:
                raise ValueError(
                    f"TwoScaleLorenz96({name}=...) must be a scalar, got shape "
                    f"{jnp.shape(value)}."
                )
        if is_concrete(self.b) and not np.asarray(self.b) > 0:
            raise ValueError(
                f"TwoScaleLorenz96(b=...) must be > 0, got {np.asarray(self.b)}."
            )

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.K + self.K * self.J,)

    @property
    def slow_indices(self) -> Int[np.ndarray, " K"]:
        """The positions of the slow variables in the state, ``arange(K)``, shape
        ``(K,)`` (a NumPy array, for observation operators such as `Stations`)."""
        return np.arange(self.K)

    def _check_last_axis(self, x: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
        x = jnp.asarray(x)
        (n,) = self.state_shape
        if x.ndim == 0 or x.shape[-1] != n:
            raise ValueError(
                f"TwoScaleLorenz96(K={self.K}, J={self.J}) states have {n} values "
                f"along the last axis, got shape {x.shape}."
            )
        return x

    def slow(self, x: Float[ArrayLike, "*batch n"]) -> Float[Array, "*batch K"]:
        """The slow variables ``X`` of a state (or trajectory, ensemble...) `x` of
        shape ``(*batch, K + K J)`` (JAX or NumPy): a JAX array of shape
        ``(*batch, K)``.

        **Raises:** `ValueError` when the last axis of `x` is not ``K + K J``.
        """
        x = self._check_last_axis(x)
        return x[..., : self.K]

    def fast(self, x: Float[ArrayLike, "*batch n"]) -> Float[Array, "*batch K J"]:
        """The fast variables ``Y`` of `x` (shape ``(*batch, K + K J)``) as blocks,
        shape ``(*batch, K, J)``: ``fast(x)[..., k, :]`` are those coupled to
        ``X_k``.

        **Raises:** `ValueError` when the last axis of `x` is not ``K + K J``.
        """
        x = self._check_last_axis(x)
        return x[..., self.K :].reshape(x.shape[:-1] + (self.K, self.J))

    def vector_field(
        self, t: ScalarLike, x: Float[Array, " n"], args: PyTree = None
    ) -> Float[Array, " n"]:
        del t, args
        F, h, b, c = (p.astype(x.dtype) for p in (self.F, self.h, self.b, self.c))
        X, Y = x[: self.K], x[self.K :]
        coupling = h * c / b
        # jnp.roll(v, -1)[i] = v[i+1]; jnp.roll(v, 2)[i] = v[i-2].
        dX = (
            jnp.roll(X, 1) * (jnp.roll(X, -1) - jnp.roll(X, 2))
            - X
            + F
            - coupling * Y.reshape(self.K, self.J).sum(axis=1)
        )
        dY = (
            -c * b * jnp.roll(Y, -1) * (jnp.roll(Y, -2) - jnp.roll(Y, 1))
            - c * Y
            + coupling * jnp.repeat(X, self.J)
        )
        return jnp.concatenate([dX, dY])
