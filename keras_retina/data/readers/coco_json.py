"""COCO-format JSON + image folder (what most labelling tools export) -> a data source.

`read_coco_json(annotations, images_dir, skip_bad_examples=False)` parses the file once and
returns a `CocoJsonSource` (`data.source`): the label map and one record per image, random access.
Its `examples()` hold image_id int64 [], image uint8 [H, W, 3] RGB, boxes float32 [N, 4] yxyx
pixels of the original image, classes int32 [N] 0..K-1, is_crowd bool [N], area float32 [N].

Category ids map to contiguous classes in ascending id order. COCO's `[x, y, width, height]` boxes
become yxyx here and nowhere else. Images without annotations are kept (negatives); crowd
annotations are kept and flagged.

Errors: every annotation and every image file's header is checked (`data.cleaning`); bad images and
annotations raise one DataError listing them all, unless `skip_bad_examples`, which skips / drops
them, counts them in the source's `report` and decodes every file once up front.
"""

import json
import math
import os

import numpy as np
import tensorflow as tf

from keras_retina.data import cleaning
from keras_retina.data.label_map import check_label_map
from keras_retina.errors import DataError
from keras_retina.ops import boxes as box_lib
from keras_retina.ops import images as image_lib


class CocoJsonSource:
    """A parsed COCO JSON file: label map and per-image records (numpy), random access."""

    decoded = False  # images are decoded by TensorFlow in the pipeline (PIL checks them when read)

    def __init__(self, annotations_path, label_map, images, skip_bad_examples, report):
        self.name = annotations_path
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
        """Examples (module docstring), in file order or, with `shuffle`, reshuffled over the
        whole set each pass, before any image is decoded."""
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
        """'<file>: <reason>' for each of this source's images that does not fully decode."""
        return [str(error) for error in image_lib.verify_images([r["file"] for r in self.images]).values()]

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


