"""Standard dtype promotion around third-party code that needs it (Optax)."""

import jax


def optax_promotion():
    """Standard dtype promotion while Optax code is traced.

    Optax mixes Python floats with its int32 step counters (``decay**count``,
    Adam's bias correction), which ``jax_numpy_dtype_promotion="strict"``
    rejects; lineax guards its own internals the same way. Parameters keep their
    dtype: `optax.apply_updates` casts updates to it.
    """
    return jax.numpy_dtype_promotion("standard")
