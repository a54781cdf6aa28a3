"""Files of a batch run on any filesystem Apache Beam reads: local paths and URIs (gs://, s3://, hdfs://).

`join(folder, name)`; `exists(path)`; `match(pattern)` -> the paths matching a glob;
`delete(paths)`; `read_lines(path)` -> the JSON values of a JSON-lines file, one a line.
`writing(path)`: a file to write through, and `write_whole(path, data)`: bytes written under a
temporary name (`path.partial-XXXXXXXX`) and renamed into place, so a reader (or a rerun after a
crash) sees the old file or the whole new one, never half of it; `write_json_lines(path, values)`
and `write_json(path, value)` through it. `PARTIAL`: the glob of such temporary files, which a
rerun removes.
"""

import contextlib
import json
import os
import uuid

PARTIAL = "*.partial-*"


def _fs():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _remote(path):
    return "://" in path and not path.startswith("file://")


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
        if _fs().exists(path):  # a retried bundle or a rerun: the same bytes again
            _fs().delete([path])
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
