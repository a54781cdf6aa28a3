"""Annotation files + picture files -> a source with random access: what every file reader shares.

The readers of COCO JSON, Pascal VOC, YOLO and CSV parse their own files into picture entries
(dicts: "id", "file", "bad" (a `cleaning.KINDS` name or None), "anns": accepted boxes) and use:

- `check_picture(entry, declared_hw, report, orientation)`: the picture file's header (missing,
  unreadable, too large, a format TensorFlow cannot decode: `ops.images.image_header`), its size
  against the annotations' (`declared_hw`), EXIF orientation and colour mode;
- `box_verdicts` / `report_box`: the one box rule (`ops.boxes.check_boxes`), reported by name;
- `inside(folder, path)`: whether a path named by an annotation stays inside its folder;
- `finish(...)`: every file decoded once under `skip_bad_examples`, one DataError listing every
  problem otherwise, negatives counted, and the `PictureSource`.

`PictureSource` has the interface of `data.source`; its examples hold image_id int64 [], image
uint8 [H, W, 3] RGB as viewers show it, boxes float32 [N, 4] yxyx pixels of that picture,
classes int32 [N] 0..K-1, is_crowd bool [N] (never positives; ignored when scoring), area [N].
"""

import os

import numpy as np
import tensorflow as tf

from keras_retina.errors import DataError
from keras_retina.ops import boxes as box_lib
from keras_retina.ops import images as image_lib
from keras_retina.ops.large_picture import TiffPicture

# How a reader's boxes relate to a picture's EXIF orientation: compare the declared size with the
# stored and the rotated one ("declared": COCO JSON, Pascal VOC), boxes on the picture as viewers
# show it ("shown": YOLO, as Ultralytics reads pictures) or as stored ("stored": fizyr's CSV).
ORIENTATIONS = ("declared", "shown", "stored")


