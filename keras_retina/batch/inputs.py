"""What a batch run detects: its inputs listed once, dealt into shards, and the run's manifest.

`list_inputs(args, input_list)` -> the sorted, distinct paths / URIs of the pictures and videos
named by `args` (files; folders: their pictures and videos, not their sub-folders, as `predict`;
globs `*`, `?`, `[...]`: every match) and by the lines of the `input_list` file. Local paths and
URIs of every filesystem Apache Beam reads (gs://, s3://, hdfs://, ...) are matched through
Beam's FileSystems. A name that matches nothing is a UsageError naming it.

`deal(inputs, shards)` -> {shard: [inputs]}: input i (in sorted order) goes to shard i % shards,
so the same inputs always give the same shards. `shard_count(n, given)`: `given`, else one
shard per SHARD_PICTURES inputs.

The manifest (`OUTPUT_DIR/batch_run.json`) records what a run was asked (a hash of its inputs,
their count, the shards, the model, the settings); a run into a folder holding another run's
manifest must ask the same, else it is refused (a rerun resumes; other work needs another folder).
"""

import hashlib
import json
import math
import os

from keras_retina.errors import UsageError
from keras_retina.inference.video import VIDEO_EXTENSIONS, is_video
from keras_retina.ops.images import EXTENSIONS

FILE_EXTENSIONS = EXTENSIONS + (".tif", ".tiff") + VIDEO_EXTENSIONS
SHARD_PICTURES = 1000  # inputs per shard when --shards is not given
MANIFEST = "batch_run.json"


def _filesystems():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _match(pattern):
    """Every file matching `pattern` (a glob, or a folder's pictures and videos)."""
    found = _filesystems().match([pattern])[0].metadata_list
    return [m.path for m in found if m.path.lower().endswith(FILE_EXTENSIONS)]


def list_inputs(args, input_list=None):
    """The run's inputs, sorted and distinct (module docstring)."""
    names = list(args)
    if input_list:
        with _filesystems().open(input_list) as f:
            names += [line.strip() for line in f.read().decode("utf-8").splitlines()
                      if line.strip() and not line.startswith("#")]
    found = []
    for name in names:
        if any(c in name for c in "*?["):
            matched = _match(name)
        elif "://" not in name and os.path.isdir(name) or name.endswith("/"):
            matched = _match(name.rstrip("/") + "/*")
        else:
            matched = [name] if _filesystems().exists(name) else []
        if not matched:
            raise UsageError(f"{name}: {'nothing matches it' if '*' in name else 'no such picture, video or folder'}"
                             f"{' (a listed input of --input_list=' + input_list + ')' if name not in args else ''}.")
        found += matched
    return sorted(set(found))


def shard_count(inputs, given=0):
    return given or max(1, math.ceil(inputs / SHARD_PICTURES))


def deal(inputs, shards):
    dealt = {shard: [] for shard in range(shards)}
    for i, uri in enumerate(inputs):
        dealt[i % shards].append(uri)
    return dealt


def pictures_of(inputs):
    return [uri for uri in inputs if not is_video(uri)]


def check_manifest(output_dir, inputs, shards, asked):
    """Writes the run's manifest, or checks a rerun asks what the first run asked (module docstring)."""
    from keras_retina.files import write_json

    digest = hashlib.sha256("\n".join(inputs).encode("utf-8")).hexdigest()
    manifest = {"inputs": len(inputs), "inputs_sha256": digest, "shards": shards, **asked}
    path = os.path.join(output_dir, MANIFEST)
    fs = _filesystems()
    if fs.exists(path):
        with fs.open(path) as f:
            before = json.loads(f.read().decode("utf-8"))
        differ = sorted(key for key in set(before) | set(manifest) if before.get(key) != manifest.get(key))
        if differ:
            raise UsageError(f"--output_dir={output_dir} holds a batch run that asked other "
                             f"{', '.join(differ)} ({path}): a rerun resumes only the same run; write this one "
                             f"to another --output_dir.")
        return False
    if "://" in output_dir:
        with fs.create(path) as f:
            f.write(json.dumps(manifest, indent=1).encode("utf-8"))
    else:
        os.makedirs(output_dir, exist_ok=True)
        write_json(manifest, path)
    return True
