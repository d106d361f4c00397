"""How the background error covariance ``B`` goes from one cycled window to the
next: fixed (`StaticB`) or flow-dependent (`CycledB`)."""

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from .._custom_types import Scalar
from ..costs import AbstractVariationalProblem
from ..dynamics import AbstractDynamics
from ..priors import AbstractBackground, CovarianceBackground
from ._cycled_covariance import (
    analysis_covariance,
    dense_covariance,
    propagate_covariance,
)
from ._windows import AbstractWindowScheme


class AbstractBackgroundCovariance(eqx.Module):
    """How `cycle` carries ``B`` from window to window (`StaticB`, `CycledB`);
    concrete models are final.

    The model keeps a state through `cycle`'s `lax.scan` (`init`: `None` for a
    static ``B``, a dense ``(n, n)`` matrix for a cycled one), builds each
    window's background term from it (`background`) and, after the window's
    analysis, the next window's state (`update`). The method's `background` is
    the template these start from.
    """

    def check(
        self,
        owner: str,
        template: AbstractBackground,
        windows: AbstractWindowScheme,
        window: int,
        shift: int,
    ) -> None:
        """Raise a `ValueError` naming `owner`'s fields when this model does not
        suit the method's background template and window scheme (by default
        every method suits)."""
        del owner, template, windows, window, shift

    @abc.abstractmethod
    def init(self, template: AbstractBackground) -> PyTree[Array]:
        """The state of the first window: a pytree of arrays (`CycledB`: the
        template's ``B``, shape ``(n, n)``), or `None` (`StaticB`)."""

    @abc.abstractmethod
    def background(
        self,
        template: AbstractBackground,
        xb: Float[Array, "*state"],
        state: PyTree[Array],
    ) -> AbstractBackground:
        """The background term of a window starting from `xb`, shape
        ``(*state)``, given the model's `state`."""

    @abc.abstractmethod
    def update(
        self,
        template: AbstractBackground,
        problem: AbstractVariationalProblem,
        control: Float[Array, "*state"],
        dynamics: AbstractDynamics,
        to_next_start: Float[Array, " 2"],
        state: PyTree[Array],
    ) -> PyTree[Array]:
        """The next window's state, after the window's `problem` was solved at
        `control` (shape ``(*state)``); `to_next_start` holds the window start
        and the next one's, shape ``(2,)``, relative times."""

    @abc.abstractmethod
    def spread(self, state: PyTree[Array]) -> Scalar | None:
        """``sqrt(trace(B) / n)`` of the ``B`` in `state`, a scalar (`cycle`
        reports it per window as `background_spread`), or `None` when ``B`` is
        the template's."""


class StaticB(AbstractBackgroundCovariance):
    """The template's ``B`` in every window (the default): only its mean `xb` is
    replaced by each window's background.

    **Cost:** nothing beyond the windows' solves.
    """

    def init(self, template: AbstractBackground) -> None:
        del template
        return None

    def background(
        self,
        template: AbstractBackground,
        xb: Float[Array, "*state"],
        state: None,
    ) -> AbstractBackground:
        del state
        # The template's B (its std, length scale...) with this window's mean.
        return eqx.tree_at(lambda b: b.xb, template, xb)

    def update(self, template, problem, control, dynamics, to_next_start, state):
        del template, problem, control, dynamics, to_next_start
        return state

    def spread(self, state: None) -> None:
        del state
        return None


class CycledB(AbstractBackgroundCovariance):
    """A flow-dependent ``B``, cycled from each window's Hessian.

    After each window's solve, the analysis error covariance at the window start,
    the inverse Gauss-Newton Hessian ``A = (B⁻¹ + Gᵀ R⁻¹ G)⁻¹`` (``G`` the
    Jacobian of the observed trajectory in ``x0``), is propagated to the next
    window start with the tangent-linear model ``M`` over `shift` intervals:
    ``B_next = inflation · M A Mᵀ + additive · B_template``. The first window
    uses the template's ``B``.

    For a linear model, `SDA` windows and ``additive=0`` this is the Kalman
    filter (exactly, at the window ends); for a nonlinear one, an extended
    Kalman smoother in variational form.

    **Fields:**

    - `inflation`: multiplicative inflation of the propagated covariance (static,
      > 0; default 1).
    - `additive`: the multiple of the template's ``B`` added to every cycled
      ``B`` (static, >= 0; default 1e-3). It plays the part of a model-error
      covariance and keeps ``B`` positive definite where chaotic dynamics
      contract the error to the unstable directions; with ``additive=0``, ``M``
      must keep ``B`` well conditioned.

    **Limits:** needs a 1-D state (a dense ``(n, n)`` ``B`` is cycled) and
    windows whose ``R`` is not inflated (`SDA`, or `MDA` with ``shift ==
    window``, which is the same): with ``R`` inflated the window's Hessian is not
    its analysis error covariance. Give the first window a ``B`` as large as the
    first guess's error: with a small one, a long window's first analyses can
    settle in a wrong minimum, and the cycled ``B``, shrunk around it, never
    recovers (seen on Lorenz-96 with windows of 4 intervals and ``B = 0.02 C``).

    **Cost:** per window ``O(n)`` tangent-linear integrations (the Jacobians of
    the residuals and of the forecast to the next start) and an ``O(n³)``
    Cholesky factorisation of the ``(n, n)`` Hessian: meant for small states
    (Lorenz models).

    ??? cite "References"

        Fisher, Leutbecher, Kelly. *On the equivalence between Kalman smoothing
        and weak-constraint four-dimensional variational data assimilation*.
        QJRMS 2005 (the Hessian of 4DVar as the inverse analysis error
        covariance, and its propagation).
    """

    inflation: float = eqx.field(static=True, default=1.0)
    additive: float = eqx.field(static=True, default=1e-3)

    def __check_init__(self):
        for name, value in (("inflation", self.inflation), ("additive", self.additive)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"CycledB({name}=...) must be a number, got {value!r}.")
        if not self.inflation > 0:
            raise ValueError(
                f"CycledB(inflation=...) must be a number > 0, got {self.inflation!r}."
            )
        if not self.additive >= 0:
            raise ValueError(
                f"CycledB(additive=...) must be a number >= 0, got {self.additive!r}."
            )

    def check(self, owner, template, windows, window, shift):
        if template.xb.ndim != 1:
            raise ValueError(
                f"{owner}(covariance=CycledB(...)) needs a 1-D state (a dense B is "
                f"cycled); the background's xb has shape {template.xb.shape}."
            )
        factor = windows.r_inflation(window, shift)
        if factor != 1:
            raise ValueError(
                f"{owner}(covariance=CycledB(...), windows={windows!r}): a cycled B "
                f"needs windows whose R is not inflated (windows=SDA()); these "
                f"inflate R by {factor}, so the window's Hessian is not its analysis "
                "error covariance."
            )

    def init(self, template: AbstractBackground) -> Float[Array, "n n"]:
        return dense_covariance(template)

    def background(
        self,
        template: AbstractBackground,
        xb: Float[Array, " n"],
        state: Float[Array, "n n"],
    ) -> AbstractBackground:
        del template
        return CovarianceBackground(xb, state)

    def update(self, template, problem, control, dynamics, to_next_start, state):
        del state
        x0 = problem.to_state(control)
        analysed = analysis_covariance(problem, control)
        propagated = propagate_covariance(dynamics, x0, analysed, to_next_start)
        return self.inflation * propagated + self.additive * dense_covariance(template)

    def spread(self, state: Float[Array, "n n"]) -> Scalar:
        return jnp.sqrt(jnp.trace(state) / state.shape[0])
