"""Dirty data on disk for the tests: a COCO JSON corpus with every case of `cleaning.KINDS`,
and TFRecords with bad boxes, an undecodable image and a shared image id."""

import io
import json
import math
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from conftest import tf_feature


def jpeg(array, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def scene(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


def write_corpus(root):
    """Every case of cleaning.KINDS on disk; returns (annotations path, images dir)."""
    images_dir = os.path.join(root, "images")
    os.makedirs(images_dir)

    def path(name):
        return os.path.join(images_dir, name)

    Image.fromarray(scene(48, 64)).save(path("good.jpg"))
    Image.fromarray(np.full((40, 60), 90, np.uint8)).save(path("gray.png"))
    Image.fromarray(np.zeros((30, 20, 4), np.uint8)).save(path("rgba.png"))
    Image.new("RGB", (32, 32), (200, 40, 90)).convert("CMYK").save(path("cmyk.jpg"), quality=95)
    Image.fromarray(np.array([[0, 32768], [65535, 65535]], np.uint16).repeat(8, 0).repeat(8, 1)).save(
        path("deep.png"))  # 16-bit grayscale
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 high x 60 wide; shown rotated 90 degrees: 60 high x 40 wide
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :10] = 255  # a white band on the stored left edge -> the top after rotation
    Image.fromarray(stored).save(path("exif.jpg"), exif=exif)
    Image.fromarray(stored).save(path("exif_stored.jpg"), exif=exif)  # annotated on the stored pixels
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(path("dot.png"))
    Image.new("RGB", (4000, 3000), (30, 60, 90)).save(path("large.jpg"), quality=50)  # cheap to encode
    Image.fromarray(scene(20, 20)).save(path("negative.jpg"))
    with open(path("corrupt.jpg"), "wb") as f:
        f.write(np.random.default_rng(1).integers(0, 255, 2000, dtype=np.uint8).tobytes())
    open(path("empty.jpg"), "wb").close()
    png = io.BytesIO()
    Image.fromarray(scene(64, 64)).save(png, "PNG")
    with open(path("truncated.png"), "wb") as f:
        f.write(png.getvalue()[: len(png.getvalue()) // 2])
    with open(path("truncated.jpg"), "wb") as f:
        whole = jpeg(scene(64, 64))
        f.write(whole[: len(whole) // 2])
    Image.fromarray(scene(50, 50)).save(path("resized.jpg"))  # the JSON claims another size
    Image.fromarray(scene(16, 16)).convert("P").save(path("palette.png"))
    Image.fromarray(scene(16, 16)).save(path("photo.tiff"))  # PIL reads it, TensorFlow does not
    Image.fromarray(scene(16, 16)).save(path("dup_a.jpg"))
    Image.fromarray(scene(16, 16)).save(path("dup_b.jpg"))

    names = ["good.jpg", "gray.png", "rgba.png", "cmyk.jpg", "deep.png", "exif.jpg", "dot.png", "large.jpg",
             "negative.jpg", "corrupt.jpg", "empty.jpg", "truncated.png", "truncated.jpg", "missing.jpg",
             "resized.jpg", "palette.png", "photo.tiff", "exif_stored.jpg"]
    sizes = {"good.jpg": (48, 64), "gray.png": (40, 60), "rgba.png": (30, 20), "cmyk.jpg": (32, 32),
             "deep.png": (16, 16), "exif.jpg": (60, 40), "dot.png": (1, 1), "large.jpg": (3000, 4000),
             "negative.jpg": (20, 20), "truncated.png": (64, 64), "truncated.jpg": (64, 64),
             "missing.jpg": (10, 10), "resized.jpg": (99, 99), "corrupt.jpg": (10, 10), "empty.jpg": (10, 10),
             "palette.png": (16, 16), "photo.tiff": (16, 16), "exif_stored.jpg": (40, 60)}
    images = [{"id": i + 1, "file_name": n, "height": sizes[n][0], "width": sizes[n][1]}
              for i, n in enumerate(names)]
    # Two pictures under one image id: whose are its boxes? Both are out.
    images += [{"id": 100, "file_name": n, "height": 16, "width": 16} for n in ("dup_a.jpg", "dup_b.jpg")]
    ids = {n: i + 1 for i, n in enumerate(names)}
    box = [4, 4, 10, 10]
    annotations = [
        {"id": 1, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [10, 5, 20, 30]},
        {"id": 2, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [50, 40, 30, 30]},  # clipped
        {"id": 3, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [5, 5, 0, 10]},  # zero width
        {"id": 4, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [5, 5, 10, -3]},  # negative
        {"id": 5, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [float("nan"), 5, 10, 10]},
        {"id": 6, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [100, 100, 10, 10]},  # outside
        {"id": 7, "image_id": ids["good.jpg"], "category_id": 42, "bbox": box},  # unknown category
        {"id": 8, "image_id": 999, "category_id": 3, "bbox": box},  # unknown image (does not claim id 8)
        {"id": 1, "image_id": ids["good.jpg"], "category_id": 3, "bbox": box},  # duplicate of id 1
        {"id": 19, "image_id": 100, "category_id": 3, "bbox": box},
        {"id": 20, "image_id": ids["palette.png"], "category_id": 3, "bbox": box},
        {"id": 9, "image_id": ids["good.jpg"], "category_id": 5, "bbox": [0, 0, 64, 48], "iscrowd": 1},
        {"id": 10, "image_id": ids["gray.png"], "category_id": 5, "bbox": [10, 10, 20, 20]},
        {"id": 11, "image_id": ids["rgba.png"], "category_id": 3, "bbox": [2, 2, 10, 10]},
        {"id": 12, "image_id": ids["cmyk.jpg"], "category_id": 3, "bbox": box},
        {"id": 13, "image_id": ids["deep.png"], "category_id": 3, "bbox": box},
        {"id": 14, "image_id": ids["exif.jpg"], "category_id": 5, "bbox": [5, 0, 30, 10]},  # the band
        {"id": 15, "image_id": ids["dot.png"], "category_id": 3, "bbox": [0, 0, 1, 1]},
        {"id": 16, "image_id": ids["large.jpg"], "category_id": 5, "bbox": [100, 200, 2000, 1500]},
        {"id": 17, "image_id": ids["truncated.png"], "category_id": 3, "bbox": box},
        {"id": 18, "image_id": ids["truncated.jpg"], "category_id": 3, "bbox": box},
    ]
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}]}
    ann_path = os.path.join(root, "dirty.json")
    with open(ann_path, "w") as f:
        json.dump(coco, f)  # NaN is written as NaN, as Python tools do
    return ann_path, images_dir, ids


# Found while reading with --skip_bad_examples: header problems, annotations, and (full decode)
# the truncated files.
EXPECTED_AT_READ = {
    "missing_file": 1, "unreadable_image": 4, "size_mismatch": 1, "duplicate_image_id": 2,
    "unsupported_format": 1,
    "bad_box": 2, "empty_box": 1, "outside_box": 1, "unknown_category": 1, "unknown_image": 1,
    "duplicate_annotation_id": 1,
    "clipped_box": 1, "crowd": 1, "converted_mode": 5, "exif_rotated": 1, "tiny_image": 1,
    "negative_image": 2,
}


def write_tfrecord(path, examples):
    feature = tf_feature
    with tf.io.TFRecordWriter(path) as writer:
        for source_id, encoded, boxes, classes in examples:
            ymin, xmin, ymax, xmax = (list(v) for v in zip(*boxes)) if boxes else ([], [], [], [])
            features = {
                "image/encoded": feature([encoded], "bytes"), "image/format": feature([b"jpeg"], "bytes"),
                "image/source_id": feature([str(source_id).encode()], "bytes"),
                "image/height": feature([32], "int"), "image/width": feature([32], "int"),
                "image/object/bbox/ymin": feature(ymin, "float"), "image/object/bbox/xmin": feature(xmin, "float"),
                "image/object/bbox/ymax": feature(ymax, "float"), "image/object/bbox/xmax": feature(xmax, "float"),
                "image/object/class/label": feature(classes, "int"),
                "image/object/is_crowd": feature([0] * len(classes), "int"),
                "image/object/area": feature([1.0] * len(classes), "float"),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())


DIRTY_RECORDS_COUNTS = {"bad_box": 1, "empty_box": 1, "outside_box": 1, "clipped_box": 1,
                        "unknown_category": 1, "negative_image": 1, "unreadable_image": 1,
                        "duplicate_image_id": 2}


def dirty_records():
    """(source id, encoded image, normalised yxyx boxes, category ids) with DIRTY_RECORDS_COUNTS.
    Every picture is a different uniform grey, so its mean pixel tells which one it is."""

    def good(n):
        return jpeg(np.full((32, 32, 3), 30 * n, np.uint8))

    return [
        (1, good(1), [(0.1, 0.1, 0.5, 0.5), (math.nan, 0.1, 0.5, 0.5), (0.5, 0.5, 0.5, 0.9)], [1, 1, 1]),
        (2, b"not an image", [(0.1, 0.1, 0.5, 0.5)], [1]),
        (3, good(3), [(0.1, 0.1, 0.5, 0.5)], [7]),  # category not in the label map
        (4, good(4), [], []),
        (5, good(5), [(1.2, 0.1, 1.5, 0.5), (-0.1, 0.2, 0.6, 0.7)], [1, 1]),  # fully / partly outside
        (6, good(6), [(0.2, 0.2, 0.4, 0.4)], [1]),
        (6, good(7), [(0.6, 0.6, 0.8, 0.8)], [1]),  # the same image id: whose boxes? both left out
    ]


