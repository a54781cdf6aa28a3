"""How configurations are declared: frozen dataclasses whose fields carry their own help.

`ModelConfig`, `TrainConfig` and `DataConfig` are each declared once, field by field, with
`setting(default, help, check=, choices=, flag=)`. Everything else derives from them: the
command line's flags and their `--help` (`cli.flags.define_flags`), the values checked when a config is
made (`check_fields`, raising `errors.UsageError` naming the field), `config.json` in a
model_dir (`dataclasses.asdict`) and the resume check.
"""

import dataclasses

from keras_retina.errors import DataError, UsageError

POSITIVE = (lambda v: v > 0, "must be positive.")
NOT_NEGATIVE = (lambda v: v >= 0, "must be >= 0.")
UNIT = (lambda v: 0 <= v <= 1, "must be in [0, 1].")


def setting(default, help, check=None, choices=None, flag=True):
    """A config field. `check`: (predicate on the value, message) or None; `choices`: allowed
    values; `flag`: whether the command line has a flag for it."""
    metadata = {"help": help, "check": check, "choices": choices, "flag": flag}
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple default: configs are frozen")
    return dataclasses.field(default=default, metadata=metadata)


def check_fields(config):
    """Raises UsageError naming the first field of `config` whose value breaks its rules."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        choices, check = field.metadata.get("choices"), field.metadata.get("check")
        if choices is not None and value not in choices:
            raise UsageError(f"{field.name}={value!r}: choose one of {', '.join(map(str, choices))}.")
        if check is not None and value is not None and not check[0](value):
            raise UsageError(f"{field.name}={value!r}: {check[1]}")


def from_dict(cls, values, what):
    """`cls(**values)` for values read from a file (`what`, e.g. a config.json); unknown keys or
    values that break the rules are a DataError naming the file."""
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names) if isinstance(values, dict) else ["(not an object)"]
    if unknown:
        raise DataError(f"{what}: unknown {cls.__name__} setting(s) {', '.join(unknown)}.")
    try:
        return cls(**values)
    except UsageError as error:
        raise DataError(f"{what}: {error}") from None


def as_tuples(value):
    """Lists (from JSON or flags) -> tuples, recursively, so frozen configs compare equal."""
    if isinstance(value, (list, tuple)):
        return tuple(as_tuples(v) for v in value)
    return value
