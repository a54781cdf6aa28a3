"""What a batch run detects: its inputs listed once, dealt into shards, and the run's manifest.

`list_inputs(args, input_list)` -> the sorted, distinct paths / URIs of the pictures and videos
named by `args` (files; folders: their pictures and videos, not their sub-folders, as `predict`;
globs `*`, `?`, `[...]`: every match, unless a local file or folder has that very name) and by the lines
of the `input_list` file. Local paths and URIs of every filesystem Apache Beam reads (gs://,
s3://, hdfs://, ...) are matched through Beam's FileSystems (`file://` URIs as local paths). A
name that matches nothing, or whose filesystem Beam cannot reach here, is a UsageError naming it.

`deal(inputs, shards)` -> {shard: [inputs]}: input i (in sorted order) goes to shard i % shards,
so the same inputs always give the same shards. `shard_count(n, given)`: `given`, else one
shard per SHARD_PICTURES inputs.

The manifest (`OUTPUT_DIR/batch_run.json`) records what a run was asked (a hash of its inputs,
their count, the shards, the model, the settings); a run into a folder holding another run's
manifest must ask the same, else it is refused (a rerun resumes; other work needs another folder),
unless that run finished no work at all (it stopped on a wrong flag, say): then it is replaced.
write-records keeps its own manifest the same way (`records_pipeline.MANIFEST`).
"""

import hashlib
import json
import math
import os

from keras_retina.batch import filesystem as fs
from keras_retina.errors import UsageError
from keras_retina.inference.video import VIDEO_EXTENSIONS
from keras_retina.ops.images import EXTENSIONS

FILE_EXTENSIONS = EXTENSIONS + (".tif", ".tiff") + VIDEO_EXTENSIONS
SHARD_PICTURES = 1000  # inputs (detect-batch) or pictures (write-records) per shard when --shards is not given
MANIFEST = "batch_run.json"


def _match(pattern):
    """Every picture or video matching `pattern` (a glob, or FOLDER/*), by extension."""
    return [path for path in fs.match(pattern) if path.lower().endswith(FILE_EXTENSIONS)]


def _listed(input_list, said):
    """The lines of the --input_list file (blank lines and # comments left out)."""
    fs.check_path(input_list, said)
    if not fs.exists(input_list):
        raise UsageError(f"{said}: no such file.")
    try:
        text = fs.read_bytes(input_list).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{said}: not a text file (one path or URI a line).") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _folder(folder):
    """The pictures and videos of a local folder (not of its sub-folders), its name taken as it is."""
    with os.scandir(folder) as entries:
        return [os.path.join(folder.rstrip("/") or "/", entry.name) for entry in entries
                if entry.is_file() and entry.name.lower().endswith(FILE_EXTENSIONS)]


def _named(name):
    """(the inputs `name` names, why none when none)."""
    if "://" not in name:  # local: a file or folder of that very name, else a glob
        if os.path.isdir(name):
            return _folder(name), "a folder holding no picture or video"
        if os.path.isfile(name):
            return [name], ""
        if any(c in name for c in fs.GLOB):
            return _match(name), "no picture or video matches it"
        return [], "no such picture, video or folder"
    if any(c in name for c in fs.GLOB):
        return _match(name), "no picture or video matches it"
    if name.endswith("/"):
        return _match(fs.join(name.rstrip("/"), "*")), "a folder holding no picture or video"
    if fs.exists(name):
        return [name], ""
    # an object store's folder named without its trailing slash, or nothing at all
    return _match(fs.join(name, "*")), "no such picture, video or folder"


def list_inputs(args, input_list=None):
    """The run's inputs, sorted and distinct (module docstring)."""
    named = [(name, "") for name in args]
    if input_list:
        where = f" (listed in --input_list={input_list})"
        named += [(name, where) for name in _listed(fs.local(input_list), f"--input_list={input_list}")]
    found = []
    for given, where in named:
        name = fs.local(given)
        fs.check_path(name, f"{given}{where}")
        matched, why = _named(name)
        if not matched:
            raise UsageError(f"{given}{where}: {why} (pictures: {', '.join(EXTENSIONS)}, .tif; videos: "
                             f"{', '.join(VIDEO_EXTENSIONS)}; a folder's sub-folders are not read).")
        found += matched
    return sorted(set(found))


def shard_count(inputs, given=0):
    return given or max(1, math.ceil(inputs / SHARD_PICTURES))


def deal(inputs, shards):
    dealt = {shard: [] for shard in range(shards)}
    for i, uri in enumerate(inputs):
        dealt[i % shards].append(uri)
    return dealt


def check_manifest(output_dir, inputs, shards, asked, *, started=True, name=MANIFEST, flag="--output_dir"):
    """Writes the run's manifest, or checks a rerun asks what the first run asked (module docstring);
    a run that had not `started` any work (it stopped on a wrong flag, say) is replaced."""
    digest = hashlib.sha256("\n".join(inputs).encode("utf-8")).hexdigest()
    manifest = {"inputs": len(inputs), "inputs_sha256": digest, "shards": shards, **asked}
    path = fs.join(output_dir, name)
    if fs.exists(path) and started:
        before = json.loads(fs.read_bytes(path).decode("utf-8"))
        differ = sorted(key for key in set(before) | set(manifest) if before.get(key) != manifest.get(key))
        if differ:
            raise UsageError(f"{flag}={output_dir} holds a batch run that asked other "
                             f"{', '.join(differ)} ({path}): a rerun resumes only the same run; write this one "
                             f"to another {flag}.")
        return False
    fs.write_json(path, manifest)
    return True

