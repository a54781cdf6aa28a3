"""COCO-format JSON + image folder (what most labelling tools export) -> examples.

`read_coco_json(annotations, images_dir)` parses the file once in Python and
returns a `CocoSource`: the label map and one record per image. `dataset()`
turns it into a `tf.data.Dataset` of examples in the common reader format
(`keras_retina.data.pipeline`):

    image_id  int64 []          COCO image id
    image     uint8 [H, W, 3]   decoded RGB (grayscale and RGBA are converted)
    boxes     float32 [N, 4]    yxyx pixels of the original image
    classes   int32 [N]         contiguous class ids 0..K-1
    is_crowd  bool [N]
    area      float32 [N]       the annotation's `area` (segment area), used by COCO eval

Rules: category ids (any integers, in any order) map to contiguous classes in
ascending id order; names are kept in the label map written to
`model_dir/label_map.json`. COCO's `[x, y, width, height]` boxes become yxyx
here and nowhere else. Images without annotations are kept (negatives). Crowd
annotations are kept and flagged; the training pipeline drops them so they
never become positives, and COCO evaluation uses them as its crowd regions.

Dirty data (`keras_retina.data.cleaning`): reading checks every annotation and
every image file's header (missing, unreadable, too large, size differing from
the JSON, EXIF orientation, colour mode) and fills `CocoSource.report`. Bad
images and annotations raise one ValueError listing them all, unless
`skip_bad_examples`, which skips those images / drops those annotations and
counts them. Images are decoded with PIL (`cleaning.load_image`: any mode to
RGB, EXIF applied when the JSON's width/height are the rotated ones); a file
that only fails when fully decoded (truncated) is an error naming it, or under
`skip_bad_examples` a skip that is counted in the report and logged.
"""

import json
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_retina import boxes as box_lib
from keras_retina.data import cleaning


