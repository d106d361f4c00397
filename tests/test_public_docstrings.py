"""Every public name has a docstring of its own, and array signatures state shapes.

**What is walked.** ``assimilax`` and each of its public subpackages (every
``src/assimilax/NAME/__init__.py`` with ``NAME`` not starting with ``_``). The
public names of a package are its ``__all__`` if it defines one, else its
namespace minus names starting with ``_``, modules, and objects defined outside
``assimilax`` (such as an imported ``Sequence``). For each public class, its
public methods and properties are walked too: those defined in a class of
``assimilax`` (not dunder methods, not those inherited from ``equinox`` or
``abc``), but not fields, nor class variables holding a library's function.

**Rule 1: a docstring.** A public function or class has a non-empty docstring of
its own (``__doc__`` set in its own definition, not inherited, and not the
``Name(field: type, ...)`` text that ``dataclasses`` gives an undocumented
``eqx.Module``). A public method
or property has a docstring of its own, or overrides a method of an
``assimilax`` base class that has one: a concrete class implementing a
documented abstract contract (``Heat1D.vector_field`` implements
``AbstractDynamics.vector_field``) is documented where the contract is.

**Rule 2: shapes.** A callable takes or returns arrays when an annotation of its
signature (parameters or return) is, or has among its arguments (``X | None``,
``tuple[X, ...]``, ``dict[str, X]``), a jaxtyping array type such as
``Float[Array, "time n"]`` (``Scalar``, ``Float[Array, ""]``, included) or a
bare ``jax.Array``. Not looked into: ``PyTree[...]`` (its leaves may have any
shape) and ``Callable[..., ...]`` (a function argument's shapes belong to its own
contract, such as the objective's). For a class, the signature is that of
``__init__`` (the fields) and the docstring the class's, which the API pages
render with it. Its docstring must then state shapes: it contains a
parenthesised shape tuple such as ``(n,)``, ``(time, n)``, ``(*batch, ny, nx)``
or ``(*state)`` (comma-separated single tokens, or one starred name; not preceded
by a name, so ``fn(x, args)`` and prose in brackets do not count), or the word
"shape(s)" or "scalar(s)". A docstring inherited by several classes is checked
(and reported) once.
"""

import collections.abc
import importlib
import inspect
import pkgutil
import re
import typing

import equinox as eqx
import jax
import jaxtyping

import assimilax


# A shape tuple: ``(n,)``, ``(time, n)``, ``(*batch, ny, nx)``, or a lone starred
# name ``(*state)``; ``(2, n + 1)`` is not one (``n + 1`` has spaces) but
# ``(2, n+1)`` is. Not preceded by a name or a bracket, so calls such as
# ``fn(x, args)`` are not shapes.
_TOKEN = r"\*?[\w.+\-]+"
_TUPLE = rf"(?<![\w\]])\(\s*(?:{_TOKEN}(?:\s*,\s*(?:{_TOKEN})?)+|\*\w+)\s*\)"
_SHAPE = re.compile(rf"{_TUPLE}|\bshapes?\b|\bscalars?\b", re.IGNORECASE)


def _packages():
    packages = [assimilax]
    for info in pkgutil.iter_modules(assimilax.__path__):
        if info.ispkg and not info.name.startswith("_"):
            packages.append(importlib.import_module(f"assimilax.{info.name}"))
    return packages


def _defined_in_assimilax(obj) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "assimilax"


def _public(package):
    names = getattr(package, "__all__", None)
    if names is None:
        names = [
            name
            for name, value in vars(package).items()
            if not name.startswith("_")
            and not inspect.ismodule(value)
            and _defined_in_assimilax(value)
        ]
    return {name: getattr(package, name) for name in sorted(names)}


def _function(obj):
    """The plain function behind a jit wrapper, a method or a property."""
    if isinstance(obj, property):
        obj = obj.fget
    while hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    return getattr(obj, "__func__", obj)


def _own_doc(obj) -> str:
    if not isinstance(obj, type):
        return (obj.__doc__ or "").strip()
    doc = (obj.__dict__.get("__doc__") or "").strip()
    # `dataclasses` (so every `eqx.Module`) gives an undocumented class the
    # docstring "Name(field: type, ...)": that is no documentation.
    try:
        generated = obj.__name__ + str(inspect.signature(obj)).replace(" -> None", "")
    except (TypeError, ValueError):
        generated = None
    return "" if doc == generated else doc


