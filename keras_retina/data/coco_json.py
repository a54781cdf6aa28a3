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
counts them; it also decodes every file once up front (`verify_images`), so a
truncated file is a counted skip too. Images are decoded by TensorFlow in the
input pipeline (no Python in it): any mode to RGB, 16-bit scaled to 8, EXIF
orientation applied when the JSON's width/height are the rotated ones. Without
`skip_bad_examples` a file that only fails when fully decoded (truncated) stops
training; the `train` command then finds and names it (`find_undecodable`).
"""

import json
import math
import os
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

    @property
    def num_examples(self):
        return len(self.images)

    def dataset(self, shuffle=False, seed=None):
        """`tf.data.Dataset` of examples (see module docstring), in file order or, with
        `shuffle`, reshuffled over the whole set each pass, before any image is decoded."""
        ds = tf.data.Dataset.from_tensor_slices(self._records())
        if shuffle:
            ds = ds.shuffle(len(self.images), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if self.skip_bad_examples:  # files were verified when read; a last guard, logged by TF
            ds = ds.ignore_errors(log_warning=True)
        ds.coco_source = self  # random access for --deterministic (pipeline.deterministic_train_dataset)
        return ds

    def find_undecodable(self):
        """{path: cleaning.BadImage} of this source's images that do not fully decode."""
        return cleaning.verify_images([r["file"] for r in self.images])

    def example_at(self, index):
        """Example number `index` (a scalar int tensor), read and decoded."""
        return _load({key: value[index] for key, value in self._records().items()})

    def _records(self):
        if getattr(self, "_cached_records", None) is None:
            with tf.init_scope():  # eager constants, whichever graph asks first
                self._cached_records = self._make_records()
        return self._cached_records

    def _make_records(self):
        lengths = [len(r["classes"]) for r in self.images]

        def ragged(key, empty_shape, dtype):
            values = [r[key] for r in self.images]
            flat = np.concatenate(values) if values else np.zeros(empty_shape, dtype)
            return tf.RaggedTensor.from_row_lengths(flat.astype(dtype), lengths)

        records = {
            "image_id": tf.constant([r["id"] for r in self.images], tf.int64),
            "path": tf.constant([r["file"] for r in self.images], tf.string),
            "orientation": tf.constant([r.get("orientation", 1) for r in self.images], tf.int32),
            "boxes": ragged("boxes", (0, 4), np.float32),
            "classes": ragged("classes", (0,), np.int32),
            "is_crowd": ragged("is_crowd", (0,), bool),
            "area": ragged("area", (0,), np.float32),
        }
        return records



def _load(record):
    example = dict(record)
    path, orientation = example.pop("path"), example.pop("orientation")
    example["image"] = apply_orientation(decode_image(tf.io.read_file(path)), orientation)
    return example