@dataclass
class CocoSource:
    """A parsed COCO JSON file: label map and per-image records (numpy)."""

    annotations_path: str
    images_dir: str
    label_map: list  # index = contiguous class; [{"id": coco category id, "name": str}]
    images: list = field(default_factory=list)  # dicts: id, file, exif, boxes, classes, is_crowd, area
    skip_bad_examples: bool = False
    report: cleaning.DataReport = None

    @property
    def num_classes(self):
        return len(self.label_map)

    def dataset(self):
        """`tf.data.Dataset` of examples (see module docstring), in file order."""
        lengths = [len(r["classes"]) for r in self.images]

        def ragged(key, empty_shape, dtype):
            values = [r[key] for r in self.images]
            flat = np.concatenate(values) if values else np.zeros(empty_shape, dtype)
            return tf.RaggedTensor.from_row_lengths(flat.astype(dtype), lengths)

        records = {
            "image_id": np.array([r["id"] for r in self.images], np.int64),
            "path": [r["file"] for r in self.images],
            "exif": np.array([r.get("exif", True) for r in self.images], bool),
            "boxes": ragged("boxes", (0, 4), np.float32),
            "classes": ragged("classes", (0,), np.int32),
            "is_crowd": ragged("is_crowd", (0,), bool),
            "area": ragged("area", (0,), np.float32),
        }
        ds = tf.data.Dataset.from_tensor_slices(records).map(
            self._load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.filter(lambda example: example.pop("ok"))
        return ds.map(lambda example: {k: v for k, v in example.items() if k != "ok"})

    def _load_numpy(self, path, exif):
        path = path.decode()
        try:
            return cleaning.load_image(path, bool(exif)), True
        except cleaning.BadImage as error:
            if not self.skip_bad_examples:
                raise ValueError(f"{error}. Fix or remove it, or pass --skip_bad_examples.") from None
            self.report.add(error.kind, path)
            print(f"[data] skipped {error}", file=sys.stderr, flush=True)
            return np.zeros((1, 1, 3), np.uint8), False

    def _load(self, record):
        example = dict(record)
        path, exif = example.pop("path"), example.pop("exif")
        image, ok = tf.numpy_function(self._load_numpy, [path, exif], (tf.uint8, tf.bool), stateful=False)
        image.set_shape([None, None, 3])
        ok.set_shape([])
        example["image"], example["ok"] = image, ok
        return example


def decode_image(encoded):
    """JPEG / PNG / BMP / GIF (first frame) bytes -> uint8 `[H, W, 3]` RGB."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def read_coco_json(annotations_path, images_dir, skip_bad_examples=False):
    """Parses a COCO JSON file and checks it (see module docstring).

    Raises FileNotFoundError / ValueError naming what is wrong; with `skip_bad_examples`,
    bad images are left out and bad annotations dropped, all counted in `source.report`.
    """
    if not os.path.isfile(annotations_path):
        raise FileNotFoundError(f"COCO annotations file not found: {annotations_path}")
    if not os.path.isdir(images_dir):
        raise FileNotFoundError(f"images folder not found: {images_dir} (for {annotations_path})")
    with open(annotations_path) as f:
        try:
            coco = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{annotations_path}: not valid JSON ({error})") from None
    for key in ("images", "categories"):
        if not isinstance(coco, dict) or not isinstance(coco.get(key), list):
            raise ValueError(f"{annotations_path}: no '{key}' list; is this a COCO detection file?")

    report = cleaning.DataReport(annotations_path)
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    label_map = [{"id": int(c["id"]), "name": str(c.get("name", c["id"]))} for c in categories]
    class_of = {entry["id"]: index for index, entry in enumerate(label_map)}

    # Images: duplicates, then each file's header.
    images = {}
    for image in coco["images"]:
        image_id = image.get("id")
        path = os.path.join(images_dir, str(image.get("file_name", "")))
        if image_id in images:
            report.add("duplicate_image_id", f"image id {image_id} ({path})")
            continue
        images[image_id] = entry = {"id": image_id, "file": path, "bad": None, "anns": []}
        try:
            height, width, orientation, mode = cleaning.image_header(path)
        except cleaning.BadImage as error:
            entry["bad"] = error.kind
            report.add(error.kind, error)
            continue
        shown_h, shown_w = (width, height) if orientation in (5, 6, 7, 8) else (height, width)
        json_hw = (image.get("height"), image.get("width"))
        if None in json_hw or json_hw == (shown_h, shown_w):
            entry["exif"] = True  # annotated as a viewer shows it
            entry["hw"] = (shown_h, shown_w)
        elif json_hw == (height, width):
            entry["exif"] = False  # annotated on the stored pixels
            entry["hw"] = (height, width)
        else:
            entry["bad"] = "size_mismatch"
            report.add("size_mismatch", f"{path}: JSON says {json_hw[1]}x{json_hw[0]}, file is {width}x{height}")
            continue
        if entry["exif"] and orientation not in (None, 1):
            report.add("exif_rotated", f"{path} (orientation {orientation})")
        if mode not in ("RGB",):
            report.add("converted_mode", f"{path} ({mode})")
        if min(entry["hw"]) < 8:
            report.add("tiny_image", f"{path} ({entry['hw'][1]}x{entry['hw'][0]})")

    # Annotations.
    seen_ids = set()
    for ann in coco.get("annotations", []):
        where = f"annotation id {ann.get('id')} (image {ann.get('image_id')})"
        if ann.get("id") is not None and ann.get("id") in seen_ids:
            report.add("duplicate_annotation_id", where)
            continue
        seen_ids.add(ann.get("id"))
        if ann.get("category_id") not in class_of:
            report.add("unknown_category", f"{where}: category_id {ann.get('category_id')}")
            continue
        entry = images.get(ann.get("image_id"))
        if entry is None:
            report.add("unknown_image", where)
            continue
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            report.add("bad_box", f"{where}: bbox {ann.get('bbox')}")
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            report.add("bad_box", f"{where}: bbox {ann['bbox']}")
            continue
        if entry["bad"] is None:
            height, width = entry["hw"]
            x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, width), min(y + h, height)
            if x1 <= x0 or y1 <= y0:
                report.add("outside_box", f"{where}: bbox {ann['bbox']} in a {width}x{height} image")
                continue
            if (x0, y0, x1, y1) != (x, y, x + w, y + h):
                report.add("clipped_box", f"{where}: bbox {ann['bbox']} in a {width}x{height} image")
                x, y, w, h = x0, y0, x1 - x0, y1 - y0
        if ann.get("iscrowd", 0):
            report.add("crowd", where)
        entry["anns"].append({**ann, "bbox": [x, y, w, h]})
    report.raise_if_bad(skip_bad_examples)

    source = CocoSource(annotations_path, images_dir, label_map, skip_bad_examples=skip_bad_examples,
                        report=report)
    for entry in images.values():
        if entry["bad"] is not None:
            continue
        anns = entry["anns"]
        if not anns:
            report.add("negative_image", entry["file"])
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        source.images.append({
            "id": int(entry["id"]),
            "file": entry["file"],
            "exif": entry["exif"],
            "boxes": np.asarray(box_lib.xywh_to_yxyx(xywh), np.float32),
            "classes": np.array([class_of[a["category_id"]] for a in anns], np.int32),
            "is_crowd": np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
            "area": np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns], np.float32),
        })
    if not source.images:
        raise ValueError(f"{annotations_path}: no usable images.\n{report.format(skip_bad_examples)}")
    return source
