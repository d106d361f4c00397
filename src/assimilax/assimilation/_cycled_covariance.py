"""The flow-dependent ``B`` of cycled 4DVar: the analysis error covariance of a
window (its inverse Gauss-Newton Hessian), propagated to the next window start.

Dense ``(n, n)`` matrices: meant for small states (Lorenz models). lineax solves
one system at a time; here the whole inverse is needed (it is the next ``B``), so
a Cholesky factorisation of the ``(n, n)`` Hessian is the direct route.
"""

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float

from ..priors import AbstractBackground


def _symmetric(matrix: Float[Array, "n n"]) -> Float[Array, "n n"]:
    return 0.5 * (matrix + matrix.T)


def dense_covariance(background: AbstractBackground) -> Float[Array, "n n"]:
    """``B = S Sᵀ`` of a background with a 1-D state, shape ``(n, n)``, from
    ``n`` applications of its square root ``S``."""
    n = background.xb.size
    eye = jnp.eye(n, dtype=background.xb.dtype)
    transposed = jax.vmap(background.sqrt_covariance)(eye)  # row i is S e_i
    return _symmetric(transposed.T @ transposed)


def analysis_covariance(problem, control: Float[Array, " n"]) -> Float[Array, "n n"]:
    """The analysis error covariance of the window start, ``T H⁻¹ Tᵀ`` with
    ``H = Jᵀ J`` the Gauss-Newton Hessian of the cost in the control (``J`` the
    Jacobian of the whitened residuals, so ``cost = |r|² / 2``) and ``T`` the
    Jacobian of the control-to-state map; shape ``(n, n)``.

    For linear dynamics and observation operator, ``H`` is the exact Hessian and
    this is the posterior covariance of the initial state.
    """

    def residuals(v):
        return ravel_pytree(problem.residuals(v))[0]

    jacobian = jax.jacfwd(residuals)(control)
    to_state = jax.jacfwd(problem.to_state)(control)
    factor = jsl.cho_factor(jacobian.T @ jacobian, lower=True)
    return _symmetric(to_state @ jsl.cho_solve(factor, to_state.T))


def propagate_covariance(
    dynamics,
    x0: Float[Array, " n"],
    covariance: Float[Array, "n n"],
    times: Float[Array, " 2"],
) -> Float[Array, "n n"]:
    """``M P Mᵀ``, with ``M`` the tangent-linear model from ``times[0]`` to
    ``times[1]`` about the trajectory from `x0`; shape ``(n, n)``."""
    tangent = jax.jacfwd(lambda x: dynamics.integrate(x, times)[-1])(x0)
    return _symmetric(tangent @ covariance @ tangent.T)
