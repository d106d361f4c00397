"""Learned priors: an autoencoder energy (4DVarNet) and a denoiser (PnP / RED)."""

from collections.abc import Callable

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._custom_types import Scalar, ScalarLike
from ._base import AbstractPrior, AbstractProximablePrior
from ._gaussian import check_values


def _check_network(owner: str, name: str, network: object) -> None:
    if not callable(network):
        raise TypeError(
            f"{owner}({name}=...) must be a callable Equinox module mapping a state "
            f"to a state of the same shape, got {network!r}."
        )


def _check_weight(owner: str, weight: Float[ArrayLike, "..."]) -> Float[Array, ""]:
    if jnp.ndim(weight) != 0:
        raise ValueError(
            f"{owner}(weight=...) must be a scalar, got shape {jnp.shape(weight)}."
        )
    weight = jnp.asarray(weight)
    if not jnp.issubdtype(weight.dtype, jnp.floating):
        # An integer weight would not be learnable (no gradient).
        weight = weight.astype(float)
    message = f"{owner}(weight=...) must be > 0 (and not NaN)."
    return check_values(weight, ~(weight > 0), message)


def _apply(owner: str, name: str, network: Callable, x: Array) -> Array:
    out = network(x)
    # Shapes are static: a mismatch is a Python error at trace time.
    if out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError(
            f"{owner}({name}=...) must map a state to one of the same shape and "
            f"dtype: got {out.shape} {out.dtype} for a state {x.shape} {x.dtype}."
        )
    return out


