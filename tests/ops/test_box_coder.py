import math

import numpy as np
import pytest

from keras_retina.ops import box_coder

from conftest import assert_close


def test_hand_computed_encoding():
    anchor = np.array([[0.0, 0.0, 10.0, 20.0]], np.float32)  # centre (5, 10), h 10, w 20
    box = np.array([[2.0, 4.0, 22.0, 24.0]], np.float32)  # centre (12, 14), h 20, w 20
    expected = [[(12 - 5) / 10, (14 - 10) / 20, math.log(20 / 10), math.log(20 / 20)]]
    assert_close(box_coder.encode(box, anchor), expected)
    weighted = box_coder.encode(box, anchor, weights=(10.0, 10.0, 5.0, 5.0))
    assert_close(weighted, np.array(expected) * [10, 10, 5, 5])


def test_decode_inverts_encode():
    rng = np.random.default_rng(0)
    anchors = rng.uniform(0, 100, (50, 4)).astype(np.float32)
    anchors[:, 2:] = anchors[:, :2] + rng.uniform(8, 80, (50, 2))
    boxes = rng.uniform(0, 100, (50, 4)).astype(np.float32)
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(8, 80, (50, 2))
    for weights in (box_coder.DEFAULT_WEIGHTS, (10.0, 10.0, 5.0, 5.0)):
        decoded = box_coder.decode(box_coder.encode(boxes, anchors, weights), anchors, weights)
        assert_close(decoded, boxes, atol=1e-3)


def test_decode_clamps_huge_size_deltas():
    anchor = np.array([[0.0, 0.0, 16.0, 16.0]], np.float32)
    decoded = np.asarray(box_coder.decode(np.array([[0.0, 0.0, 1e4, 1e4]], np.float32), anchor))
    assert np.all(np.isfinite(decoded))
    assert decoded[0, 2] - decoded[0, 0] == pytest.approx(1000.0, rel=1e-4)  # exp(log(1000/16)) * 16


def test_degenerate_box_encodes_finite():
    anchor = np.array([[0.0, 0.0, 16.0, 16.0]], np.float32)
    assert np.all(np.isfinite(box_coder.encode(np.array([[5.0, 5.0, 5.0, 5.0]], np.float32), anchor)))


def test_equal_to_model_garden_box_ops():
    box_ops = pytest.importorskip("official.vision.ops.box_ops")
    rng = np.random.default_rng(1)
    anchors = rng.uniform(0, 500, (200, 4)).astype(np.float32)
    anchors[:, 2:] = anchors[:, :2] + rng.uniform(16, 300, (200, 2))
    boxes = rng.uniform(0, 500, (200, 4)).astype(np.float32)
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(4, 300, (200, 2))
    for weights in (None, [10.0, 10.0, 5.0, 5.0]):
        ours_w = weights or box_coder.DEFAULT_WEIGHTS
        # Model Garden adds EPSILON=1e-8 to sides before dividing: far below float32 noise here.
        assert_close(box_coder.encode(boxes, anchors, ours_w),
                     box_ops.encode_boxes(boxes, anchors, weights), atol=1e-5, rtol=1e-5)
        deltas = rng.normal(0, 1, (200, 4)).astype(np.float32)
        assert_close(box_coder.decode(deltas, anchors, ours_w),
                     box_ops.decode_boxes(deltas, anchors, weights), atol=1e-3, rtol=1e-5)
