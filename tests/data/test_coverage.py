import pytest
import tensorflow as tf

from keras_retina.data import coverage
from keras_retina.modeling.transform import ResizePolicy


def _examples(boxes):
    return tf.data.Dataset.from_tensors({
        "image": tf.zeros((256, 256, 3), tf.uint8), "boxes": tf.constant(boxes, tf.float32),
        "classes": tf.zeros((len(boxes),), tf.int32), "is_crowd": tf.zeros((len(boxes),), tf.bool)})


def test_small_objects_uncovered_get_a_suggestion():
    # 256 px images at image_size 128: 12 px boxes become 6 px, far below the 32 px anchors.
    report = coverage.anchor_coverage(_examples([[10, 10, 22, 22], [100, 100, 112, 112],
                                                 [0, 0, 200, 200]]), ResizePolicy(128, policy="square"))
    # Each 6x6 box lies inside a 32x32 P3 anchor (or a 2:1 one of the same area): IoU 36 / 1024.
    assert report["small"]["boxes"] == 2 and report["small"]["covered"] == 0
    assert report["small"]["mean_best_iou"] == pytest.approx(36 / 1024, rel=1e-3)
    assert report["large"]["covered"] == 1
    text = coverage.format_coverage(report)
    assert "WARNING: only 0% of small boxes are covered" in text and "--image_size" in text
    assert "--anchor_size=3" in text


def test_well_covered_data_has_no_warning():
    report = coverage.anchor_coverage(_examples([[0, 0, 128, 128], [64, 64, 192, 192]]), ResizePolicy(256))
    assert report["large"]["covered"] == 2
    assert "WARNING" not in coverage.format_coverage(report)