class EnergyPrior(AbstractPrior):
    """``J(x) = 0.5 * weight * |x - φ(x)|²``: distance to a learned manifold.

    ``φ`` is a network (typically an autoencoder, `ConvAutoencoder1D`,
    `MLPAutoencoder`) trained so that ``φ(x) ≈ x`` on plausible states, e.g. by
    `assimilax.learning.pretrain_prior` on historical states: the energy is small
    on the learned manifold and grows off it. This is the prior of 4DVarNet.

    **Arguments:**

    - `network`: ``φ``, a callable Equinox module mapping a state (``"*state"``,
      physical units) to a state of the same shape and dtype.
    - `weight`: ``w > 0`` (scalar). The network's weights and ``w`` are fields,
      learnable by an outer loop (end-to-end fine-tuning through `argmin`).

    The factor 0.5 matches the other priors (`Tikhonov`). A sum of squares:
    `residuals` is ``sqrt(w) (x - φ(x))``, so `GaussNewton` applies (it
    linearises ``φ``).

    **Raises:** `TypeError` for a `network` that is not callable; `ValueError` for
    a non-scalar, non-positive or NaN `weight` (an `EquinoxRuntimeError` at run
    time when built under jit); at use, `ValueError` when ``φ(x)`` changes the
    shape or dtype of ``x``.

    **Cost and limits:** one network evaluation per energy, one backward pass per
    gradient. The energy is non-convex in ``x`` for a nonlinear ``φ``: 4DVar with
    it is non-convex even with linear dynamics (start from the background).
    `Implicit` hypergradients need the cost's Hessian to be positive definite at
    the analysis, which a background term usually ensures.

    ??? cite "References"

        Fablet, Chapron, Drumetz, Mémin, Pannekoucke, Rousseau. *Learning
        variational data assimilation models and solvers*. JAMES 2021.
    """

    network: Callable
    weight: Float[Array, ""]

    # Loose annotations: the checks below give messages that name the field.
    def __init__(self, network: object, weight: Float[ArrayLike, "..."]):
        _check_network("EnergyPrior", "network", network)
        self.network = network
        self.weight = _check_weight("EnergyPrior", weight)

    def residuals(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        """``sqrt(w) (x - φ(x))``, shape of ``x``."""
        gap = x - _apply("EnergyPrior", "network", self.network, x)
        return jnp.sqrt(self.weight.astype(x.dtype)) * gap

    def energy(self, x: Float[Array, "*state"]) -> Scalar:
        gap = x - _apply("EnergyPrior", "network", self.network, x)
        # Cast (not promote): a Python-float weight follows the precision of x.
        return 0.5 * self.weight.astype(x.dtype) * jnp.sum(jnp.square(gap))


class DenoiserPrior(AbstractProximablePrior):
    """A denoiser ``D`` as a prior: RED energy and plug-and-play "prox".

    - `energy`: the regularisation-by-denoising (RED) energy
      ``J(x) = 0.5 * weight * (x - c)ᵀ (x - D(x))``, with ``c`` the `centre`.
      Smooth solvers (`LBFGS`) minimise it through its automatic gradient.
    - `prox`: plug-and-play (PnP). ``prox(x, step)`` returns
      ``x + θ (D(x) - x)`` with ``θ = step w / (1 + step w)``: the exact prox of
      the quadratic ``0.5 w |u - D(x)|²`` with ``D`` frozen at the current point,
      a relaxed denoising step that tends to ``D(x)`` (classical PnP) as
      ``step w`` grows. It is **not** the prox of `energy`, nor of any function in
      general: `ProximalGradient` with `ProblemProx()` runs PnP-ISTA, whose fixed
      points need not minimise the cost.

    **Arguments:**

    - `denoiser`: ``D``, a callable Equinox module mapping a state to a state of
      the same shape and dtype (physical units), e.g. `ConvDenoiser1D` trained by
      `assimilax.learning.pretrain_prior` with a `Denoising` objective.
    - `weight`: ``w > 0`` (scalar; learnable, with the denoiser's weights).
    - `centre`: ``c`` (keyword; default 0), broadcastable to the state. RED
      assumes a denoiser that is homogeneous about the origin; states in physical
      units are not centred, so pass the climatological mean (a `Standardised`
      denoiser's `mean`).

    **RED gradient caveat:** RED's update uses ``∇J = w (x - D(x))``, which holds
    only if ``D`` is locally homogeneous and has a symmetric Jacobian (Reehorst &
    Schniter 2018); trained denoisers are neither. The automatic gradient of
    `energy` used here is the exact gradient of the energy above, so it differs
    from the RED update, and the energy need not be convex nor bounded below (a
    denoiser that amplifies some direction makes it negative there): keep a
    background term in the cost.

    Not a sum of squares: no `residuals`, hence no `GaussNewton`.

    **Raises:** `TypeError` for a non-callable `denoiser`; `ValueError` for a
    non-scalar, non-positive or NaN `weight`; at use, `ValueError` when ``D``
    changes the shape or dtype of the state.

    **Cost:** one denoiser evaluation per energy or prox.

    ??? cite "References"

        Venkatakrishnan, Bouman, Wohlberg. *Plug-and-play priors for model based
        reconstruction*. GlobalSIP 2013.
        Romano, Elad, Milanfar. *The little engine that could: regularization by
        denoising (RED)*. SIAM J. Imaging Sci. 2017.
        Reehorst, Schniter. *Regularization by denoising: clarifications and new
        interpretations*. IEEE TCI 2018.
    """

    denoiser: Callable
    weight: Float[Array, ""]
    centre: Float[Array, "..."]

    def __init__(
        self,
        denoiser: object,
        weight: Float[ArrayLike, "..."],
        *,
        centre: Float[ArrayLike, "..."] = 0.0,
    ):
        _check_network("DenoiserPrior", "denoiser", denoiser)
        self.denoiser = denoiser
        self.weight = _check_weight("DenoiserPrior", weight)
        self.centre = jnp.asarray(centre)

    def _denoise(self, x: Float[Array, "*state"]) -> Float[Array, "*state"]:
        return _apply("DenoiserPrior", "denoiser", self.denoiser, x)

    def energy(self, x: Float[Array, "*state"]) -> Scalar:
        try:
            centre = jnp.broadcast_to(self.centre.astype(x.dtype), x.shape)
        except ValueError:
            raise ValueError(
                f"DenoiserPrior(centre=...) of shape {self.centre.shape} does not "
                f"broadcast to the state's shape {x.shape}."
            ) from None
        weight = self.weight.astype(x.dtype)
        return 0.5 * weight * jnp.vdot(x - centre, x - self._denoise(x))

    def prox(
        self, x: Float[Array, "*state"], step: ScalarLike
    ) -> Float[Array, "*state"]:
        """Plug-and-play: ``x + θ (D(x) - x)``, ``θ = step w / (1 + step w)``, for a
        scalar `step`; same shape ``(*state)`` as `x`."""
        scaled = jnp.asarray(step, x.dtype) * self.weight.astype(x.dtype)
        theta = scaled / (1 + scaled)
        return x + theta * (self._denoise(x) - x)
