"""check-data's counts (`data.label_statistics`): worked by hand, the same from a picture source's
annotations and from examples read one by one."""

import numpy as np
import tensorflow as tf

from keras_retina.data.label_statistics import format_statistics, label_statistics
from keras_retina.data.source import DatasetSource

LABEL_MAP = [{"id": 1, "name": "tree"}, {"id": 2, "name": "shrub"}, {"id": 7, "name": "rock"}]
# per picture: (boxes yxyx, classes, is_crowd)
PICTURES = [
    ([[0, 0, 10, 10], [0, 0, 20, 5], [5, 5, 35, 35]], [0, 0, 1], [False, False, False]),  # sizes 10, 10, 30
    ([], [], []),  # no box
    ([[0, 0, 40, 40], [1, 1, 5, 9]], [0, 1], [True, False]),  # a crowd region, a shrub of size sqrt(32)
    ([[2, 2, 6, 6]], [-1], [False]),  # a class not in the label map
]
EXPECTED = {
    "pictures": 4, "pictures_without_boxes": 2, "boxes": 4, "crowd": 1, "unlisted": 1,
    "per_class": {"tree": {"boxes": 2, "pictures": 1}, "shrub": {"boxes": 2, "pictures": 2},
                  "rock": {"boxes": 0, "pictures": 0}},
    "boxes_per_picture": {"min": 0.0, "median": 0.5, "max": 3.0},
    "box_size": {"min": np.sqrt(32.0), "median": 10.0, "max": 30.0},
}


class _PictureSource:  # what a picture source (COCO JSON, VOC, YOLO, CSV) offers: annotations in memory
    label_map = LABEL_MAP
    images = [{"boxes": np.asarray(b, np.float32).reshape(-1, 4), "classes": np.asarray(c, np.int32),
               "is_crowd": np.asarray(k, bool)} for b, c, k in PICTURES]

    def examples(self):
        raise AssertionError("a picture source's counts decode no picture")


def _dataset_source():
    def examples():
        for boxes, classes, crowd in PICTURES:
            yield {"image": np.zeros((40, 40, 3), np.uint8), "boxes": np.asarray(boxes, np.float32).reshape(-1, 4),
                   "classes": np.asarray(classes, np.int32), "is_crowd": np.asarray(crowd, bool)}
    signature = {"image": tf.TensorSpec([None, None, 3], tf.uint8), "boxes": tf.TensorSpec([None, 4], tf.float32),
                 "classes": tf.TensorSpec([None], tf.int32), "is_crowd": tf.TensorSpec([None], tf.bool)}
    return DatasetSource(tf.data.Dataset.from_generator(examples, output_signature=signature), LABEL_MAP)


def _close(got, expected):
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, dict) and key == "box_size":
            assert all(np.isclose(got[key][k], v) for k, v in value.items()), (key, got[key])
        else:
            assert got[key] == value, (key, got[key])


def test_counts_by_hand_from_annotations_and_from_examples():
    _close(label_statistics(_PictureSource()), EXPECTED)
    _close(label_statistics(_dataset_source()), EXPECTED)


def test_printed_counts_and_the_warning_for_a_class_without_boxes():
    text = format_statistics("train", EXPECTED)
    assert text.splitlines()[0] == ("[train] 4 pictures (2 without boxes), 4 boxes, 1 crowd or difficult "
                                    "(evaluation only), 1 of classes not in the label map")
    assert "boxes per picture: min 0, median 0.5, max 3; box size" in text and "median 10, max 30" in text
    rows = [line.split() for line in text.splitlines()[3:6]]
    assert rows == [["tree", "2", "50%", "1"], ["shrub", "2", "50%", "2"], ["rock", "0", "0%", "0"]]
    assert text.splitlines()[-1] == "WARNING: [train] no box of rock: the model cannot learn it from this split."
    empty = label_statistics(type("Empty", (), {"label_map": LABEL_MAP[:1], "images": []})())
    assert empty["pictures"] == 0 and empty["boxes_per_picture"] is None and empty["box_size"] is None
    assert "this split cannot measure it" in format_statistics("val", empty)
