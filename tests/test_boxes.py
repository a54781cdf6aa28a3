import numpy as np

from conftest import assert_close
from keras_retina import boxes


def test_coco_xywh_round_trip():
    xywh = np.array([[10.0, 20.0, 30.0, 40.0]], np.float32)
    yxyx = boxes.xywh_to_yxyx(xywh)
    assert_close(yxyx, [[20.0, 10.0, 60.0, 40.0]])
    assert_close(boxes.yxyx_to_xywh(yxyx), xywh)


def test_centers_round_trip():
    yxyx = np.array([[0.0, 10.0, 20.0, 50.0]], np.float32)
    centers = boxes.yxyx_to_centers(yxyx)
    assert_close(centers, [[10.0, 30.0, 20.0, 40.0]])
    assert_close(boxes.centers_to_yxyx(centers), yxyx)


def test_pairwise_iou_hand_computed():
    a = np.array([[0, 0, 10, 10], [0, 0, 20, 20]], np.float32)
    b = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [30, 30, 40, 40]], np.float32)
    # [0,0,10,10] vs [5,5,15,15]: inter 25, union 175.
    expected = [[25 / 175, 1.0, 0.0], [100 / 400, 100 / 400, 0.0]]
    assert_close(boxes.pairwise_iou(a, b), expected)


def test_pairwise_iou_degenerate_boxes_are_zero_not_nan():
    a = np.array([[5, 5, 5, 5], [0, 0, 0, 10]], np.float32)
    iou = np.asarray(boxes.pairwise_iou(a, a))
    assert np.all(np.isfinite(iou)) and np.all(iou == 0.0)


def test_pairwise_iou_batched():
    a = np.random.default_rng(0).uniform(0, 50, (2, 5, 4)).astype(np.float32)
    a[..., 2:] += a[..., :2]
    iou = np.asarray(boxes.pairwise_iou(a, a))
    assert iou.shape == (2, 5, 5)
    assert_close(np.diagonal(iou, axis1=1, axis2=2), np.ones((2, 5)))


def test_clip_to_image():
    clipped = boxes.clip_to_image(np.array([[-5.0, 3.0, 70.0, 200.0]], np.float32), 64, 128)
    assert_close(clipped, [[0.0, 3.0, 64.0, 128.0]])


def test_pairwise_iou_accepts_float64():
    """numpy 2 promotes int / float32 to float64; IoU must not care."""
    a = np.array([[0.0, 0.0, 10.0, 10.0]], np.float64)
    b = np.array([[5.0, 5.0, 15.0, 15.0]], np.float32)
    assert_close(boxes.pairwise_iou(a, b), [[25 / 175]])
