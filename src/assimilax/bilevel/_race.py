"""Plain and preconditioned conjugate gradients in lockstep; the first to converge.

Written by hand rather than with `lx.CG` because lineax runs one solve at a time:
two `lx.CG` solves in a `vmap` would both run until the *slower* one converges,
and a solve cannot be stopped from outside. The iteration is `lx.CG`'s (its
stopping test in both the residual and the step, its ``alpha`` guard, its
residual refresh every `stabilise_every` steps), so that the plain run takes the
same steps as `lx.CG` with the same tolerances.
"""

import jax
import jax.lax as lax
import jax.numpy as jnp
import lineax as lx
from jax.flatten_util import ravel_pytree

from .._custom_types import BoolScalar, IntScalar, X


def race_cg(
    operator: lx.AbstractLinearOperator,
    vector: X,
    y0: X,
    preconditioner: lx.AbstractLinearOperator,
    cg: lx.CG,
) -> tuple[X, lx.RESULTS, IntScalar, BoolScalar]:
    """Solve ``A w = b`` (`operator`, `vector`) from `y0` by plain CG and by CG
    preconditioned with `preconditioner`, advanced together; stop when either
    converges under `cg`'s test.

    **Returns:** ``(w, result, num_steps, preconditioned)``: the converged run's
    solution (the plain run's on a tie or when neither converged), a lineax
    result code, the number of lockstep iterations (each one costs two products
    with ``A``, batched), and whether the preconditioned run won.
    """
    b, unravel = ravel_pytree(vector)
    start = ravel_pytree(y0)[0]

    def mv(v):
        return ravel_pytree(operator.mv(unravel(v)))[0]

    def precondition(r):
        # Row 0 is the plain run, row 1 the preconditioned one.
        return jnp.stack([r[0], ravel_pytree(preconditioner.mv(unravel(r[1])))[0]])

    max_steps = 10 * b.size if cg.max_steps is None else cg.max_steps
    rcond = 2 * jnp.finfo(b.dtype).eps * b.size  # lineax's `resolve_rcond`
    b_scale = cg.atol + cg.rtol * jnp.abs(b)

    def converged(r, diff, y):
        # Per run, lx.CG's test: within tolerance in both the b and the y spaces.
        def one(r, diff, y):
            y_scale = cg.atol + cg.rtol * jnp.abs(y)
            return (cg.norm(r / b_scale) <= 1) & (cg.norm(diff / y_scale) <= 1)

        return jax.vmap(one)(r, diff, y)

    def running(carry):
        diff, y, r, _, gamma, _ = carry
        return (gamma > 0) & ~converged(r, diff, y)

    def cond_fun(carry):
        return jnp.all(running(carry)) & (carry[-1] < max_steps)

    def body_fun(carry):
        _, y, r, p, gamma, step = carry
        ap = jax.vmap(mv)(p)
        inner = jnp.sum(p * ap, axis=1)
        ok = jnp.abs(inner) > 100 * rcond * jnp.abs(gamma)
        alpha = jnp.where(ok, gamma / jnp.where(ok, inner, 1), jnp.nan)[:, None]
        diff = alpha * p
        y = y + diff
        step = step + 1

        def stable():
            return b[None] - jax.vmap(mv)(y)

        def cheap():
            return r - alpha * ap

        if cg.stabilise_every == 1:
            r = stable()
        elif cg.stabilise_every is None:
            r = cheap()
        else:
            r = lax.cond(step % cg.stabilise_every == 0, stable, cheap)
        z = precondition(r)
        new_gamma = jnp.sum(r * z, axis=1)
        p = z + (new_gamma / gamma)[:, None] * p
        return diff, y, r, p, new_gamma, step

    r0 = b - mv(start)
    y = jnp.stack([start, start])
    r = jnp.stack([r0, r0])
    z = precondition(r)
    gamma = jnp.sum(r * z, axis=1)
    diff = jnp.full_like(y, jnp.inf)
    carry = (diff, y, r, z, gamma, jnp.asarray(0))
    carry = lax.while_loop(cond_fun, body_fun, carry)
    diff, y, r, _, _, steps = carry
    still = running(carry)
    # The preconditioned run wins only by finishing first.
    won = ~still[1] & still[0]
    value = jnp.where(won, y[1], y[0])
    done = jnp.where(won, converged(r, diff, y)[1], converged(r, diff, y)[0])
    result = lx.RESULTS.where(
        done,
        lx.RESULTS.successful,
        lx.RESULTS.where(
            steps >= max_steps, lx.RESULTS.max_steps_reached, lx.RESULTS.singular
        ),
    )
    return unravel(value), result, steps, won
