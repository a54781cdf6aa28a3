"""Renamed arguments and saved keys, kept for one release: the old spelling of an argument is still
taken, with a `DeprecationWarning` naming the new one, and a file saved under the old key still loads
(silently: the user cannot change a file they were handed). CHANGELOG.md lists every rename.

`argument(kwargs, old, new, value, where)` -> the value to use: `value` (given under the new name)
or the one `kwargs` holds under `old` (removed from `kwargs`); both given is a TypeError.
`no_others(kwargs, where)`: a TypeError for keyword arguments left over (neither a new nor an old name).
`config_key(config, old, new)` -> a copy of a saved config dict with `old` renamed `new`.
"""

import warnings


def argument(kwargs, old, new, value, where):
    if old not in kwargs:
        return value
    given = kwargs.pop(old)
    if value is not None:
        raise TypeError(f"{where}: give {new}= (the new name of {old}=), not both.")
    warnings.warn(f"{where}: {old}= is now {new}= (the same meaning); the old name goes in the next release.",
                  DeprecationWarning, stacklevel=3)
    return given


def no_others(kwargs, where):
    if kwargs:
        raise TypeError(f"{where}() got unexpected keyword argument(s) {sorted(kwargs)}.")


def config_key(config, old, new):
    if old not in config:
        return config
    config = dict(config)
    value = config.pop(old)
    config.setdefault(new, value)
    return config
