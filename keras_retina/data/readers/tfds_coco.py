"""TFDS detection datasets (`coco/2017` and any dataset with the same features) -> examples.

TFDS COCO features: `image` uint8, `image/id`, `objects/bbox` (normalised yxyx),
`objects/label` (contiguous 0..K-1), `objects/is_crowd`, `objects/area`.
`tfds_source(name, split, data_dir)` calls the real `tfds.load` (which
downloads and prepares COCO on first use when the machine allows it) and
returns the split as a `record_source.RecordSource`, in order with images left
encoded. For COCO, the label map carries the original COCO category ids, so
exported models and evaluation report the ids the rest of the COCO tooling
expects.
"""

import tensorflow as tf

from keras_retina.data.readers.record_source import RecordSource
from keras_retina.ops import boxes as box_lib
from keras_retina.ops.images import decode_image

# COCO 2017's 80 category ids, in the order of TFDS's contiguous labels.
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
    56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
    85, 86, 87, 88, 89, 90,
)


def _load(name, split, data_dir, download):
    """tfds.load with images left encoded -> (dataset, label map, whether records carry "image/id")."""
    import tensorflow_datasets as tfds

    dataset, info = tfds.load(name, split=split, data_dir=data_dir, with_info=True, download=download,
                              shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    names = info.features["objects"]["label"].names
    if name.startswith("coco") and len(names) == len(COCO_CATEGORY_IDS):
        ids = COCO_CATEGORY_IDS
    else:
        ids = range(1, len(names) + 1)
    label_map = [{"id": int(i), "name": n} for i, n in zip(ids, names)]
    return dataset, label_map, "image/id" in info.features


def _objects(example):
    objects = dict(example["objects"])
    # Real records have one entry per object in every field; cut to the shortest anyway so
    # a malformed record cannot misalign boxes and labels.
    count = tf.reduce_min([tf.shape(v)[0] for v in objects.values()])
    objects = {k: v[:count] for k, v in objects.items()}
    boxes = tf.reshape(tf.cast(objects["bbox"], tf.float32), [-1, 4])
    crowd = tf.cast(objects.get("is_crowd", tf.zeros_like(objects["label"], tf.bool)), tf.bool)
    return objects, boxes, tf.cast(objects["label"], tf.int32), crowd


def tfds_source(name, split, data_dir=None, download=True):
    """A split -> an unchecked `record_source.RecordSource`: records named "<name> <split> example
    <n> (image id <id>)", images decoded like every other reader's (`ops.images.decode_image`)."""
    dataset, label_map, has_id = _load(name, split, data_dir, download)

    def convert(raw):
        image_id, example = raw
        image = decode_image(example["image"])
        objects, boxes, classes, crowd = _objects(example)
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        boxes = box_lib.denormalise(boxes, size[0], size[1])
        return {
            "image_id": image_id,
            "image": image,
            "boxes": boxes,
            "classes": classes,
            "is_crowd": crowd,
            "area": tf.cast(objects.get("area", box_lib.area(boxes)), tf.float32),
        }

    def annotations(raw):
        image_id, example = raw
        _, boxes, classes, crowd = _objects(example)
        return {"image_id": image_id, "boxes": boxes, "classes": classes, "category_ids": classes,
                "is_crowd": crowd, "encoded": example["image"]}

    def named(index, example):
        image_id = tf.cast(example["image/id"], tf.int64) if has_id else index + 1
        where = tf.strings.join([f"{name} {split} example ", tf.strings.as_string(index),
                                 " (image id ", tf.strings.as_string(image_id), ")"])
        return where, (image_id, example)

    return RecordSource(f"{name} {split}", label_map, dataset.enumerate().map(named), convert, annotations)
