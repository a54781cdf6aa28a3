"""Any source of annotation files written as COCO JSON, for pycocotools, FiftyOne, TIDE and the like.

`write_coco_json(source, path)` writes a `readers.picture_source.PictureSource` (read from COCO JSON,
Pascal VOC, YOLO or CSV) as one COCO detection file: its label map as `categories` (ids kept),
each picture with its id, `file_name` relative to the folder all pictures share (returned: give it
as --train_images) and the size its boxes are in, each box as `[x, y, width, height]` pixels with
its area, crowd boxes (VOC's difficult objects) as `iscrowd: 1`. The file is written atomically.
Returns the pictures' common folder.
"""

import os

from keras_retina.errors import UsageError
from keras_retina.files import write_json
from keras_retina.ops import boxes as box_lib


def write_coco_json(source, path):
    if not hasattr(source, "images"):
        raise UsageError(f"{source.name}: --write_coco writes annotation files (COCO JSON, Pascal VOC, YOLO, CSV); "
                         f"a TFRecord / TFDS source is written by its own tools.")
    folder = os.path.commonpath([os.path.dirname(os.path.abspath(image["file"])) for image in source.images])
    images, annotations = [], []
    for image in source.images:
        height, width = image["hw"]
        images.append({"id": int(image["id"]), "file_name": os.path.relpath(os.path.abspath(image["file"]), folder),
                       "height": int(height), "width": int(width)})
        for bbox, cls, crowd, area in zip(box_lib.coco_bboxes(image["boxes"]), image["classes"], image["is_crowd"],
                                          image["area"]):
            annotations.append({"id": len(annotations) + 1, "image_id": int(image["id"]),
                                "category_id": int(source.label_map[cls]["id"]),
                                "bbox": [round(v, 4) for v in bbox], "area": round(float(area), 4),
                                "iscrowd": int(crowd)})
    categories = [{"id": int(e["id"]), "name": str(e["name"])} for e in source.label_map]
    write_json({"images": images, "annotations": annotations, "categories": categories}, path, indent=None)
    return folder
