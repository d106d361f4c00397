"""The type check of a mode or option object, with a message naming the field."""


def check_kind(owner: str, field: str, value: object, kind: type, examples: str):
    """Raise a `TypeError` naming ``owner(field=...)`` unless `value` is a `kind`;
    `examples` says what to pass instead (e.g. ``"Vectorised() or Sequential()"``)."""
    if not isinstance(value, kind):
        raise TypeError(f"{owner}({field}=...) must be {examples}, got {value!r}.")
