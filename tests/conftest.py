"""Test configuration: float64, strict promotion, a PRNG-key fixture, jax's
in-memory caches cleared after each test module, and one persistent compilation
cache shared by the whole run (its workers and the processes its tests start)."""

import gc
import os
import shutil
import tempfile


# Before JAX starts its backend (set at import, ahead of everything else).
# The default suite's programs are small and run for milliseconds: compiling
# dominates its time. Two XLA options cut it without changing what is computed
# (IEEE arithmetic either way): no LLVM optimisation passes (40 % less compile
# time on the float32 tests) and XLA's classic CPU fusion code generator instead
# of the newer fusion emitters (a further 29 % less wall time on test_costs.py +
# test_gradient_flow.py, 59 s to 42 s). A caller's own XLA_FLAGS win; CI runs the
# slow tests with XLA's defaults.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false",
)

import jax  # noqa: E402
import jax.random as jr  # noqa: E402
import pytest  # noqa: E402

from assimilax._compilation_cache import (  # noqa: E402
    ENVIRONMENT_VARIABLE,
    use_compilation_cache,
)


jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


_OWN_CACHE = "ASSIMILAX_TEST_OWNS_CACHE"


def pytest_configure(config):
    """A fresh persistent compilation cache for this run, unless the caller
    names one (``ASSIMILAX_CACHE_DIR``).

    Programs compiled by one test module are loaded, not compiled again, by the
    next ones (`jax.clear_caches` below empties only the in-memory caches), by
    the other `pytest-xdist` workers and by the CLI and example scripts the
    tests run: the environment variable set here reaches them all. Each run
    starts cold (a new folder, removed at the end), so CI measures compilation.
    """
    if not os.environ.get(ENVIRONMENT_VARIABLE):
        os.environ[ENVIRONMENT_VARIABLE] = tempfile.mkdtemp(prefix="assimilax-jax-")
        os.environ[_OWN_CACHE] = str(os.getpid())
    use_compilation_cache()


def pytest_unconfigure(config):
    if os.environ.get(_OWN_CACHE) == str(os.getpid()):
        shutil.rmtree(os.environ[ENVIRONMENT_VARIABLE], ignore_errors=True)


@pytest.fixture
def getkey():
    """A function returning a fresh PRNG key on each call (deterministic per test)."""
    keys = iter(jr.split(jr.key(0), 1000))
    return lambda: next(keys)


# Clear before the kernel's default limit of 65530 mappings: one module adds at
# most ~6000, and a clear costs seconds (its garbage collection).
_MAX_MAPPINGS = 45000


def _memory_mappings() -> int | None:
    """This process's memory mappings (``/proc/self/maps``), `None` off Linux."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:
        return None


@pytest.fixture(autouse=True, scope="module")
def _clear_jax_caches():
    """Drop compiled programs after a module when they hold too many mappings.

    Every XLA CPU executable keeps a few memory mappings; one process running
    the whole suite accumulated thousands per module and passed the kernel's
    limit (``vm.max_map_count``, 65530 by default), and XLA then crashed with a
    segmentation fault while compiling (measured: ~3000 to 6000 more mappings per
    module without clearing). Clearing after every module recompiled the small
    programs every module shares (eager ``add``, ``normal``...): the caches are
    now cleared only once the process holds `_MAX_MAPPINGS` (always off Linux,
    where they cannot be counted).
    """
    yield
    mappings = _memory_mappings()
    if mappings is None or mappings > _MAX_MAPPINGS:
        jax.clear_caches()
        gc.collect()
