"""Dirty data: one defined outcome for each kind of bad image or annotation, counted.

`KINDS`: kind -> (severity, outcome). "fixed" kinds (colour mode converted, EXIF rotation,
box clipped or empty, image without annotations, crowd, tiny image) are handled and reported;
"bad_image" / "bad_annotation" kinds are a DataError unless --skip_bad_examples, which skips
the image / drops the annotation and counts it.

- `DataReport`: thread-safe counts and the first SHOW offenders of each kind; `format`,
  `as_dict`, `raise_if_bad(skipping)` (one DataError naming every problem unless skipping).
- `report_boxes(...)`: one image's annotations (`[N, 4]` yxyx normalised) judged by
  `ops.boxes.check_boxes`, the rule every reader and the pipeline apply.
- `scan_records(records, report, num_classes, decode)` -> (number of records, names of the
  records to leave out): the pass over TFRecord and TFDS sources.
- `count_examples(examples)`: reads (so decodes) every example of a dataset; returns the count.
"""

import collections
import threading

import numpy as np

from keras_retina.errors import DataError
from keras_retina.ops import boxes as box_lib
from keras_retina.ops.images import MAX_PIXELS, decode_image

SHOW = 5  # offenders listed per kind

# kind -> (severity, what happens). "fixed": handled, reported for information;
# "bad_image" / "bad_annotation": an error unless --skip_bad_examples, then skipped/dropped.
KINDS = {
    "converted_mode": ("fixed", "converted to RGB"),
    "exif_rotated": ("fixed", "rotated as its EXIF orientation says"),
    "clipped_box": ("fixed", "box clipped to the image"),
    "empty_box": ("fixed", "box with zero width or height: dropped"),
    "negative_image": ("fixed", "no annotations: used as a negative"),
    "crowd": ("fixed", "crowd annotation: kept for evaluation, never a positive"),
    "tiny_image": ("fixed", "smaller than 8x8 pixels: used"),
    "missing_file": ("bad_image", "image file missing"),
    "unreadable_image": ("bad_image", "cannot be decoded (empty, corrupt or truncated)"),
    "unsupported_format": ("bad_image", "a format TensorFlow cannot decode (use JPEG, PNG, GIF, BMP or WebP)"),
    "too_large": ("bad_image", f"more than {MAX_PIXELS:,} pixels"),
    "size_mismatch": ("bad_image", "width/height in the JSON differ from the file"),
    "duplicate_image_id": ("bad_image", "duplicate image id"),
    "outside_folder": ("bad_image", "file_name outside the image folder (../, an absolute path or a link): refused"),
    "bad_box": ("bad_annotation", "box with negative size or NaN/inf coordinates"),
    "outside_box": ("bad_annotation", "box entirely outside the image"),
    "unknown_category": ("bad_annotation", "category id not in 'categories' / the label map"),
    "unknown_image": ("bad_annotation", "image id not in 'images'"),
    "duplicate_annotation_id": ("bad_annotation", "duplicate annotation id"),
    "difficult": ("fixed", "difficult object (Pascal VOC): never a positive, ignored when scoring"),
    "no_annotation_file": ("fixed", "picture without an annotation file: used as a negative"),
    "unreadable_annotations": ("bad_image", "annotation file that cannot be read (not XML / text, too large, or "
                                            "holding entities or a DTD: refused)"),
    "duplicate_annotations": ("bad_image", "two annotation files name this picture"),
    "malformed_annotation": ("bad_annotation", "annotation that does not parse (not numbers, wrong field count)"),
    "out_of_range": ("bad_annotation", "YOLO coordinates outside 0..1"),
    "orphan_annotations": ("bad_annotation", "annotation file without its picture"),
}


class DataReport:
    """Thread-safe counts of each kind of dirty data, with the first offenders by name."""

    def __init__(self, source=""):
        self.source = source
        self.counts = collections.Counter()
        self.offenders = collections.defaultdict(list)
        self._lock = threading.Lock()

    def add(self, kind, where):
        if kind not in KINDS:
            raise KeyError(kind)
        with self._lock:
            self.counts[kind] += 1
            if len(self.offenders[kind]) < SHOW:
                self.offenders[kind].append(str(where))

    def problems(self):
        """(kind, count) of the kinds that are errors unless skipped."""
        return [(k, n) for k, n in sorted(self.counts.items()) if KINDS[k][0] != "fixed"]

    def as_dict(self):
        return {kind: {"count": n, "outcome": KINDS[kind][1], "examples": list(self.offenders[kind])}
                for kind, n in sorted(self.counts.items())}

    def format(self, skipping):
        """Human-readable lines: one per kind, worst first."""
        if not self.counts:
            return f"[data] {self.source}: no problems found."
        lines = [f"[data] {self.source}:"]
        order = {"bad_image": 0, "bad_annotation": 1, "fixed": 2}
        for kind, n in sorted(self.counts.items(), key=lambda item: (order[KINDS[item[0]][0]], item[0])):
            severity, outcome = KINDS[kind]
            if severity == "bad_image":
                action = "skipped" if skipping else "ERROR"
            elif severity == "bad_annotation":
                action = "dropped" if skipping else "ERROR"
            else:
                action = "ok"
            shown = "; ".join(self.offenders[kind][:3]) + (" ..." if n > 3 else "")
            lines.append(f"  {action:7s} {n:6d} x {outcome}: {shown}")
        return "\n".join(lines)

    def raise_if_bad(self, skipping):
        """DataError naming every kind of problem unless `skipping`."""
        problems = self.problems()
        if problems and not skipping:
            raise DataError(
                self.format(skipping) + "\nFix these, or pass --skip_bad_examples to skip bad images and "
                "drop bad annotations (each is counted in the training summary).")


