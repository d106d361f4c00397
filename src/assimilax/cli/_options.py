"""Declared options of the named choices of a config (a model, a solver, ...).

A config section selects one *choice* of a *family* by name (``[model] name =
"heat1d"``, ``[solver] name = "lbfgs"``) and sets that choice's options. Each
choice declares its options once, with type, default, bounds and whether the
outer loop may learn them; `read_choice` checks a section against the
declaration, and `Named` keeps the result and builds the library object.
"""

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._table import (
    as_bounds,
    Bound,
    Bounds,
    check_choice,
    ConfigError,
    NONNEGATIVE,
    REQUIRED,
    Table,
)


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: its key, kind, default (`REQUIRED` if none) and checks.

    Kinds: ``number``, ``integer``, ``boolean``, ``string`` (one of `choices`),
    ``numbers``/``integers`` (lists, of `length` if set), ``number_or_numbers``
    (a number or a list), ``path`` (an existing file, relative to the config's
    folder) and ``raw`` (checked by the choice's `prepare`). `learnable` options
    may be learnt by ``assimilax fit``.
    """

    key: str
    kind: str
    default: Any = REQUIRED
    bound: Bounds = None
    choices: tuple[str, ...] | None = None
    length: int | None = None
    learnable: bool = False
    help: str = ""

    @property
    def positive(self) -> bool:
        """Whether the bounds force the value to be >= 0 (log-parametrisable)."""
        return any(b.op in (">", ">=") and b.limit >= 0 for b in as_bounds(self.bound))

    def read(self, table: Table, base: Path) -> Any:
        """The checked value of this option in `table` (or its default)."""
        kind, key, default = self.kind, self.key, self.default
        if kind == "number":
            return table.number(key, default, self.bound)
        if kind == "integer":
            return table.integer(key, default, self.bound)
        if kind == "boolean":
            return table.boolean(key, default)
        if kind == "string":
            return table.string(key, default, self.choices)
        if kind in ("numbers", "integers"):
            integer = kind == "integers"
            return table.numbers(key, default, self.bound, integer, self.length)
        if kind == "number_or_numbers":
            if isinstance(table.data.get(key), list):
                return table.numbers(key, default, self.bound)
            return table.number(key, default, self.bound)
        if kind == "path":
            value = table.string(key, default)
            if value is None:
                return None
            return resolve_file(table.where(key), value, base)
        if kind == "raw":
            return table.raw(key, default)
        raise AssertionError(f"unknown option kind {kind!r}")


def resolve_file(where: str, value: str, base: Path) -> Path:
    """`value` relative to `base` (the config's folder); it must be a file."""
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise ConfigError(f"{where} = {value!r}: file not found: {path}")
    return path


@dataclasses.dataclass(frozen=True)
class Choice:
    """A named choice: how to build it from its options, and those options.

    `prepare(options, where)` checks combinations of options (exactly one of
    two, ...) and may complete them (load a file); it returns the options.
    """

    name: str
    build: Callable[..., Any]
    options: tuple[Option, ...] = ()
    help: str = ""
    prepare: Callable[[dict[str, Any], str], dict[str, Any]] | None = None


@dataclasses.dataclass(frozen=True)
class Family:
    """The choices of one section, selected by the key `selector`."""

    section: str
    selector: str
    choices: Mapping[str, Choice]
    common: tuple[Option, ...] = ()
    default: str | None = None

    def options(self, name: str) -> tuple[Option, ...]:
        """Every option of the choice `name` (its own and the common ones)."""
        return self.common + self.choices[name].options


@dataclasses.dataclass(frozen=True)
class Named:
    """A choice read from a config section: its name and checked options."""

    family: Family
    name: str
    options: Mapping[str, Any]
    where: str

    def option(self, key: str) -> Option:
        """The declaration of option `key`."""
        return next(o for o in self.family.options(self.name) if o.key == key)

    @property
    def learnable(self) -> tuple[str, ...]:
        """The keys of the options that the outer loop may learn."""
        return tuple(o.key for o in self.family.options(self.name) if o.learnable)

    def build(self, *args: Any, overrides: Mapping[str, Any] | None = None) -> Any:
        """The library object, with `overrides` (e.g. traced learnt values)."""
        options = dict(self.options)
        options.update(overrides or {})
        return self.family.choices[self.name].build(options, *args)


def read_choice(
    table: Table,
    family: Family,
    base: Path,
    *,
    defaults: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Named:
    """Read the choice of `family` that `table` selects, and its options.

    `name` fixes the choice (the table must then not select one); `defaults`
    replace the declared defaults (e.g. a truth model that overrides a few
    options of the assimilating one).
    """
    where = f"[{table.section}]"
    if name is None:
        default = REQUIRED if family.default is None else family.default
        name = table.string(family.selector, default)
        check_choice(table.where(family.selector), name, family.choices)
    # Unknown keys (typos) first: "did you mean" beats "X is required".
    allowed = [o.key for o in family.options(name)]
    if defaults is None:
        allowed.append(family.selector)
    table.finish(allowed)
    options = {}
    for option in family.options(name):
        if defaults is not None and option.key in defaults:
            option = dataclasses.replace(option, default=defaults[option.key])
        options[option.key] = option.read(table, base)
    choice = family.choices[name]
    if choice.prepare is not None:
        options = choice.prepare(options, where)
    return Named(family, name, options, where)


def exactly_one(options: Mapping[str, Any], keys: tuple[str, ...], where: str) -> str:
    """The one key of `keys` that is set (not `None`); else a `ConfigError`."""
    given = [key for key in keys if options.get(key) is not None]
    if len(given) != 1:
        listing = ", ".join(keys)
        found = ", ".join(given) if given else "none"
        raise ConfigError(f"{where} needs exactly one of {listing}; got {found}")
    return given[0]


FRACTION = (Bound(">", 0), Bound("<=", 1))
UNIT_INTERVAL = (NONNEGATIVE, Bound("<", 1))
