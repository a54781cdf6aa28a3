import numpy as np

from keras_retina.ops import boxes

from conftest import assert_close


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


def test_check_boxes_is_the_one_rule_with_hand_computed_verdicts():
    given = np.array([[10, 10, 50, 50],      # inside
                      [-5, 10, 50, 80],      # partly outside: clipped
                      [10, 10, 10, 50],      # zero height
                      [10, 10, 5, 50],       # negative height
                      [np.nan, 0, 5, 5],     # NaN
                      [0, np.inf, 5, 5],     # inf
                      [70, 10, 90, 50],      # below the image
                      [-20, -20, 0, 30]],    # touches the top edge from outside: no area inside
                     np.float32)
    clipped, verdict = boxes.check_boxes(given, 64, 72)
    assert verdict.numpy().tolist() == [boxes.VALID, boxes.CLIPPED, boxes.EMPTY, boxes.BAD, boxes.BAD, boxes.BAD,
                                        boxes.OUTSIDE, boxes.OUTSIDE]
    np.testing.assert_allclose(clipped.numpy()[:2], [[10, 10, 50, 50], [0, 10, 50, 72]])
    assert np.all(np.isfinite(clipped.numpy())) and clipped.numpy()[4].tolist() == [0, 0, 0, 0]
    assert boxes.trainable(verdict).numpy().tolist() == [True, True] + [False] * 6
    # Unknown image size (NaN): nothing is outside or clipped, bad and empty boxes still are.
    _, unknown = boxes.check_boxes(given, np.nan, np.nan)
    assert unknown.numpy().tolist() == [0, 0, 2, 4, 4, 4, 0, 0]
    # One size per box: the same box is clipped in a 40 px tall image, inside a 100 px one.
    same = np.array([[10, 10, 50, 50], [10, 10, 50, 50]], np.float32)
    _, per_box = boxes.check_boxes(same, np.array([40.0, 100.0]), np.array([72.0, 100.0]))
    assert per_box.numpy().tolist() == [boxes.CLIPPED, boxes.VALID]