def _members(cls):
    """``(name, member, documentation)`` for the public methods and properties of
    ``cls`` defined in a class of assimilax; ``documentation`` is the function
    whose docstring documents the member (its own, or that of the assimilax
    method it overrides), or ``None``."""
    members = []
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in k.__dict__), None)
        if owner is None or not _defined_in_assimilax(owner):
            continue
        member = owner.__dict__[name]
        function = _function(member)
        if not (inspect.isroutine(function) and _defined_in_assimilax(function)):
            continue  # a field, or a class variable such as a library's function
        documentation = next(
            (
                _function(base.__dict__[name])
                for base in owner.__mro__
                if name in base.__dict__
                and _defined_in_assimilax(base)
                and (_function(base.__dict__[name]).__doc__ or "").strip()
            ),
            None,
        )
        members.append((name, member, documentation))
    return members


def _mentions_array(annotation) -> bool:
    if isinstance(annotation, type) and (
        issubclass(annotation, jaxtyping.AbstractArray) or annotation is jax.Array
    ):
        return True
    if typing.get_origin(annotation) is collections.abc.Callable:
        return False  # a function argument: its shapes are its own contract's
    return any(_mentions_array(arg) for arg in typing.get_args(annotation))


def _takes_or_returns_arrays(obj) -> bool:
    function = obj.__init__ if isinstance(obj, type) else _function(obj)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return False
    annotations = [p.annotation for p in signature.parameters.values()]
    annotations.append(signature.return_annotation)
    return any(_mentions_array(a) for a in annotations)


def _walk():
    """``(public name, object, documentation)`` for every public function, class,
    method and property, where ``documentation`` is the object whose docstring
    documents it, or ``None``."""
    seen = set()
    for package in _packages():
        for name, obj in _public(package).items():
            if id(obj) in seen or not callable(obj):
                continue
            seen.add(id(obj))
            where = f"{package.__name__}.{name}"
            yield where, obj, obj if _own_doc(obj) else None
            if isinstance(obj, type):
                for member_name, member, documentation in _members(obj):
                    yield f"{where}.{member_name}", member, documentation


def test_the_walk_covers_the_api():
    walked = {where for where, _, _ in _walk()}
    for where in (
        "assimilax.argmin",
        "assimilax.Implicit",
        "assimilax.AbstractInnerSolver.step",
        "assimilax.dynamics.Heat1D.vector_field",
        "assimilax.assimilate",
        "assimilax.CycledB.update",
        "assimilax.assimilation.cycling_statistics",
        "assimilax.fit",
        "assimilax.plotting.hovmoller",
    ):
        assert where in walked, where
    assert len(walked) > 300, len(walked)


def test_every_public_name_has_a_docstring():
    missing = [where for where, _, documentation in _walk() if documentation is None]
    assert not missing, (
        f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)
    )


def test_array_signatures_state_shapes():
    # An inherited docstring is reported once, under the first name showing it.
    shapeless, checked = [], set()
    for where, obj, documentation in _walk():
        if documentation is None or not _takes_or_returns_arrays(obj):
            continue
        if id(documentation) not in checked and not _SHAPE.search(
            _own_doc(documentation)
        ):
            shapeless.append(where)
        checked.add(id(documentation))
    assert not shapeless, (
        f"{len(shapeless)} docstrings of callables taking or returning arrays "
        "state no shape (e.g. `(time, n)`, 'shape', 'scalar'):\n" + "\n".join(shapeless)
    )


def test_the_shape_rule_can_fail():
    # The checks above are only as good as these two predicates.
    def shaped(x: jaxtyping.Float[jax.Array, " n"]) -> jax.Array:
        """Returns ``x`` doubled, of shape ``(n,)``."""

    def opaque(x: jaxtyping.PyTree[jax.Array]) -> int:
        """No arrays in the signature, only a pytree."""

    assert _takes_or_returns_arrays(shaped) and not _takes_or_returns_arrays(opaque)
    assert _takes_or_returns_arrays(lambda x: None) is False
    for text in ("`(n,)`", "``(time, n)``", "(*batch, ny, nx)", "(*state)", "scalar"):
        assert _SHAPE.search(text), text
    for text in ("calls fn(x, args)", "(default 1e-6, then halved)", "(n)", "array"):
        assert not _SHAPE.search(text), text


def test_a_generated_docstring_is_no_docstring():
    class Undocumented(eqx.Module):
        x: int

    class Documented(eqx.Module):
        """An integer ``x``."""

        x: int

    assert Undocumented.__doc__ and not _own_doc(Undocumented)
    assert _own_doc(Documented) == "An integer ``x``."
