"""Functions keyed by what they compute, not by which Python object they are.

`jax.jit` and `eqx.filter_jit` look up compiled programs by their static
arguments, compared with ``==``; a Python function compares by identity, so two
closures built by one factory (``make_problem_fn(dynamics)`` called twice, or
``optax.adam(1e-2)`` called twice) compile everything anew. `by_structure`
turns such a function into an equal-by-value stand-in: its code object, its
module globals (by identity), and what it closes over and defaults to, compared
by value, recursively (functions inside are converted too; arrays by their
dtype, shape and bytes). The stand-in calls the same code on the same values, so
nothing changes but the cache key: programs are reused across calls with equal
structure.

JAX has no such conversion: `jax.closure_convert` and
`eqx.filter_closure_convert` trace the function, which is the cost avoided here.
What still recompiles: a different code object (another ``lambda`` in the
source), a closed-over value that differs (an array with other values, another
float), a closed-over object that is neither hashable nor a pytree of hashable
leaves and arrays (kept by identity), and callables other than plain functions,
`functools.partial` and pytrees of them (kept as they are).
"""

import functools
import hashlib
import types
from typing import Any

import jax
import jax.tree_util as jtu
import numpy as np


class _ByIdentity:
    """An unhashable (or mutable) value, equal only to itself."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, _ByIdentity) and other.value is self.value

    def __hash__(self):
        return id(self.value)


class _ArrayByValue:
    """A concrete NumPy or JAX array, equal to any array of the same dtype,
    shape and bytes (compared by a digest)."""

    __slots__ = ("value", "_key")

    def __init__(self, value):
        host = np.asarray(value)
        digest = hashlib.blake2b(host.tobytes(), digest_size=16).digest()
        self.value = value
        self._key = (type(value).__name__, str(host.dtype), host.shape, digest)

    def __eq__(self, other):
        return isinstance(other, _ArrayByValue) and other._key == self._key

    def __hash__(self):
        return hash(self._key)


class _Marker:
    """A closure cell not yet filled, or one holding a function being converted
    (a function that refers to itself): equal to the same marker."""

    __slots__ = ("kind",)

    def __init__(self, kind: str):
        self.kind = kind

    def __eq__(self, other):
        return isinstance(other, _Marker) and other.kind == self.kind

    def __hash__(self):
        return hash((_Marker, self.kind))


def _is_function(x: Any) -> bool:
    return isinstance(x, (types.FunctionType, functools.partial))


def _leaf(x: Any, seen: frozenset) -> Any:
    if _is_function(x):
        return by_structure(x, _seen=seen)
    if isinstance(x, jax.core.Tracer):
        return _ByIdentity(x)
    if isinstance(x, (np.ndarray, jax.Array)):
        try:
            return _ArrayByValue(x)
        except Exception:  # e.g. a global array this process cannot read whole
            return _ByIdentity(x)
    try:
        hash(x)
    except TypeError:
        return _ByIdentity(x)
    return x


def _convert(tree: Any, seen: frozenset) -> Any:
    """A hashable key for `tree`: its structure and its leaves, with functions
    converted and arrays compared by value."""
    try:
        leaves, treedef = jtu.tree_flatten(tree, is_leaf=_is_function)
        key = (treedef, tuple(_leaf(x, seen) for x in leaves))
        hash(key)  # static fields of a module may still be unhashable
    except Exception:
        return _ByIdentity(tree)
    return key


class _Structural:
    """A callable standing for `_target`, equal to another of its class with an
    equal `_key` (and hashed by it, computed once)."""

    __slots__ = ("_target", "_key", "_hash", "__wrapped__")

    def _set(self, target, key) -> None:
        self._target, self._key, self._hash = target, key, hash(key)
        self.__wrapped__ = target

    def __call__(self, *args, **kwargs):
        return self._target(*args, **kwargs)

    def __getattr__(self, name):  # `__name__`, `__doc__`... of the function
        if name in _Structural.__slots__:
            raise AttributeError(name)
        return getattr(self._target, name)

    def __eq__(self, other):
        return type(other) is type(self) and other._key == self._key

    def __hash__(self):
        return self._hash

    def __repr__(self):
        return f"by_structure({self._target!r})"


class StructuralFunction(_Structural):
    """A Python function as its code and converted closure; calls the function.

    Equal (and equally hashed) to any other built from the same code object and
    globals with equal converted defaults and closure values.
    """

    __slots__ = ()

    def __init__(self, function: types.FunctionType, seen: frozenset):
        seen = seen | {id(function)}
        cells = []
        for cell in function.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:
                cells.append(_Marker("empty"))
                continue
            if id(contents) in seen:  # a function that refers to itself
                cells.append(_Marker("cycle"))
            else:
                cells.append(_convert(contents, seen))
        key = (
            function.__code__,
            _ByIdentity(function.__globals__),
            _convert(function.__defaults__, seen),
            _convert(function.__kwdefaults__, seen),
            tuple(cells),
        )
        self._set(function, key)


class StructuralPartial(_Structural):
    """A `functools.partial` with its function and arguments converted."""

    __slots__ = ()

    def __init__(self, partial: functools.partial, seen: frozenset):
        key = (
            by_structure(partial.func, _seen=seen),
            _convert(partial.args, seen),
            _convert(tuple(sorted(partial.keywords.items())), seen),
        )
        self._set(partial, key)


def by_structure(fn: Any, *, _seen: frozenset = frozenset()) -> Any:
    """`fn` as a callable equal to every other built the same way.

    Plain functions and `functools.partial` objects are converted; a pytree of
    them (an optax `GradientTransformation`, a tuple of functions) has each
    converted; anything else is returned as it is. A function whose closure
    holds something unhashable still converts, with that value compared by
    identity. Calling the result calls `fn`.
    """
    if isinstance(fn, _Structural):
        return fn
    if isinstance(fn, types.FunctionType):
        if fn.__dict__ and set(fn.__dict__) - {"__wrapped__"}:
            return fn  # attributes set on the function: keep its identity
        return StructuralFunction(fn, _seen)
    if isinstance(fn, functools.partial):
        return StructuralPartial(fn, _seen)
    if isinstance(fn, tuple) and hasattr(fn, "_fields"):  # a NamedTuple (optax)
        return type(fn)(*(by_structure(f, _seen=_seen) for f in fn))
    return fn
