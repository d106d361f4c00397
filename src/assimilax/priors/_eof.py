"""Empirical orthogonal functions of a history, and DINEOF-style gap filling."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from ..bilevel import Anderson, fixed_point


class EOFBasis(eqx.Module):
    """The mean and leading EOFs of a history of fields, for gap filling.

    Built by `EOFBasis.fit` from complete historical fields (NaN allowed on points
    that are never valid, such as land). `reconstruct` fills the gaps of an
    observed field the way DINEOF does (Beckers & Rixen 2003; Alvera-Azcárate et
    al. 2005): start from the mean at the missing points, project on the leading
    EOFs, put the observed values back, and repeat until the projection no longer
    changes. The iteration is a fixed point ``c = T(c)`` in the EOF coefficients,
    solved by `fixed_point` with Anderson acceleration; its limit is the
    least-squares fit of the coefficients to the observed points.

    **Fields:**

    - `mean`: ``(*space)``, the time mean (0 on invalid points).
    - `components`: ``(rank, *space)``, orthonormal EOFs (0 on invalid points).
    - `singular_values`: ``(rank,)``, of the anomaly matrix, decreasing.
    - `valid`: ``(*space)`` booleans, the points the basis covers.
    """

    mean: Float[Array, "*space"]
    components: Float[Array, " rank *space"]
    singular_values: Float[Array, " rank"]
    valid: Bool[Array, "*space"]

    @classmethod
    def fit(
        cls,
        history: Float[ArrayLike, " time *space"],
        rank: int,
        valid: Bool[ArrayLike, "*space"] | None = None,
    ) -> "EOFBasis":
        """The `rank` leading EOFs of `history`, shape ``(time, *space)``.

        `valid` (``(*space)``) defaults to the points finite at every time;
        `history` must be finite there. **Raises:** `ValueError` for a rank outside
        ``[1, min(time, valid points)]``, non-finite values on valid points, or no
        valid point.
        """
        history = np.asarray(history)
        if history.ndim < 2:
            raise ValueError(
                f"EOFBasis.fit(history=...) must be (time, *space), got shape "
                f"{history.shape}."
            )
        if valid is None:
            valid = np.all(np.isfinite(history), axis=0)
        valid = np.asarray(valid, bool)
        if valid.shape != history.shape[1:]:
            raise ValueError(
                f"EOFBasis.fit(valid=...) has shape {valid.shape}, the fields "
                f"{history.shape[1:]}."
            )
        flat = history[:, valid]
        if flat.shape[1] == 0:
            raise ValueError("EOFBasis.fit: no valid point in `history`.")
        if not np.all(np.isfinite(flat)):
            raise ValueError(
                "EOFBasis.fit(history=...) has NaN or inf on valid points; pass "
                "`valid` to exclude them."
            )
        if not 1 <= rank <= min(flat.shape):
            raise ValueError(
                f"EOFBasis.fit(rank=...) must be in [1, {min(flat.shape)}] for "
                f"{flat.shape[0]} fields of {flat.shape[1]} valid points; got {rank}."
            )
        mean = flat.mean(axis=0)
        _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
        components = np.zeros((rank, *valid.shape), flat.dtype)
        components[:, valid] = vt[:rank]
        full_mean = np.zeros(valid.shape, flat.dtype)
        full_mean[valid] = mean
        return cls(
            jnp.asarray(full_mean),
            jnp.asarray(components),
            jnp.asarray(s[:rank]),
            jnp.asarray(valid),
        )

    @property
    def rank(self) -> int:
        """The number of EOFs kept."""
        return self.components.shape[0]

    def expand(self, coefficients: Float[Array, " rank"]) -> Float[Array, "*space"]:
        """``mean + Σ c_k EOF_k``, shape ``(*space)``."""
        return self.mean + jnp.tensordot(coefficients, self.components, axes=1)

    def project(self, field: Float[Array, "*space"]) -> Float[Array, " rank"]:
        """The coefficients ``(rank,)`` of a complete field (invalid points
        ignored)."""
        anomaly = jnp.where(self.valid, field - self.mean, 0.0)
        return jnp.tensordot(self.components, anomaly, axes=anomaly.ndim)

    def reconstruct(
        self,
        observations: Float[ArrayLike, "*space"],
        observed: Bool[ArrayLike, "*space"],
        *,
        solver: Anderson = Anderson(rtol=1e-8, max_steps=1000),
    ) -> Float[Array, "*space"]:
        """The EOF reconstruction of a gappy field, shape ``(*space)``.

        **Arguments:** `observations` ``(*space)`` (any value where not
        `observed`, NaN included), `observed` ``(*space)`` booleans.

        **Returns:** the expansion on the EOFs at the fixed point of the DINEOF
        iteration (everywhere, the observed points included: noisy observations
        are smoothed too; 0 on invalid points).

        **Raises:** an `EquinoxRuntimeError` when no valid point is observed, or
        when the iteration does not converge (fewer observed points than EOFs
        can leave it without a unique fixed point).
        """
        if jnp.shape(observed) != self.valid.shape:
            raise ValueError(
                f"EOFBasis.reconstruct(observed=...) has shape {jnp.shape(observed)}, "
                f"the basis {self.valid.shape}."
            )
        observed = jnp.asarray(observed, bool) & self.valid
        observed = eqx.error_if(
            observed,
            ~jnp.any(observed),
            "EOFBasis.reconstruct: no valid point is observed (all-NaN observations).",
        )
        y = jnp.where(observed, jnp.asarray(observations, self.mean.dtype), 0.0)
        sol = fixed_point(
            _dineof_step,
            jnp.zeros(self.rank, self.mean.dtype),
            (self, y, observed),
            solver=solver,
        )
        return jnp.where(self.valid, self.expand(sol.value), 0.0)


def _dineof_step(c, args):
    """One DINEOF sweep in coefficient space: fill the gaps with the current
    expansion, keep the observations, project again."""
    basis, y, observed = args
    filled = jnp.where(observed, y, basis.expand(c))
    return basis.project(filled)
