"""Files keras_retina writes, written so that a reader never sees half of one, and the one-writer lock.

- `write_json(data, path)`: standard JSON (NaN and Inf become null) written atomically;
  `replace_atomically(path, write)`: any file, written under a temporary name, flushed to disk,
  renamed over `path` (a reader sees the old file or the new one); `read_json(path)`.
- `make_folder(path, what)`: `os.makedirs` whose failures (a file in the way, a read-only disk)
  are one DataError naming the path and `what` gave it (a flag, an environment variable).
- `new_name(folder, stem, suffix, taken)`: `folder/stem+suffix`, or with "-2", "-3"... where that
  exists, is in `taken` or is one of `avoid`: what a run writes never replaces a file it did not
  write in that run.
- `exclusive(folder, holder)`: a lock held while a block runs (flock on `folder/.lock`, released
  when the process ends, even by SIGKILL); a second holder gets a UsageError naming the first,
  or waits (`wait=True`). Remote folders (gs://...) are not locked.
"""

import contextlib
import fcntl
import json
import math
import os
import socket
import sys

import tensorflow as tf

from keras_retina.errors import DataError, UsageError


def cache_home():
    """keras_retina's cache folder (downloads, converted models, precision measurements):
    $KERAS_RETINA_HOME, else $XDG_CACHE_HOME/keras_retina, else ~/.cache/keras_retina."""
    home = os.environ.get("KERAS_RETINA_HOME")
    if home:
        return home
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "keras_retina")


def write_json(data, path, indent=2):
    """Writes standard JSON (NaN and Inf become null) atomically: a temporary file of this
    process, flushed to disk, then renamed over `path`; a reader sees the old file or the new."""
    text = json.dumps(_finite(data), indent=indent, allow_nan=False)
    folder = os.path.dirname(path) or "."
    if "://" in path:  # a remote file system: its own atomic rename, no fsync
        tf.io.gfile.makedirs(folder)
        with tf.io.gfile.GFile(f"{path}.tmp-{os.getpid()}", "w") as f:
            f.write(text)
        tf.io.gfile.rename(f"{path}.tmp-{os.getpid()}", path, overwrite=True)
        return
    os.makedirs(folder, exist_ok=True)
    replace_atomically(path, lambda temp: _write_text(temp, text))


def replace_atomically(path, write):
    """Calls `write(temporary path)` next to `path`, flushes it to disk and renames it to `path`.
    The temporary name keeps `path`'s extension (Keras wants `.keras`)."""
    stem, ext = os.path.splitext(path)
    temp = f"{stem}.tmp-{os.getpid()}{ext}"
    try:
        write(temp)
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _finite(value):
    """NaN and Inf floats -> None, in nested dicts and lists (standard JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_json(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def make_folder(path, what=None):
    """`os.makedirs(path, exist_ok=True)`; DataError naming `path` (and `what` gave it: a flag, an
    environment variable) when it cannot be."""
    where = f"{path} ({what})" if what else str(path)
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(f"{where}: a file is in the way (a folder is needed there).") from None
    except OSError as error:
        raise DataError(f"{where}: cannot make this folder ({error.strerror or error}).") from None


def new_name(folder, stem, suffix, taken=(), avoid=()):
    """A path in `folder` that does not exist, is not in `taken` and is not one of `avoid` (real
    paths compared): stem+suffix, else stem-2+suffix, stem-3+suffix, ..."""
    avoided = {os.path.realpath(p) for p in avoid}
    n = 1
    while True:
        path = os.path.join(folder, f"{stem}{'' if n == 1 else f'-{n}'}{suffix}")
        if path not in taken and os.path.realpath(path) not in avoided and not os.path.lexists(path):
            return path
        n += 1


@contextlib.contextmanager
def exclusive(folder, holder, wait=False):
    """Holds an exclusive lock on `folder` (an flock on its `.lock` file, released when the process
    ends, even by SIGKILL) while the block runs. A folder locked by another process is a UsageError
    naming that process, or with `wait` a wait for it to finish. `holder` says who holds it
    ("keras_retina train"). Remote folders (gs://...) are not locked."""
    if "://" in str(folder):
        yield
        return
    make_folder(folder)
    try:
        handle = open(os.path.join(folder, ".lock"), "a+", encoding="utf-8")
    except OSError as error:  # a read-only or foreign .lock file
        raise UsageError(f"{folder}: cannot open its .lock file ({error.strerror}).") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "another process"
            if not wait:
                raise UsageError(f"{folder} is in use by {other}; wait for it to finish, or use another "
                                 f"folder.") from None
            print(f"{folder} is in use by {other}; waiting for it to finish ...", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as error:  # ENOLCK, ENOSYS: a file system without locks (some NFS, Lustre)
            print(f"WARNING: {folder} cannot be locked ({error.strerror}); make sure no other process writes "
                  f"to it.", file=sys.stderr, flush=True)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder} (pid {os.getpid()} on {socket.gethostname()})\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock
