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
Annotations whose category is not in `categories`, or whose box is not a
positive-size finite box, are rejected with an error naming the annotation id.
"""

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_retina import boxes as box_lib


@dataclass
class CocoSource:
    """A parsed COCO JSON file: label map and per-image records (numpy)."""

    annotations_path: str
    images_dir: str
    label_map: list  # index = contiguous class; [{"id": coco category id, "name": str}]
    images: list = field(default_factory=list)  # dicts: id, file, boxes, classes, is_crowd, area

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
            "boxes": ragged("boxes", (0, 4), np.float32),
            "classes": ragged("classes", (0,), np.int32),
            "is_crowd": ragged("is_crowd", (0,), bool),
            "area": ragged("area", (0,), np.float32),
        }
        return tf.data.Dataset.from_tensor_slices(records).map(
            _load_image, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _load_image(record):
    example = dict(record)
    path = example.pop("path")
    example["image"] = decode_image(tf.io.read_file(path))
    return example


def decode_image(encoded):
    """JPEG / PNG / BMP / GIF (first frame) bytes -> uint8 `[H, W, 3]` RGB."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def read_coco_json(annotations_path, images_dir):
    """Parses a COCO JSON file; raises ValueError / FileNotFoundError naming what is wrong."""
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
        if key not in coco:
            raise ValueError(f"{annotations_path}: no '{key}' list; is this a COCO detection file?")

    categories = sorted(coco["categories"], key=lambda c: c["id"])
    label_map = [{"id": int(c["id"]), "name": str(c.get("name", c["id"]))} for c in categories]
    class_of = {entry["id"]: index for index, entry in enumerate(label_map)}

    by_image = {int(image["id"]): [] for image in coco["images"]}
    for ann in coco.get("annotations", []):
        where = f"{annotations_path}: annotation id {ann.get('id')} (image {ann.get('image_id')})"
        if ann.get("category_id") not in class_of:
            raise ValueError(f"{where} has category_id {ann.get('category_id')}, not in 'categories'.")
        if ann.get("image_id") not in by_image:
            raise ValueError(f"{where} refers to an image id that is not in 'images'.")
        x, y, w, h = (float(v) for v in ann["bbox"])
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            raise ValueError(f"{where} has bbox {ann['bbox']}: need finite [x, y, width > 0, height > 0].")
        by_image[ann["image_id"]].append(ann)

    source = CocoSource(annotations_path, images_dir, label_map)
    for image in coco["images"]:
        anns = by_image[int(image["id"])]
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        boxes = np.asarray(box_lib.xywh_to_yxyx(xywh), np.float32)
        source.images.append({
            "id": int(image["id"]),
            "file": os.path.join(images_dir, image["file_name"]),
            "boxes": boxes,
            "classes": np.array([class_of[a["category_id"]] for a in anns], np.int32),
            "is_crowd": np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
            "area": np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns], np.float32),
        })
    missing = [r["file"] for r in source.images if not os.path.isfile(r["file"])]
    if missing:
        raise FileNotFoundError(
            f"{annotations_path}: {len(missing)} image file(s) not found, e.g. {missing[:3]}")
    return source
