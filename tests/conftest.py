"""Test configuration: float64, strict promotion, a PRNG-key fixture, and jax's
caches cleared after each test module."""

import gc

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


@pytest.fixture(autouse=True, scope="module")
def _clear_jax_caches():
    """Drop compiled programs once a module is done.

    Every XLA CPU executable keeps a few memory mappings; one process running
    the whole suite accumulated thousands per module and passed the kernel's
    limit (``vm.max_map_count``, 65530 by default), and XLA then crashed with a
    segmentation fault while compiling (measured: ~3000 to 6000 more mappings per
    module without clearing, ~1000 in all with it). Little is recompiled: the
    next module rarely calls the same programs.
    """
    yield
    jax.clear_caches()
    gc.collect()
