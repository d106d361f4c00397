"""Compiled programs keyed by structure: `by_structure` and the persistent
compilation cache (`use_compilation_cache`)."""

import functools
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import assimilax as ax
from assimilax._structure import by_structure


sys.path.insert(0, str(Path(__file__).parent))
from helpers import compilations  # noqa: E402


def _scaled(scale):
    return lambda x, args: args * jnp.sum((x - scale) ** 2)


def _make_partial(weight):
    def loss(x, args, *, weight):
        return weight * jnp.sum((x - args) ** 2)

    return functools.partial(loss, weight=weight)


def test_equal_closures_are_equal_and_different_ones_are_not():
    same = [by_structure(_scaled(jnp.arange(3.0))) for _ in range(2)]
    assert same[0] == same[1] and hash(same[0]) == hash(same[1])
    assert by_structure(_scaled(jnp.arange(3.0) + 1)) != same[0]  # other values
    assert by_structure(_scaled(np.arange(3.0))) != same[0]  # NumPy vs JAX array
    assert by_structure(_scaled(2.0)) == by_structure(_scaled(2.0))
    assert by_structure(_scaled(2.0)) != by_structure(_scaled(3.0))
    # Another function with the same closure is another code object.
    assert by_structure(lambda x, a: a * x) != by_structure(lambda x, a: a * x)
    # Partials, lists in closures, optax optimisers (tuples of closures).
    assert by_structure(_make_partial(2.0)) == by_structure(_make_partial(2.0))
    assert by_structure(_make_partial(2.0)) != by_structure(_make_partial(1.0))
    assert by_structure(_scaled([1.0, 2.0])) == by_structure(_scaled([1.0, 2.0]))
    adam = [by_structure(optax.adam(1e-2)) for _ in range(2)]
    assert adam[0] == adam[1] and isinstance(adam[0], optax.GradientTransformation)
    assert by_structure(optax.adam(2e-2)) != adam[0]
    # An unhashable closed-over object is compared by identity.
    box = {"a": object()}
    assert by_structure(_scaled(box)) == by_structure(_scaled(box))
    assert by_structure(_scaled({"a": object()})) != by_structure(_scaled(box))
    # The stand-in calls the function.
    x = jnp.asarray([1.0, 2.0, 4.0])
    assert float(same[0](x, 2.0)) == float(_scaled(jnp.arange(3.0))(x, 2.0))


def test_argmin_of_a_fresh_equal_lambda_compiles_nothing():
    solver = ax.LBFGS(rtol=1e-10)

    def solve(scale):
        return ax.argmin(_scaled(scale), jnp.zeros(3), jnp.asarray(1.0), solver=solver)

    first = solve(jnp.asarray([1.0, 2.0, 3.0]))
    with compilations() as messages:
        second = solve(jnp.asarray([1.0, 2.0, 3.0]))
    assert [m for m in messages if m.startswith("Compiling")] == []
    np.testing.assert_allclose(second.value, [1.0, 2.0, 3.0], rtol=1e-8)
    np.testing.assert_array_equal(second.value, first.value)
    # Another closed-over value is another program, with its own minimiser.
    other = solve(jnp.asarray([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(other.value, [0.0, 1.0, 0.0], atol=1e-8)


_SCRIPT = """
import sys, time
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import assimilax as ax
ax.use_compilation_cache(sys.argv[1])
sol = ax.argmin(lambda x, a: jnp.sum((x - a) ** 2) + jnp.sum(x**4), jnp.zeros(8),
                jnp.arange(8.0), solver=ax.LBFGS(rtol=1e-10))
print(float(sol.value.sum()))
"""


@pytest.mark.parametrize("bad", [-1.0])
def test_use_compilation_cache_rejects_a_negative_threshold(bad, tmp_path):
    with pytest.raises(ValueError, match="min_compile_time_s"):
        ax.use_compilation_cache(tmp_path, min_compile_time_s=bad)


def test_persistent_cache_is_filled_then_used_by_a_new_process(tmp_path):
    # Two processes run the same programs: the first writes the cache, the
    # second loads every program stored there (JAX logs "Compiling" for each
    # program it needs, then the cache hit). JAX does not store the programs
    # that call back to the host (`argmin`'s runtime checks, `eqx.error_if`).
    cache = tmp_path / "cache"
    runs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(cache)],
            capture_output=True,
            text=True,
            env={
                **__import__("os").environ,
                "JAX_LOG_COMPILES": "1",
            },
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        runs.append(done)
    assert any(cache.iterdir())
    first, second = runs
    assert first.stdout == second.stdout
    hit = "Persistent compilation cache hit"
    stored = [p for p in cache.iterdir() if not p.name.endswith("-atime")]
    assert first.stderr.count("Compiling ") == second.stderr.count("Compiling ")
    assert first.stderr.count(hit) == 0
    assert second.stderr.count(hit) == len(stored) > 0
