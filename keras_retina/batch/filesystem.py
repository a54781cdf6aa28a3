"""Files of a batch run on any filesystem Apache Beam reads: local paths and URIs (gs://, s3://, hdfs://).

`local(path)`: a `file://` URI as the local path it names (Beam has no filesystem for the scheme),
any other path as it is. `check_path(path, said)`: a UsageError naming the path when Beam cannot
reach `path` here (a scheme it has no filesystem for, or whose Beam extra is not installed:
`EXTRAS`), and for a folder the run writes (`folder=True`), when its name holds glob characters
(Beam reads the run's own file names as patterns) or it is on HDFS (Beam lists an HDFS folder one
level deep, and its rename will not replace a file). `unreachable(error)`: a BeamIOError in one
line naming its path (a bucket without credentials, say). `remove_slash(folder)`.

`join(folder, name)`; `exists(path)`; `match(pattern)` -> the paths matching a glob;
`delete(paths)`; `read_lines(path)` -> the JSON values of a JSON-lines file, one a line.
`writing(path)`: a file to write through, and `write_whole(path, data)`: bytes written under a
temporary name (`path.partial-XXXXXXXX`) and renamed into place, so a reader (or a rerun after a
crash) sees the old file or the whole new one, never half of it (an object store's rename writes
over the old object); `write_json_lines(path, values)`
and `write_json(path, value)` through it. `PARTIAL`: the glob of such temporary files, which a
rerun removes.
"""

import contextlib
import importlib.util
import json
import os
import urllib.parse
import uuid

from keras_retina.errors import UsageError

PARTIAL = "*.partial-*"
GLOB = "*?["
# A scheme's Beam filesystem, the module it needs, and the Beam extra that installs that module.
EXTRAS = {"gs": ("google.cloud.storage", "gcp"), "s3": ("boto3", "aws"), "azfs": ("azure.storage.blob", "azure"),
          "hdfs": ("hdfs", "hadoop")}


def _fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _remote(path):
    return "://" in path and not path.startswith("file://")


def local(path):
    """A `file://` URI -> its local path (`%XX` escapes decoded; `?` and `#` are part of the name);
    any other path as it is."""
    if not path.startswith("file://"):
        return path
    host, _, rest = path[len("file://"):].partition("/")
    if host not in ("", "localhost"):
        raise UsageError(f"{path}: a file:// URI names a file of this machine (file:///path), not of {host}.")
    return "/" + urllib.parse.unquote(rest)


def remove_slash(folder):
    """`folder` without a trailing slash (paths are joined to it with one), a root as it is."""
    stripped = folder.rstrip("/")
    return stripped if stripped and not stripped.endswith(":") else folder


def scheme(path):
    return path.split("://", 1)[0] if _remote(path) else None


def check_path(path, said=None, *, folder=False):
    """A UsageError when Beam cannot reach `path` here, or a `folder` the run writes has glob
    characters in its name or is on HDFS (module docstring); it starts with `said` (how the user
    named the path: `--output_dir=...`), else the path."""
    said = said or path
    if folder and any(c in path for c in GLOB):
        raise UsageError(f"{said}: a folder whose name holds {' '.join(GLOB)} cannot hold a batch run "
                         f"(Beam reads the run's file names as patterns); choose another name.")
    name = scheme(path)
    if name is None:
        return
    if folder and name == "hdfs":
        raise UsageError(f"{said}: a batch run cannot write to hdfs:// (Beam lists an HDFS folder one level deep "
                         f"and its rename does not replace a file, which resuming a run needs); write to gs://, "
                         f"s3:// or a folder every worker mounts.")
    module, extra = EXTRAS.get(name, (None, None))
    if extra is None:
        from apache_beam.io.filesystem import FileSystem

        if name in {system.scheme() for system in FileSystem.get_all_subclasses()}:
            return
        raise UsageError(f"{said}: Beam has no filesystem for {name}:// (local paths, file://, gs://, "
                         f"s3://, azfs:// and hdfs:// are read).")
    if not _installed(module):
        raise UsageError(f"{said}: {name}:// needs Beam's {extra} extra, which is not installed here: "
                         f"pip install \"apache-beam[{extra}]\" (docs/scale.md).")


def unreachable(error):
    """Why Beam could not reach a path (a BeamIOError), in one line naming the path."""
    causes = getattr(error, "exception_details", None) or {}
    if isinstance(causes, dict) and causes:
        path, cause = next(iter(causes.items()))
        text = str(cause).strip().splitlines()
        return f"{path if isinstance(path, str) else path[0]}: {text[0] if text else type(cause).__name__}"
    return str(error).strip().splitlines()[0]


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def join(folder, name):
    return _fs().join(folder, name) if _remote(folder) else os.path.join(folder, name)


def exists(path):
    return _fs().exists(path)


def match(pattern):
    return [m.path for m in _fs().match([pattern])[0].metadata_list]


def delete(paths):
    if paths:
        _fs().delete(list(paths))


def read_bytes(path):
    with _fs().open(path) as f:
        return f.read()


def read_lines(path):
    for raw in read_bytes(path).decode("utf-8").splitlines():
        if raw.strip():
            yield json.loads(raw)


@contextlib.contextmanager
def writing(path):
    """A binary file to write `path` through, whole (module docstring): renamed into place when the
    block ends without an exception; left as a temporary file otherwise."""
    temporary = f"{path}.partial-{uuid.uuid4().hex[:8]}"
    if _remote(path):
        with _fs().create(temporary) as f:
            yield f
        # An object store's rename writes over the old object (GCS and S3 copy, then delete the
        # temporary); if it fails, the old file stays and the temporary is removed by a rerun.
        _fs().rename([temporary], [path])
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(temporary, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def write_whole(path, data):
    """`data` (bytes) into `path`, whole (module docstring)."""
    with writing(path) as f:
        f.write(data)


def write_json_lines(path, values):
    write_whole(path, "".join(json.dumps(v, separators=(",", ":")) + "\n" for v in values).encode("utf-8"))


def write_json(path, value):
    write_whole(path, (json.dumps(value, indent=1) + "\n").encode("utf-8"))