def count_examples(examples, progress_every=1000):
    """Reads every example of a reader's dataset (so every image is decoded); returns how many."""
    count = 0
    for _ in examples:
        count += 1
        if progress_every and count % progress_every == 0:
            print(f"  ... {count} images read", flush=True)
    return count


def report_boxes(where, boxes, classes, is_crowd, num_classes, report, *, category_ids=None):
    """Counts what the training pipeline will do with one image's annotations
    (`ops.boxes.check_boxes`, the rule every reader and the pipeline apply).

    `boxes`: [N, 4] yxyx normalised to the image (0..1 inside it); `classes`: 0..K-1, anything
    else = not in the label map; `category_ids`: the dataset's own ids, shown for unknown ones;
    `where` names the image in the offender lists."""
    if len(boxes) == 0:
        report.add("negative_image", where)
    category_ids = classes if category_ids is None else category_ids
    verdicts = np.asarray(box_lib.check_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), 1.0, 1.0)[1])
    for box, verdict, cls, crowd, category in zip(boxes, verdicts, classes, is_crowd, category_ids):
        if int(verdict) in box_lib.VERDICT_KINDS:
            report.add(box_lib.VERDICT_KINDS[int(verdict)],
                       f"{where}: box {np.round(box.astype(np.float64), 3).tolist()}")
        if not 0 <= cls < num_classes:
            report.add("unknown_category", f"{where}: category {int(category)}")
        if crowd:
            report.add("crowd", where)


def _name(where):
    """A record's name tensor -> str that encodes back to the same bytes (`record_source.kept_records`)."""
    return where.numpy().decode("utf-8", "surrogateescape")


def _shown(name):
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def shown(name_bytes):
    """A record's name (bytes) as people read it (undecodable bytes replaced)."""
    return name_bytes.decode("utf-8", "replace")


def scan_records(records, report, num_classes, decode=False, progress_every=10000):
    """The dirty-data pass over a TFRecord or TFDS source; returns (number of records, names
    of the records to leave out: images that did not decode, images sharing an id).

    `records`: a `tf.data.Dataset` of dicts, one per image, without decoded pixels:
    "where" (string naming the file and record), "image_id", "boxes" ([N, 4] yxyx
    normalised), "classes" (int, 0..K-1 or -1 = not in the label map), "category_ids" (the
    dataset's ids), "is_crowd" (bool [N]) and "encoded" (the image file's bytes). Every
    annotation is checked (`report_boxes`); an image whose header says it has more than
    `ops.images.MAX_PIXELS` pixels (a GIF's frames counted) is "too_large" and never decoded;
    records sharing an image id are all counted as "duplicate_image_id" (whose boxes would
    evaluation match?); with `decode`, every other image is decoded too (in parallel, in
    TensorFlow, as training decodes it) and each record that fails is counted as
    "unreadable_image" by name.
    """
    import tensorflow as tf

    from keras_retina.ops import images as image_lib

    limit = image_lib.MAX_PIXELS
    # Pixels from each image's header; a header TensorFlow cannot read gives none (decoding fails too).
    sizes = records.map(lambda r: (r["where"], image_lib.encoded_pixels(r["encoded"])),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).ignore_errors()
    pixels = {_name(where): int(n) for where, n in sizes}
    count = 0
    names, too_large = [], []
    by_id = collections.defaultdict(list)
    annotations = records.map(lambda r: {k: v for k, v in r.items() if k != "encoded"},
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for record in annotations.prefetch(tf.data.AUTOTUNE):
        count += 1
        where = _name(record["where"])
        by_id[int(record["image_id"])].append(where)
        if pixels.get(where, 0) > limit:
            too_large.append(where)
            report.add("too_large", f"{_shown(where)}: {pixels[where]:,} pixels")
        elif decode:
            names.append(where)
        report_boxes(_shown(where), record["boxes"].numpy().reshape(-1, 4), record["classes"].numpy(),
                    record["is_crowd"].numpy(), num_classes, report, category_ids=record["category_ids"].numpy())
        if progress_every and count % progress_every == 0:
            print(f"  ... {count} records checked", flush=True)
    excluded = [where for shared in by_id.values() if len(shared) > 1 for where in shared]
    for where in excluded:
        report.add("duplicate_image_id", _shown(where))
    excluded += [where for where in too_large if where not in set(excluded)]
    if decode:
        large = tf.constant([where.encode("utf-8", "surrogateescape") for where in too_large] or [b""])
        small = records.filter(lambda r: tf.logical_not(tf.reduce_any(tf.equal(r["where"], large))))
        decoded = small.map(lambda r: (r["where"], tf.shape(decode_image(r["encoded"]))),
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        good = {_name(where) for where, _ in decoded.ignore_errors()}
        unreadable = [where for where in names if where not in good]
        for where in unreadable:
            report.add("unreadable_image", _shown(where))
        shared = set(excluded)
        excluded += [where for where in unreadable if where not in shared]
    return count, excluded
