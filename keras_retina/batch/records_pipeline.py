"""`keras_retina write-records`: annotation files (any format the readers take) -> sharded TFRecords, on Beam.

The launcher reads the annotations as training does (`data.splits.open_sources`: the same
dirty-data checks, the same --val_fraction split, the same label map) and prints each split's
counts (`data.label_statistics`). The pipeline deals each split's pictures into shards (picture i
of a split to shard i % n, so a rerun writes the same shards), and each worker encodes its
pictures as tf.train.Examples in the TF Object Detection API layout `data.readers.tfrecord`
reads:

  image/encoded (the file's own bytes; a photo whose EXIF orientation was applied to its
  annotations is re-encoded upright, JPEG quality 95), image/format, image/filename,
  image/source_id (the picture's image id), image/height, image/width, image/key/sha256,
  image/object/bbox/{ymin,xmin,ymax,xmax} (normalised), image/object/class/label (the label
  map's category id), image/object/class/text, image/object/is_crowd, image/object/area.

Files: RECORDS_DIR/{split}-SSSSS-of-NNNNN.tfrecord, each written under a temporary name and renamed
whole; RECORDS_DIR/label_map.json and label_map.pbtxt; RECORDS_DIR/failures.jsonl: the pictures
that did not decode, with the reason (left out of the records; the run goes on);
RECORDS_DIR/records_run.json: what the run was asked (its pictures and their annotations, shards
per split, label map),
so a rerun into the folder resumes the same run (it skips the finished shards and writes the same
bytes) and a run asking for something else is refused. Only shard keys travel in the pipeline:
the launcher writes each pending shard's picture entries to RECORDS_DIR/work/ (removed at the
end), and the worker writing a shard reads, encodes and writes its pictures one by one, so no
process holds the encoded pictures of more than the record being written.
"""

import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid

import apache_beam as beam
import numpy as np
import tensorflow as tf

from keras_retina.batch import filesystem as fs
from keras_retina.data.readers.tfrecord import feature
from keras_retina.ops import images as image_lib

MANIFEST = "records_run.json"  # what the run was asked (`batch.inputs.check_manifest`)
WORK = "work"  # each pending shard's pictures and, once written, its failures; removed at the end


def shard_path(records_dir, split, shard, shards):
    return os.path.join(records_dir, f"{split}-{shard:05d}-of-{shards:05d}.tfrecord")


