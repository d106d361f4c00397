"""Reading TOML tables with typed, checked values and errors that name the key.

Every value the command line reads goes through a `Table`: it checks the type
and the bounds of each value, and `Table.finish` rejects the keys that are not
allowed (typos), naming the close match and listing the allowed ones. Errors
are `ConfigError`s whose message starts with the key's path, e.g.
``[model].kappa must be a number >= 0, got -1``.
"""

import dataclasses
import difflib
import math
from collections.abc import Iterable
from typing import Any


class ConfigError(Exception):
    """A bad configuration: the message names the key and the problem."""


REQUIRED = object()


@dataclasses.dataclass(frozen=True)
class Bound:
    """A numeric bound ``value OP limit``, e.g. ``Bound(">", 0)``."""

    op: str
    limit: int | float

    def holds(self, value: int | float) -> bool:
        """Whether `value` satisfies the bound."""
        return {
            ">": value > self.limit,
            ">=": value >= self.limit,
            "<": value < self.limit,
            "<=": value <= self.limit,
        }[self.op]

    def __str__(self) -> str:
        limit = int(self.limit) if float(self.limit).is_integer() else self.limit
        return f"{self.op} {limit}"


Bounds = Bound | tuple[Bound, ...] | None


def as_bounds(bound: Bounds) -> tuple[Bound, ...]:
    """`bound` as a tuple of bounds (none, one or several)."""
    if bound is None:
        return ()
    return (bound,) if isinstance(bound, Bound) else tuple(bound)


POSITIVE = Bound(">", 0)
NONNEGATIVE = Bound(">=", 0)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    return "a table" if isinstance(value, dict) else repr(value)


def format_key(section: str, key: str) -> str:
    """``[section].key`` (``section`` may itself be dotted: ``data.twin``)."""
    return f"[{section}].{key}" if section else key


def check_number(where: str, value: Any, bound: Bounds, integer: bool) -> Any:
    """`value` as an int or float, checked against `bound`; else a `ConfigError`."""
    bounds = as_bounds(bound)
    what = "an integer" if integer else "a number"
    if bounds:
        what = f"{what} " + " and ".join(str(b) for b in bounds)
    ok = (
        isinstance(value, int) and not isinstance(value, bool)
        if integer
        else _is_number(value) and math.isfinite(value)
    )
    if not ok or not all(b.holds(value) for b in bounds):
        raise ConfigError(f"{where} must be {what}, got {_describe(value)}")
    return int(value) if integer else float(value)


class Table:
    """One TOML table being read; `finish` rejects the keys nobody read.

    **Arguments:** `data` (the parsed table) and `section`, its dotted path
    (``"model"``, ``"data.twin"``), used in every error message.
    """

    def __init__(self, data: Any, section: str):
        if not isinstance(data, dict):
            raise ConfigError(
                f"[{section}] must be a table (a [{section}] section or "
                f"{{ key = value }}), got {_describe(data)}"
            )
        self.data = data
        self.section = section
        self.read: set[str] = set()

    def where(self, key: str) -> str:
        """The path of `key` in messages: ``[section].key``."""
        return format_key(self.section, key)

    def has(self, key: str) -> bool:
        """Whether `key` is present."""
        return key in self.data

    def raw(self, key: str, default: Any = REQUIRED) -> Any:
        """The value of `key` unchecked (marked as read)."""
        self.read.add(key)
        if key in self.data:
            return self.data[key]
        if default is REQUIRED:
            raise ConfigError(f"{self.where(key)} is required but missing")
        return default

    def number(
        self, key: str, default: Any = REQUIRED, bound: Bounds = None
    ) -> float | None:
        """A finite number (int or float in the file), optionally bounded."""
        value = self.raw(key, default)
        if key not in self.data:
            return value
        return check_number(self.where(key), value, bound, integer=False)

    def integer(
        self, key: str, default: Any = REQUIRED, bound: Bounds = None
    ) -> int | None:
        """An integer, optionally bounded."""
        value = self.raw(key, default)
        if key not in self.data:
            return value
        return check_number(self.where(key), value, bound, integer=True)

    def boolean(self, key: str, default: Any = REQUIRED) -> bool | None:
        """``true`` or ``false``."""
        value = self.raw(key, default)
        if key in self.data and not isinstance(value, bool):
            raise ConfigError(
                f"{self.where(key)} must be true or false, got {_describe(value)}"
            )
        return value

    def string(
        self, key: str, default: Any = REQUIRED, choices: Iterable[str] | None = None
    ) -> str | None:
        """A string, optionally one of `choices` (unknown ones list the choices)."""
        value = self.raw(key, default)
        if key not in self.data:
            return value
        if not isinstance(value, str):
            raise ConfigError(
                f"{self.where(key)} must be a string, got {_describe(value)}"
            )
        if choices is not None:
            check_choice(self.where(key), value, choices)
        return value

    def numbers(
        self,
        key: str,
        default: Any = REQUIRED,
        bound: Bounds = None,
        integer: bool = False,
        length: int | None = None,
    ) -> tuple | None:
        """A list of numbers (a tuple), each bounded, of `length` if given."""
        value = self.raw(key, default)
        if key not in self.data:
            return value
        size = "" if length is None else f" of {length}"
        kind = "integers" if integer else "numbers"
        if not isinstance(value, list) or (length is not None and len(value) != length):
            raise ConfigError(
                f"{self.where(key)} must be a list{size} {kind}, got {_describe(value)}"
            )
        return tuple(
            check_number(f"{self.where(key)}[{i}]", v, bound, integer)
            for i, v in enumerate(value)
        )

    def table(self, key: str, default: Any = REQUIRED) -> "Table | None":
        """A sub-table, as a `Table` (or `default` when absent)."""
        value = self.raw(key, default)
        if value is None:
            return None
        return Table(value, f"{self.section}.{key}" if self.section else key)

    def finish(self, allowed: Iterable[str] | None = None) -> None:
        """Reject every key not read (or not in `allowed`), naming the allowed ones."""
        allowed = sorted(set(self.read if allowed is None else allowed))
        unknown = [key for key in self.data if key not in allowed]
        if unknown:
            key = unknown[0]
            hint = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {hint[0]!r}?)" if hint else ""
            listing = ", ".join(allowed) if allowed else "none"
            if not self.section:
                hint = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean [{hint[0]}]?)" if hint else ""
                raise ConfigError(
                    f"unknown section [{key}]{hint}; the sections are: "
                    + ", ".join(f"[{name}]" for name in allowed)
                )
            raise ConfigError(
                f"unknown key {self.where(key)}{hint}; the keys allowed in "
                f"[{self.section}] here are: {listing}"
            )


def check_choice(where: str, value: str, choices: Iterable[str]) -> str:
    """`value` if it is one of `choices`, else a `ConfigError` listing them."""
    choices = list(choices)
    if value not in choices:
        hint = difflib.get_close_matches(value, choices, n=1)
        hint = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"{where} = {value!r} is not known{hint}; choose one of: "
            + ", ".join(repr(c) for c in choices)
        )
    return value