def apply_orientation(image, orientation):
    """Rotates/flips `[H, W, C]` as EXIF orientation 1-8 says (what viewers and PIL's
    `exif_transpose` show)."""
    branches = [
        lambda: image,  # 1 (and unknown values)
        lambda: tf.image.flip_left_right(image),  # 2
        lambda: tf.image.rot90(image, 2),  # 3
        lambda: tf.image.flip_up_down(image),  # 4
        lambda: tf.transpose(image, [1, 0, 2]),  # 5: transpose
        lambda: tf.image.rot90(image, 3),  # 6: 90 degrees clockwise
        lambda: tf.image.rot90(tf.transpose(image, [1, 0, 2]), 2),  # 7: transverse
        lambda: tf.image.rot90(image, 1),  # 8: 90 degrees counter-clockwise
    ]
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation - 1, 0)
    rotated = tf.switch_case(tf.cast(index, tf.int32), branches)
    rotated.set_shape([None, None, image.shape[-1]])
    return rotated


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
    for key, entries in (("images", coco["images"]), ("categories", coco["categories"]),
                         ("annotations", coco.get("annotations") or [])):
        for number, entry in enumerate(entries):
            needs = ("id", "file_name") if key == "images" else ("id",) if key == "categories" else ()
            if not isinstance(entry, dict) or any(k not in entry for k in needs) or (
                    "id" in needs and not isinstance(entry["id"], int)):
                raise ValueError(f"{annotations_path}: '{key}' entry #{number} ({str(entry)[:80]}) is not "
                                 f"an object with an integer 'id'{' and a file_name' if key == 'images' else ''}.")
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    label_map = [{"id": int(c["id"]), "name": str(c.get("name", c["id"]))} for c in categories]
    class_of = {entry["id"]: index for index, entry in enumerate(label_map)}

    # Images: duplicate ids (all their entries are out: which picture do their boxes belong
    # to?), then each file's header.
    id_count = {}
    for image in coco["images"]:
        id_count[image["id"]] = id_count.get(image["id"], 0) + 1
    images = {}
    for image in coco["images"]:
        image_id = image["id"]
        path = os.path.join(images_dir, str(image["file_name"]))
        if id_count[image_id] > 1:
            report.add("duplicate_image_id", f"image id {image_id} ({path})")
            images.setdefault(image_id, {"id": image_id, "file": path, "bad": "duplicate_image_id", "anns": []})
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
        entry["orientation"] = orientation if entry["exif"] and orientation in range(2, 9) else 1
        if entry["orientation"] != 1:
            report.add("exif_rotated", f"{path} (orientation {orientation})")
        if mode not in ("RGB",):
            report.add("converted_mode", f"{path} ({mode})")
        if min(entry["hw"]) < 8:
            report.add("tiny_image", f"{path} ({entry['hw'][1]}x{entry['hw'][0]})")

    # Annotations.
    seen_ids = set()
    for ann in coco.get("annotations") or []:
        where = f"annotation id {ann.get('id')} (image {ann.get('image_id')})"
        if ann.get("id") is not None and ann.get("id") in seen_ids:
            report.add("duplicate_annotation_id", where)
            continue
        if not isinstance(ann.get("category_id"), int) or ann["category_id"] not in class_of:
            report.add("unknown_category", f"{where}: category_id {ann.get('category_id')}")
            continue
        entry = images.get(ann.get("image_id")) if isinstance(ann.get("image_id"), int) else None
        if entry is None:
            report.add("unknown_image", where)
            continue
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):  # missing, not a list of 4 numbers
            report.add("bad_box", f"{where}: bbox {ann.get('bbox')}")
            continue
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
            report.add("bad_box", f"{where}: bbox {ann['bbox']}")
            continue
        if w == 0 or h == 0:  # COCO 2017 train has two (image ids 200365, 550395): nothing to learn
            report.add("empty_box", f"{where}: bbox {ann['bbox']}")
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
        seen_ids.add(ann.get("id"))  # only an accepted annotation claims its id
        if ann.get("iscrowd", 0):
            report.add("crowd", where)
        area = ann.get("area")
        area = float(area) if isinstance(area, (int, float)) and math.isfinite(area) else w * h
        entry["anns"].append({**ann, "bbox": [x, y, w, h], "area": area})
    if skip_bad_examples:  # decode each file once now, so even a truncated one is a counted skip
        unusable = cleaning.verify_images(sorted({e["file"] for e in images.values() if e["bad"] is None}))
        for entry in images.values():
            if entry["bad"] is None and entry["file"] in unusable:
                entry["bad"] = unusable[entry["file"]].kind
                report.add(entry["bad"], unusable[entry["file"]])
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
            "orientation": entry["orientation"],
            "boxes": np.asarray(box_lib.xywh_to_yxyx(xywh), np.float32),
            "classes": np.array([class_of[a["category_id"]] for a in anns], np.int32),
            "is_crowd": np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
            "area": np.array([a["area"] for a in anns], np.float32),
        })
    if not source.images:
        raise ValueError(f"{annotations_path}: no usable images.\n{report.format(skip_bad_examples)}")
    return source