class PictureSource:
    """Parsed annotations: label map and per-picture records (numpy), random access."""

    decoded = False  # pictures are decoded by TensorFlow in the pipeline (PIL checked their headers)

    def __init__(self, name, label_map, images, skip_bad_examples, report):
        self.name = name
        self.label_map = label_map  # index = contiguous class; [{"id": category id, "name": str}]
        self.images = images  # dicts: id, file, orientation, boxes, classes, is_crowd, area
        self.skip_bad_examples = skip_bad_examples
        self.report = report
        with tf.init_scope():  # eager constants, whichever graph asks first
            self._records = self._make_records()

    @property
    def num_examples(self):
        return len(self.images)

    def examples(self, shuffle=False, seed=None):
        """Examples in file order or, with `shuffle`, reshuffled over the whole set each pass,
        before any picture is decoded."""
        ds = tf.data.Dataset.from_tensor_slices(self._records)
        if shuffle:
            ds = ds.shuffle(len(self.images), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if self.skip_bad_examples:  # files were verified when read; a last guard, logged by TF
            ds = ds.ignore_errors(log_warning=True)
        return ds

    def ordered_examples(self, seed, start):
        """(i, example) from i = `start` on: example `index_shuffle(i mod N)` of the permutation
        seeded by (seed, i // N); a resumed run reads none of the earlier ones."""
        count = self.num_examples
        seed = tf.cast(seed, tf.int64)

        def element(i):
            index = tf.random.experimental.index_shuffle(i % count, tf.stack([seed, i // count]), count - 1)
            return i, _load({key: value[index] for key, value in self._records.items()})

        return tf.data.Dataset.range(int(start), 2**62).map(element, num_parallel_calls=tf.data.AUTOTUNE,
                                                            deterministic=True)

    def find_undecodable(self):
        """'<file>: <reason>' for each of this source's pictures that does not fully decode."""
        return [str(error) for error in image_lib.verify_images([r["file"] for r in self.images]).values()]

    def subset(self, keep, name):
        """A source of the pictures whose index is in `keep` (the same label map and report)."""
        return PictureSource(name, self.label_map, [self.images[i] for i in keep], self.skip_bad_examples,
                             self.report)

    def _make_records(self):
        lengths = [len(r["classes"]) for r in self.images]

        def ragged(key, empty_shape, dtype):
            values = [r[key] for r in self.images]
            flat = np.concatenate(values) if values else np.zeros(empty_shape, dtype)
            return tf.RaggedTensor.from_row_lengths(flat.astype(dtype), lengths)

        return {
            "image_id": tf.constant([r["id"] for r in self.images], tf.int64),
            "path": tf.constant([r["file"] for r in self.images], tf.string),
            "orientation": tf.constant([r.get("orientation", 1) for r in self.images], tf.int32),
            "boxes": ragged("boxes", (0, 4), np.float32),
            "classes": ragged("classes", (0,), np.int32),
            "is_crowd": ragged("is_crowd", (0,), bool),
            "area": ragged("area", (0,), np.float32),
        }


def _load(record):
    example = dict(record)
    path, orientation = example.pop("path"), example.pop("orientation")
    example["image"] = image_lib.apply_orientation(image_lib.decode_image(tf.io.read_file(path)), orientation)
    return example


def inside(folder, path):
    """Whether `path` names a file below `folder` (lexically: `..` and absolute names leave it)."""
    if "\0" in path:
        return False
    folder = os.path.normpath(os.path.abspath(folder))
    candidate = os.path.normpath(os.path.abspath(path))
    return candidate != folder and os.path.commonpath([folder, candidate]) == folder


def check_picture(entry, declared_hw, report, orientation="declared"):
    """Reads the header of `entry["file"]`; sets entry "hw" (the size the boxes are in) and
    "orientation" (the EXIF rotation to apply), or entry "bad" (reported). `declared_hw`: the
    (height, width) the annotations give, None when they give none."""
    path = entry["file"]
    try:
        if image_lib.windowed() and path.lower().endswith(image_lib.TIFF_SUFFIXES):
            height, width, exif, mode = _tiff_header(path)  # read window by window: any size
        else:
            height, width, exif, mode = image_lib.image_header(path)
    except image_lib.BadImage as error:
        entry["bad"] = error.kind
        report.add(error.kind, error)
        return
    shown = (width, height) if exif in (5, 6, 7, 8) else (height, width)
    if orientation == "stored":
        rotate, entry["hw"] = False, (height, width)
    elif orientation == "shown" or declared_hw is None or None in declared_hw or tuple(declared_hw) == shown:
        rotate, entry["hw"] = True, shown  # annotated as a viewer shows it (or it cannot tell)
    elif tuple(declared_hw) == (height, width):
        rotate, entry["hw"] = False, (height, width)  # annotated on the stored pixels
    else:
        entry["bad"] = "size_mismatch"
        report.add("size_mismatch", f"{path}: annotations say {declared_hw[1]}x{declared_hw[0]}, file is "
                                    f"{width}x{height}")
        return
    entry["orientation"] = exif if rotate and exif in range(2, 9) else 1
    if entry["orientation"] != 1:
        report.add("exif_rotated", f"{path} (orientation {exif})")
    if mode not in ("RGB",):
        report.add("converted_mode", f"{path} ({mode})")
    if min(entry["hw"]) < 8:
        report.add("tiny_image", f"{path} ({entry['hw'][1]}x{entry['hw'][0]})")


def _tiff_header(path):
    if not os.path.isfile(path):
        raise image_lib.BadImage("missing_file", f"{path}: no such file")
    picture = TiffPicture(path)
    picture.close()
    return picture.height, picture.width, 1, "RGB"


def box_verdicts(yxyx, sizes):
    """(clipped boxes [M, 4], verdicts [M]) of the one box rule for boxes [M, 4] yxyx pixels of
    pictures of sizes [M, 2] (NaN for a bad picture's boxes: neither outside nor clipped)."""
    yxyx = np.asarray(yxyx, np.float64).reshape(-1, 4)
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    clipped, verdicts = box_lib.check_boxes(yxyx, sizes[:, 0], sizes[:, 1])
    return np.asarray(clipped, np.float64), np.asarray(verdicts)


def judge(groups):
    """[(hw or None, boxes [n, 4] yxyx pixels)] -> [(clipped [n, 4], verdicts [n])]: `box_verdicts`
    once over every picture's boxes (a bad picture's, hw None, are neither outside nor clipped)."""
    counts = [len(boxes) for _, boxes in groups]
    if not groups:
        return []
    boxes = np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for _, b in groups])
    sizes = np.concatenate([np.tile(hw if hw is not None else (np.nan, np.nan), (n, 1)).reshape(-1, 2)
                            for (hw, _), n in zip(groups, counts)])
    clipped, verdicts = box_verdicts(boxes, sizes) if len(boxes) else (np.zeros((0, 4)), np.zeros(0, int))
    ends = np.cumsum(counts)
    return [(clipped[end - n:end], verdicts[end - n:end]) for n, end in zip(counts, ends)]


def report_box(report, verdict, where, hw):
    """Reports a box's verdict under `where`; returns whether the box is kept (ok or clipped)."""
    verdict = int(verdict)
    if verdict in (box_lib.BAD, box_lib.EMPTY, box_lib.OUTSIDE):
        shown = f" in a {hw[1]}x{hw[0]} image" if verdict == box_lib.OUTSIDE else ""
        report.add(box_lib.VERDICT_KINDS[verdict], f"{where}{shown}")
        return False
    if verdict == box_lib.CLIPPED:
        report.add("clipped_box", f"{where} in a {hw[1]}x{hw[0]} image")
    return True


def finish(name, label_map, entries, report, skip_bad_examples):
    """The PictureSource of checked `entries` (dicts with "id", "file", "bad", "orientation" and
    "anns": [(yxyx pixel box, class, is_crowd, area)]); DataError listing every problem unless
    `skip_bad_examples`, which first decodes every good file once (a truncated one becomes a
    counted skip)."""
    if skip_bad_examples:
        checked = {e["file"] for e in entries if e["bad"] is None}
        if image_lib.windowed():  # read window by window later: each window is checked as it is decoded
            checked = {f for f in checked if not f.lower().endswith(image_lib.TIFF_SUFFIXES)}
        unusable = image_lib.verify_images(sorted(checked))
        for entry in entries:
            if entry["bad"] is None and entry["file"] in unusable:
                entry["bad"] = unusable[entry["file"]].kind
                report.add(entry["bad"], unusable[entry["file"]])
    report.raise_if_bad(skip_bad_examples)
    kept = []
    for entry in entries:
        if entry["bad"] is not None:
            continue
        anns = entry["anns"]
        if not anns:
            report.add("negative_image", entry["file"])
        kept.append({
            "id": int(entry["id"]),
            "file": entry["file"],
            "orientation": entry.get("orientation", 1),
            "hw": tuple(entry["hw"]),
            "boxes": np.array([a[0] for a in anns], np.float32).reshape(-1, 4),
            "classes": np.array([a[1] for a in anns], np.int32),
            "is_crowd": np.array([bool(a[2]) for a in anns], bool),
            "area": np.array([a[3] for a in anns], np.float32),
        })
    if not kept:
        raise DataError(f"{name}: no usable images.\n{report.format(skip_bad_examples)}")
    return PictureSource(name, label_map, kept, skip_bad_examples, report)
