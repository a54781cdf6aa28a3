"""How configurations are declared: frozen dataclasses whose fields carry their own help.

`ModelConfig`, `TrainConfig` and `DataConfig` are each declared once, field by field, with
`setting(default, help, check=, choices=, flag=)`. Everything else derives from them: the
command line's flags and their `--help` (`cli_flags`), the values checked when a config is
made (`check_fields`, raising `errors.UsageError` naming the field), `config.json` in a
model_dir (`dataclasses.asdict`) and the resume check.
"""

import dataclasses

from keras_retina.errors import UsageError


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
    """`cls(**values)`; unknown keys are a UsageError naming them and `what` they came from."""
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UsageError(f"{what}: unknown {cls.__name__} setting(s) {', '.join(unknown)}.")
    return cls(**values)


def as_tuples(value):
    """Lists (from JSON or flags) -> tuples, recursively, so frozen configs compare equal."""
    if isinstance(value, (list, tuple)):
        return tuple(as_tuples(v) for v in value)
    return value
