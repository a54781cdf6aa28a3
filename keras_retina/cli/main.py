"""`keras_retina` command line: flagfiles, flags -> configs, the command, and what users see of errors.

    keras_retina --help                      the commands, one line each
    keras_retina train --help                the flags `train` uses, grouped, with defaults
    keras_retina train --flagfile=configs/demo.flags

Flagfiles may include others (`--flagfile=configs/r50.flags` inside a file); a flagfile named
relative to the current folder that does not exist there is looked up in the installed configs.
Bad flag values and unknown commands are refused, naming the flag, before any work starts; they,
a data or a usage problem are one line on stderr and exit status 2; a NaN loss exit status 3; a multi-worker
training's lost worker exit status 4; a
full disk one line and status 2; anything else is a bug and keeps its traceback. Each command is a module of this
package with `run(configs, options, args)`; `bin/keras_retina` hides TensorFlow's start-up
lines unless --verbose=3.
"""

import errno
import os
import sys

from keras_retina.cli.flags import (
    COMMANDS,
    OPTIONS,
    build_configs,
    define_flags,
    flag_message,
    print_command_help,
    print_commands,
    renamed_options,
)


def _command(name):
    import importlib

    return importlib.import_module(f"keras_retina.cli.{name.replace('-', '_')}")  # check-data: cli/check_data.py


TAKES_PATHS = ("predict", "rank")  # the commands given pictures (and videos) after their flags
MAY_TAKE_PATHS = ("detect-batch",)  # and the one that may have them in a --input_list file instead


def main(argv):
    from absl import flags, logging

    command = argv[1] if len(argv) > 1 else None
    if command not in COMMANDS or (command not in MAY_TAKE_PATHS and (len(argv) > 2) != (command in TAKES_PATHS)):
        unexpected = f"; unexpected arguments {argv[1:]}" if len(argv) > 1 else ""
        print(f"usage: keras_retina {{{','.join(COMMANDS)}}} [--flagfile=FILE] [--flag=value ...]"
              f" (predict, rank and detect-batch also take IMAGE ...){unexpected}", file=sys.stderr)
        return 2
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines would drown the progress
    from keras_retina.errors import DataError, UsageError, WorkerLost

    values = {name: flags.FLAGS[name].value for name in _GROUPS}
    try:
        configs = build_configs(values)
        options, notes = renamed_options({name: values[name] for name in OPTIONS},
                                         {name for name in _GROUPS if flags.FLAGS[name].present})
        for note in notes:
            print(f"keras_retina {command}: {note}", file=sys.stderr, flush=True)
        return _command(command).run(configs, options, argv[2:])
    except (DataError, UsageError) as error:
        if os.environ.get("KERAS_RETINA_TRACEBACK"):  # for bug reports
            raise
        print(f"keras_retina {command}: error: {flag_message(error)}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # NaN/Inf loss: message names the step and the cause
        print(f"keras_retina {command}: error: {error}", file=sys.stderr)
        return 3
    except WorkerLost as error:  # multi-worker training: another worker stopped
        print(f"keras_retina {command}: error: {error}", file=sys.stderr)
        return 4
    except Exception as error:  # noqa: BLE001 - only a full disk is handled here; the rest re-raised
        if not _disk_full(error):
            raise
        where = getattr(error, "filename", None) or str(error).strip().splitlines()[0][:300]
        print(f"keras_retina {command}: error: the disk is full ({where}); files written so far are whole "
              f"(written under temporary names); free space and run the same command again.", file=sys.stderr)
        return 2


def _disk_full(error):
    """An OSError with ENOSPC/EDQUOT, or TensorFlow's report of one (its file writers raise
    OpErrors that carry the operating system's text, not its number)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return type(error).__module__.startswith("tensorflow") and "No space left on device" in str(error)


def _find_flagfile(path):
    """A flagfile as given, else relative to the installed configs (`configs/demo.flags`)."""
    from absl import app

    if os.path.exists(path):
        return path
    roots = [os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
             os.path.join(sys.prefix, "share", "keras_retina")]
    for root in roots:
        if os.path.isfile(os.path.join(root, path)):
            return os.path.join(root, path)
    raise app.UsageError(f"--flagfile={path}: no such file here or in the installed configs.")


def _resolve_flagfiles(argv, depth=0):
    """Replaces every --flagfile=F (nested ones too) by F's flags, in place and in order, so
    later flags still override earlier ones and includes work from any folder."""
    from absl import app

    if depth > 10:
        raise app.UsageError("--flagfile includes nest more than 10 deep (a cycle?).")
    resolved = []
    for arg in argv:
        if not arg.startswith("--flagfile="):
            resolved.append(arg)
            continue
        with open(_find_flagfile(arg.split("=", 1)[1])) as f:
            lines = [line.strip() for line in f]
        resolved += _resolve_flagfiles([line for line in lines if line and not line.startswith("#")], depth + 1)
    return resolved


_GROUPS = {}  # flag name -> group, filled once per process by define_flags


def run(argv=None):
    """Runs one command: `argv` is the command line after the program name (default:
    `sys.argv[1:]`), e.g. `run(["evaluate", "--model_dir=runs/demo"])`. Exits through
    `SystemExit` with the command's status, as the `keras_retina` program does. May be called
    again in the same process (a notebook, the tests): flags are defined once and every call
    starts from their defaults."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print_commands()
        sys.exit(0)
    from absl import app, flags

    try:
        argv = _resolve_flagfiles([sys.argv[0] if sys.argv and sys.argv[0] else "keras_retina", *args])
    except (app.UsageError, OSError) as error:
        print(f"keras_retina: error: {error}", file=sys.stderr)
        sys.exit(2)
    if not _GROUPS:
        _GROUPS.update(define_flags())
    flags.FLAGS.unparse_flags()  # a second call in one process: nothing carried over from the first
    if any(a in ("-h", "--help") for a in argv[2:]) and argv[1] in COMMANDS:
        print_command_help(argv[1], _GROUPS)
        sys.exit(0)
    app.run(main, argv=argv, flags_parser=_parse_flags)


def _parse_flags(argv):
    """absl's parsing, with a refused flag value as one line and exit status 2 (a refusal, like
    every other), where absl prints "FATAL Flags parsing error" and exits 1."""
    from absl import flags

    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        print(f"keras_retina {argv[1] if len(argv) > 1 else ''}: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
