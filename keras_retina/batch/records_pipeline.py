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
whole (a rerun skips the finished ones), RECORDS_DIR/label_map.json and label_map.pbtxt, and
RECORDS_DIR/failures.jsonl: the pictures that did not decode, with the reason (left out of the
records; the run goes on).
"""

import hashlib
import io
import json
import os
import uuid

import apache_beam as beam
import numpy as np
import tensorflow as tf

from keras_retina.ops import images as image_lib

READ_ERRORS = (OSError, tf.errors.InvalidArgumentError, image_lib.BadImage)


def shard_path(records_dir, split, shard, shards):
    return os.path.join(records_dir, f"{split}-{shard:05d}-of-{shards:05d}.tfrecord")


def _feature(values, kind):
    if kind == "bytes":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


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
        "image/encoded": _feature([encoded], "bytes"), "image/format": _feature([kind], "bytes"),
        "image/filename": _feature([os.path.basename(path).encode()], "bytes"),
        "image/source_id": _feature([str(entry["id"]).encode()], "bytes"),
        "image/key/sha256": _feature([hashlib.sha256(encoded).hexdigest().encode()], "bytes"),
        "image/height": _feature([height], "int"), "image/width": _feature([width], "int"),
        **{f"image/object/bbox/{name}": _feature(boxes[:, i].tolist(), "float")
           for i, name in enumerate(("ymin", "xmin", "ymax", "xmax"))},
        "image/object/class/label": _feature(ids, "int"),
        "image/object/class/text": _feature([label_map[c]["name"].encode() for c in classes], "bytes"),
        "image/object/is_crowd": _feature(crowd.tolist(), "int"),
        "image/object/area": _feature(area.tolist(), "float"),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString(deterministic=True)  # map fields in one order: a rerun writes the same bytes


def _encode(item, label_map):
    split, shard, index, entry = item
    try:
        return split, shard, index, encode_example(entry, label_map), None
    except READ_ERRORS as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return split, shard, index, None, {"input": entry["file"], "reason": reason[:500]}


def _key(encoded):
    return (encoded[0], encoded[1]), encoded


def _write_shard(grouped, records_dir, shards):
    (split, shard), items = grouped
    items = sorted(items, key=lambda item: item[2])
    path = shard_path(records_dir, split, shard, shards[split])
    temporary = f"{path}.partial-{uuid.uuid4().hex[:8]}"
    with tf.io.TFRecordWriter(temporary) as writer:
        for _, _, _, record, _ in items:
            if record is not None:
                writer.write(record)
    tf.io.gfile.rename(temporary, path, overwrite=True)
    return [failure for *_, failure in items if failure is not None]


def write_records(entries, label_map, records_dir, shards, options):
    """Writes `entries` ({split: [picture entries]}) as sharded TFRecords (module docstring);
    returns ({split: records written}, [failures], {split: shards finished before})."""
    tf.io.gfile.makedirs(records_dir)
    for stale in tf.io.gfile.glob(os.path.join(records_dir, "*.partial-*")):
        tf.io.gfile.remove(stale)
    done = {split: {s for s in range(shards[split])
                    if tf.io.gfile.exists(shard_path(records_dir, split, s, shards[split]))} for split in entries}
    pending = [(split, i % shards[split], i, entry) for split, rows in entries.items() for i, entry in enumerate(rows)
               if i % shards[split] not in done[split]]
    failed_path = os.path.join(records_dir, "failures.jsonl")
    failures = []
    if tf.io.gfile.exists(failed_path):
        with tf.io.gfile.GFile(failed_path) as f:
            failures = [json.loads(line) for line in f if line.strip()]
    if pending:
        with beam.Pipeline(options=options) as pipeline:
            _ = (pipeline
                 | "Pictures" >> beam.Create(pending)
                 | "Spread" >> beam.Reshuffle()
                 | "Encode" >> beam.Map(_encode, label_map)
                 | "By shard" >> beam.Map(_key)
                 | "Shards" >> beam.GroupByKey()
                 | "Write shards" >> beam.FlatMap(_write_shard, records_dir, shards)
                 | "Failures" >> beam.combiners.ToList()
                 | "Record failures" >> beam.Map(_add_failures, failed_path))
        with tf.io.gfile.GFile(failed_path) as f:
            failures = [json.loads(line) for line in f if line.strip()]
    _write_label_maps(label_map, records_dir)
    written = {split: len(rows) - sum(f["input"] in {e["file"] for e in rows} for f in failures)
               for split, rows in entries.items()}
    return written, failures, {split: len(finished) for split, finished in done.items()}


def _add_failures(found, path):
    before = []
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            before = [json.loads(line) for line in f if line.strip()]
    known = {f["input"] for f in before}
    every = sorted(before + [f for f in found if f["input"] not in known], key=lambda f: f["input"])
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(json.dumps(line) + "\n" for line in every))


def _write_label_maps(label_map, records_dir):
    with tf.io.gfile.GFile(os.path.join(records_dir, "label_map.json"), "w") as f:
        f.write(json.dumps(label_map, indent=1) + "\n")
    with tf.io.gfile.GFile(os.path.join(records_dir, "label_map.pbtxt"), "w") as f:
        f.write("".join(f"item {{\n  id: {e['id']}\n  name: {json.dumps(e['name'])}\n}}\n" for e in label_map))