def read_coco_json(annotations_path, images_dir, skip_bad_examples=False):
    """Parses a COCO JSON file and checks it (see module docstring).

    Raises DataError naming what is wrong; with `skip_bad_examples`, bad images are left out
    and bad annotations dropped, all counted in `source.report`.
    """
    if not os.path.isfile(annotations_path):
        raise DataError(f"COCO annotations file not found: {annotations_path}")
    if not os.path.isdir(images_dir):
        raise DataError(f"images folder not found: {images_dir} (for {annotations_path})")
    with open(annotations_path, encoding="utf-8") as f:
        try:
            coco = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{annotations_path}: not valid JSON ({error})") from None
        except RecursionError:
            raise DataError(f"{annotations_path}: nested too deeply to be a COCO file") from None
    for key in ("images", "categories"):
        if not isinstance(coco, dict) or not isinstance(coco.get(key), list):
            raise DataError(f"{annotations_path}: no '{key}' list; is this a COCO detection file?")

    report = cleaning.DataReport(annotations_path)
    for key, entries in (("images", coco["images"]), ("categories", coco["categories"]),
                         ("annotations", coco.get("annotations") or [])):
        for number, entry in enumerate(entries):
            needs = ("id", "file_name") if key == "images" else ("id",) if key == "categories" else ()
            if not isinstance(entry, dict) or any(k not in entry for k in needs) or (
                    "id" in needs and not isinstance(entry["id"], int)):
                raise DataError(f"{annotations_path}: '{key}' entry #{number} ({str(entry)[:80]}) is not "
                                 f"an object with an integer 'id'{' and a file_name' if key == 'images' else ''}.")
    check_label_map(coco["categories"], f"{annotations_path} 'categories'")
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    label_map = [{"id": int(c["id"]), "name": str(c.get("name", c["id"]))} for c in categories]
    class_of = {entry["id"]: index for index, entry in enumerate(label_map)}

    # Images: duplicate ids (all their entries are out: which picture do their boxes belong
    # to?), then each file's header.
    id_count = {}
    for image in coco["images"]:
        id_count[image["id"]] = id_count.get(image["id"], 0) + 1
    images = {}
    folder = os.path.abspath(images_dir)
    for image in coco["images"]:
        image_id = image["id"]
        path = os.path.join(images_dir, str(image["file_name"]))
        if not _inside(folder, path):  # ../x.jpg, /etc/x.jpg (links inside the folder are the user's)
            images[image_id] = {"id": image_id, "file": path, "bad": "outside_folder", "anns": []}
            report.add("outside_folder", f"image id {image_id}: file_name {str(image['file_name'])[:200]!r}")
            continue
        if id_count[image_id] > 1:
            report.add("duplicate_image_id", f"image id {image_id} ({path})")
            images.setdefault(image_id, {"id": image_id, "file": path, "bad": "duplicate_image_id", "anns": []})
            continue
        images[image_id] = entry = {"id": image_id, "file": path, "bad": None, "anns": []}
        try:
            height, width, orientation, mode = image_lib.image_header(path)
        except image_lib.BadImage as error:
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

    # Annotations: the box rule (`ops.boxes.check_boxes`) runs once over all boxes, in pixels of
    # each image (NaN size for a bad image: its boxes are neither outside nor clipped).
    anns = coco.get("annotations") or []
    xywh = np.full((len(anns), 4), np.nan, np.float64)
    size = np.full((len(anns), 2), np.nan, np.float64)
    parsed = [False] * len(anns)
    for number, ann in enumerate(anns):
        bbox = ann.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4:
            try:
                xywh[number] = [float(v) for v in bbox]
                parsed[number] = True
            except (TypeError, ValueError):  # not numbers
                pass
        entry = images.get(ann.get("image_id")) if isinstance(ann.get("image_id"), int) else None
        if entry is not None and entry["bad"] is None:
            size[number] = entry["hw"]
    yxyx = np.stack([xywh[:, 1], xywh[:, 0], xywh[:, 1] + xywh[:, 3], xywh[:, 0] + xywh[:, 2]], -1)
    clipped, verdicts = (np.asarray(v) for v in box_lib.check_boxes(yxyx.reshape(-1, 4), size[:, 0], size[:, 1]))
    seen_ids = set()
    for number, ann in enumerate(anns):
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
        verdict = int(verdicts[number]) if parsed[number] else box_lib.BAD
        if verdict in (box_lib.BAD, box_lib.EMPTY, box_lib.OUTSIDE):
            shown = f" in a {entry['hw'][1]}x{entry['hw'][0]} image" if verdict == box_lib.OUTSIDE else ""
            report.add(box_lib.VERDICT_KINDS[verdict], f"{where}: bbox {ann.get('bbox')}{shown}")
            continue
        x, y, w, h = xywh[number]
        if verdict == box_lib.CLIPPED:
            report.add("clipped_box", f"{where}: bbox {ann['bbox']} in a {entry['hw'][1]}x{entry['hw'][0]} image")
            y0, x0, y1, x1 = clipped[number]
            x, y, w, h = x0, y0, x1 - x0, y1 - y0
        seen_ids.add(ann.get("id"))  # only an accepted annotation claims its id
        if ann.get("iscrowd", 0):
            report.add("crowd", where)
        area = ann.get("area")
        area = float(area) if isinstance(area, (int, float)) and math.isfinite(area) else w * h
        entry["anns"].append({**ann, "bbox": [x, y, w, h], "area": area})
    if skip_bad_examples:  # decode each file once now, so even a truncated one is a counted skip
        unusable = image_lib.verify_images(sorted({e["file"] for e in images.values() if e["bad"] is None}))
        for entry in images.values():
            if entry["bad"] is None and entry["file"] in unusable:
                entry["bad"] = unusable[entry["file"]].kind
                report.add(entry["bad"], unusable[entry["file"]])
    report.raise_if_bad(skip_bad_examples)

    kept = []
    for entry in images.values():
        if entry["bad"] is not None:
            continue
        anns = entry["anns"]
        if not anns:
            report.add("negative_image", entry["file"])
        xywh = np.array([a["bbox"] for a in anns], np.float32).reshape(-1, 4)
        kept.append({
            "id": int(entry["id"]),
            "file": entry["file"],
            "orientation": entry["orientation"],
            "boxes": np.asarray(box_lib.xywh_to_yxyx(xywh), np.float32),
            "classes": np.array([class_of[a["category_id"]] for a in anns], np.int32),
            "is_crowd": np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
            "area": np.array([a["area"] for a in anns], np.float32),
        })
    if not kept:
        raise DataError(f"{annotations_path}: no usable images.\n{report.format(skip_bad_examples)}")
    return CocoJsonSource(annotations_path, label_map, kept, skip_bad_examples, report)


def _inside(folder, path):
    """Whether `path` names a file below `folder` (lexically: `..` and absolute names leave it)."""
    if "\0" in path:
        return False
    candidate = os.path.normpath(os.path.abspath(path))
    return candidate != folder and os.path.commonpath([folder, candidate]) == folder
