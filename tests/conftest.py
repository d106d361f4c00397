"""Test configuration: float64, strict promotion, a PRNG-key fixture."""

import jax
import jax.random as jr
import pytest


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def getkey():
    """A function returning a fresh PRNG key on each call (deterministic per test)."""
    keys = iter(jr.split(jr.key(0), 1000))
    return lambda: next(keys)