def encode_example(entry, label_map):
    """One picture entry of a PictureSource (file, id, orientation, boxes yxyx pixels of the picture as
    annotated, classes 0..K-1, is_crowd, area) -> a serialised tf.train.Example (module docstring)."""
    path = entry["file"]
    with tf.io.gfile.GFile(path, "rb") as f:
        encoded = f.read()
    orientation = entry.get("orientation", 1)
    pixels = image_lib.read_picture(path).numpy() if orientation != 1 else None
    if pixels is not None:  # annotated upright: the record holds the upright picture
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
        encoded, kind = buffer.getvalue(), b"jpeg"
        height, width = pixels.shape[:2]
    else:
        decoded = image_lib.decode_image(tf.constant(encoded))  # every record must decode
        height, width = int(decoded.shape[0]), int(decoded.shape[1])
        kind = os.path.splitext(path)[1].lower().lstrip(".").replace("jpg", "jpeg").encode()
    boxes = np.asarray(entry["boxes"], np.float64).reshape(-1, 4) / np.array([height, width, height, width])
    classes = np.asarray(entry["classes"], np.int64).reshape(-1)
    known = classes >= 0  # a class outside the label map: counted by the reader's report, not written
    boxes, classes = boxes[known], classes[known]
    crowd = np.asarray(entry["is_crowd"], np.int64).reshape(-1)[known]
    area = np.asarray(entry.get("area", np.zeros(len(known))), np.float64).reshape(-1)[known]
    ids = [label_map[c]["id"] for c in classes]
    features = {
        "image/encoded": feature([encoded], "bytes"), "image/format": feature([kind], "bytes"),
        "image/filename": feature([os.path.basename(path).encode()], "bytes"),
        "image/source_id": feature([str(entry["id"]).encode()], "bytes"),
        "image/key/sha256": feature([hashlib.sha256(encoded).hexdigest().encode()], "bytes"),
        "image/height": feature([height], "int"), "image/width": feature([width], "int"),
        **{f"image/object/bbox/{name}": feature(boxes[:, i].tolist(), "float")
           for i, name in enumerate(("ymin", "xmin", "ymax", "xmax"))},
        "image/object/class/label": feature(ids, "int"),
        "image/object/class/text": feature([label_map[c]["name"].encode() for c in classes], "bytes"),
        "image/object/is_crowd": feature(crowd.tolist(), "int"),
        "image/object/area": feature(area.tolist(), "float"),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString(deterministic=True)  # map fields in one order: a rerun writes the same bytes


def _work_path(records_dir, split, shard):
    return os.path.join(records_dir, WORK, f"{split}-{shard:05d}.jsonl")


def _failures_path(records_dir, split, shard):
    return os.path.join(records_dir, WORK, f"{split}-{shard:05d}.failures.jsonl")


def _plain(entry):
    return {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in entry.items()
            if key in ("id", "file", "orientation", "boxes", "classes", "is_crowd", "area")}


def _write_shard(key, records_dir, shards, label_map):
    """One shard: its pictures (from its work file) encoded in order and written under a temporary
    name renamed whole (to a bucket, through a local file copied there whole), its failures (beside
    its work file) first."""
    split, shard = key
    failures, path = [], shard_path(records_dir, split, shard, shards[split])
    remote = fs.scheme(records_dir) is not None
    folder = tempfile.mkdtemp(prefix="keras_retina_records_") if remote else None
    temporary = os.path.join(folder, "shard") if remote else f"{path}.partial-{uuid.uuid4().hex[:8]}"
    try:
        with tf.io.TFRecordWriter(temporary) as writer:
            for entry in fs.read_lines(_work_path(records_dir, split, shard)):
                try:
                    writer.write(encode_example(entry, label_map))
                except image_lib.READ_ERRORS as error:
                    failures.append({"input": entry["file"], "reason": image_lib.unreadable_reason(error)[:500]})
        fs.write_json_lines(_failures_path(records_dir, split, shard), failures)
        if remote:
            with open(temporary, "rb") as source, fs.writing(path) as target:
                shutil.copyfileobj(source, target, 1 << 22)
        else:
            with open(temporary, "rb+") as written:  # on disk before its name says the shard is finished
                os.fsync(written.fileno())
            os.replace(temporary, path)
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def write_records(entries, label_map, records_dir, shards, options):
    """Writes `entries` ({split: [picture entries]}) as sharded TFRecords (module docstring);
    returns ({split: records written}, [failures], {split: shards finished before})."""
    from keras_retina.batch.inputs import check_manifest

    # The manifest's hash covers each picture's annotations, so a rerun after they changed is refused
    # instead of mixing shards of the old and the new.
    pictures = [f"{split}\t{json.dumps(_plain(entry), sort_keys=True)}" for split, rows in entries.items()
                for entry in rows]
    done = {split: {s for s in range(shards[split]) if fs.exists(shard_path(records_dir, split, s, shards[split]))}
            for split in entries}
    if check_manifest(records_dir, pictures, shards, {"label_map": label_map}, name=MANIFEST, flag="--records_dir",
                      started=bool(fs.match(os.path.join(records_dir, "*.tfrecord")))):
        _remove_work(records_dir)  # a new run: nothing of an earlier one's work folder belongs to it
    fs.delete(fs.match(os.path.join(records_dir, fs.PARTIAL)))
    pending = sorted({(split, i % shards[split]) for split, rows in entries.items() for i in range(len(rows))}
                     - {(split, s) for split, finished in done.items() for s in finished})
    for split, shard in pending:  # each pending shard's pictures, for the worker that writes it
        fs.write_json_lines(_work_path(records_dir, split, shard),
                            [_plain(e) for i, e in enumerate(entries[split]) if i % shards[split] == shard])
    if pending:
        with beam.Pipeline(options=options) as pipeline:
            _ = (pipeline
                 | "Shards" >> beam.Create(pending, reshuffle=False)
                 | "Spread" >> beam.Reshuffle()
                 | "Write shards" >> beam.Map(_write_shard, records_dir, shards, label_map))
    failures = _record_failures(entries, records_dir, shards, pending)
    _write_label_maps(label_map, records_dir)
    written = {split: len(rows) - sum(f["input"] in {e["file"] for e in rows} for f in failures)
               for split, rows in entries.items()}
    return written, failures, {split: len(finished) for split, finished in done.items()}


def _record_failures(entries, records_dir, shards, pending):
    """failures.jsonl, written whole: the failures of every shard written since the last complete
    run (their files in WORK, a crashed run's too), and those listed before of the other shards;
    then WORK is removed."""
    path = os.path.join(records_dir, "failures.jsonl")
    rewritten = {entry["file"] for split, shard in pending
                 for i, entry in enumerate(entries[split]) if i % shards[split] == shard}
    every = {f["input"]: f for f in (fs.read_lines(path) if fs.exists(path) else []) if f["input"] not in rewritten}
    for found in sorted(fs.match(os.path.join(records_dir, WORK, "*.failures.jsonl"))):
        every.update((f["input"], f) for f in fs.read_lines(found))
    every = [every[name] for name in sorted(every)]
    fs.write_json_lines(path, every)
    _remove_work(records_dir)
    return every


def _remove_work(records_dir):
    work = os.path.join(records_dir, WORK)
    fs.delete(fs.match(os.path.join(work, "*")))
    if fs.scheme(work) is None and os.path.isdir(work):
        os.rmdir(work)


def _write_label_maps(label_map, records_dir):
    fs.write_json(os.path.join(records_dir, "label_map.json"), label_map)
    fs.write_whole(os.path.join(records_dir, "label_map.pbtxt"), "".join(
        f"item {{\n  id: {e['id']}\n  name: {json.dumps(e['name'])}\n}}\n" for e in label_map).encode("utf-8"))
