"""COCO-format JSON + image folder (what most labelling tools export) -> a data source.

`read_coco_json(annotations, images_dir, skip_bad_examples=False)` parses the file once and
returns a `picture_source.PictureSource` (`data.source`): the label map and one record per image.
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

from keras_retina.data import cleaning
from keras_retina.data.label_map import check_label_map
from keras_retina.data.readers import picture_source
from keras_retina.errors import DataError
from keras_retina.ops import boxes as box_lib


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
    for image in coco["images"]:
        image_id = image["id"]
        path = os.path.join(images_dir, str(image["file_name"]))
        if not picture_source.inside(images_dir, path):  # ../x.jpg, /etc/x.jpg (links inside are the user's)
            images[image_id] = {"id": image_id, "file": path, "bad": "outside_folder", "anns": []}
            report.add("outside_folder", f"image id {image_id}: file_name {str(image['file_name'])[:200]!r}")
            continue
        if id_count[image_id] > 1:
            report.add("duplicate_image_id", f"image id {image_id} ({path})")
            images.setdefault(image_id, {"id": image_id, "file": path, "bad": "duplicate_image_id", "anns": []})
            continue
        images[image_id] = entry = {"id": image_id, "file": path, "bad": None, "anns": []}
        picture_source.check_picture(entry, (image.get("height"), image.get("width")), report)

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
    clipped, verdicts = picture_source.box_verdicts(yxyx, size)
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
        verdict = verdicts[number] if parsed[number] else box_lib.BAD
        if not picture_source.report_box(report, verdict, f"{where}: bbox {ann.get('bbox')}", entry.get("hw")):
            continue
        seen_ids.add(ann.get("id"))  # only an accepted annotation claims its id
        crowd = bool(ann.get("iscrowd", 0))
        if crowd:
            report.add("crowd", where)
        box = clipped[number]
        area = ann.get("area")
        area = float(area) if isinstance(area, (int, float)) and math.isfinite(area) else float(
            (box[2] - box[0]) * (box[3] - box[1]))
        entry["anns"].append((box, class_of[ann["category_id"]], crowd, area))
    return picture_source.finish(annotations_path, label_map, list(images.values()), report, skip_bad_examples)
