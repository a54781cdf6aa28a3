"""Box losses on decoded boxes (`modeling.box_losses`): exact on hand-built boxes, equal to torchvision.ops',
and used by RetinaNet when `box_loss_type` asks for them."""

import math
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_retina import ModelConfig, RetinaNet
from keras_retina.modeling import box_losses, losses

from conftest import TINY

# yxyx pairs (prediction, target)
SAME = ([0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0])
DISJOINT = ([0.0, 0.0, 10.0, 10.0], [0.0, 20.0, 10.0, 30.0])  # side by side, a gap of 10
NESTED = ([3.0, 3.0, 5.0, 5.0], [0.0, 0.0, 8.0, 8.0])  # inside, sharing the centre
WIDE = ([0.0, 0.0, 10.0, 40.0], [0.0, 0.0, 40.0, 10.0])  # same area, turned


def _loss(function, pair):
    box, target = (np.asarray(v, np.float32) for v in pair)
    return float(function(box, target))


def test_hand_computed_values():
    assert _loss(box_losses.giou_loss, SAME) == pytest.approx(0.0, abs=1e-6)
    assert _loss(box_losses.diou_loss, SAME) == pytest.approx(0.0, abs=1e-6)
    assert _loss(box_losses.ciou_loss, SAME) == pytest.approx(0.0, abs=1e-6)
    # disjoint: IoU 0; C = 10 x 30 = 300, union 200 -> GIoU = 0 - 100/300
    assert _loss(box_losses.giou_loss, DISJOINT) == pytest.approx(1 + 1 / 3, rel=1e-6)
    # DIoU: centres 20 apart, C's diagonal^2 = 10^2 + 30^2
    assert _loss(box_losses.diou_loss, DISJOINT) == pytest.approx(1 + 400 / 1000, rel=1e-6)
    # nested with one centre: IoU = 4/64, C is the target: GIoU = DIoU = 1 - 1/16; CIoU adds nothing (same aspect)
    for function in (box_losses.giou_loss, box_losses.diou_loss, box_losses.ciou_loss):
        assert _loss(function, NESTED) == pytest.approx(1 - 1 / 16, rel=1e-6)
    # turned: IoU = 100/700, C 40 x 40, centres (5, 20) and (20, 5)
    iou = 100 / 700
    diou = 1 - iou + (15**2 + 15**2) / (40**2 + 40**2)
    v = 4 / math.pi**2 * (math.atan(10 / 40) - math.atan(40 / 10)) ** 2
    assert _loss(box_losses.diou_loss, WIDE) == pytest.approx(diou, rel=1e-5)
    assert _loss(box_losses.ciou_loss, WIDE) == pytest.approx(diou + v / (1 - iou + v) * v, rel=1e-5)
    # a box of no height: finite (torchvision's CIoU is NaN there)
    flat = ([5.0, 0.0, 5.0, 10.0], [0.0, 0.0, 10.0, 10.0])
    for function in (box_losses.giou_loss, box_losses.diou_loss, box_losses.ciou_loss):
        assert np.isfinite(_loss(function, flat))


def test_equal_to_torchvisions_losses():
    sys.modules.setdefault("triton", None)  # as in test_convert: torch's GPU compiler must not load after TensorFlow
    torch = pytest.importorskip("torch")
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (500, 2, 2))
    sizes = rng.uniform(0.5, 60, (500, 2, 2))
    pairs = np.concatenate([corners, corners + sizes], axis=-1).astype(np.float32)  # [500, 2, 4] yxyx
    mine, theirs = pairs[:, 0], pairs[:, 1]
    xyxy = lambda b: torch.from_numpy(b[:, [1, 0, 3, 2]].copy())  # noqa: E731
    for name, reference in (("giou", ops.generalized_box_iou_loss), ("diou", ops.distance_box_iou_loss),
                            ("ciou", ops.complete_box_iou_loss)):
        expected = reference(xyxy(mine), xyxy(theirs), reduction="none").numpy()
        got = box_losses.BoxIoULoss(name, reduction="none")(theirs, mine).numpy()
        assert np.abs(got - expected).max() < 1e-5, name


def test_the_factory_and_the_config():
    assert losses.box_loss("l1").beta == 0.0 and losses.box_loss("smooth_l1").beta == losses.SMOOTH_L1_BETA
    assert losses.box_loss("ciou").kind == "ciou" and losses.box_loss("giou").reduction == "sum"
    with pytest.raises(ValueError, match="box_loss_type='iou'"):
        losses.box_loss("iou")
    with pytest.raises(ValueError, match="box_loss_type='iou'"):
        ModelConfig(num_classes=2, box_loss_type="iou")


def test_retinanet_trains_on_decoded_boxes_with_an_iou_loss():
    """giou: the box loss is GIoU between the decoded prediction and the decoded target of each
    foreground anchor, summed over the foreground count (computed here by hand from the anchors);
    finite gradients; the type travels in .keras configs."""
    from keras_retina.ops import box_coder

    model = RetinaNet(config=ModelConfig(**{**TINY, "num_classes": 2, "box_loss_type": "giou"}))
    assert isinstance(model.box_loss_fn, box_losses.BoxIoULoss)
    images = tf.random.uniform((2, 64, 64, 3), 0, 255)
    y = {"boxes": tf.constant([[[8.0, 8.0, 40.0, 40.0]], [[10.0, 20.0, 50.0, 60.0]]]),
         "classes": tf.constant([[0], [1]])}
    targets = model.encode_targets(y, (64, 64))
    deltas = targets["box_targets"] + tf.random.stateless_normal(targets["box_targets"].shape, (1, 2), stddev=0.3)
    outputs = {"classification": model(images)["classification"], "box": deltas}
    model.box_loss_tracker.reset_state()
    model.compute_loss(images, y, outputs)
    anchors = model.anchor_generator.anchors((64, 64))
    foreground = np.asarray(targets["cls_targets"]) >= 0
    weights = model.config.box_coder_weights
    expected = np.asarray(box_losses.giou_loss(box_coder.decode(deltas, anchors, weights),
                                               box_coder.decode(targets["box_targets"], anchors, weights)))
    expected = expected[foreground].sum() / foreground.sum()
    assert expected > 0.05 and float(model.box_loss_tracker.result()) == pytest.approx(expected, rel=1e-4)
    with tf.GradientTape() as tape:
        loss = model.compute_loss(images, y, model(images, training=True))
    gradients = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(float(loss)) and all(np.isfinite(g.numpy()).all() for g in gradients if g is not None)
    assert RetinaNet.from_config(model.get_config()).config.box_loss_type == "giou"
    # --box_loss_weight scales the box loss, in the total and in what the progress bar shows
    model.box_loss_tracker.reset_state()
    total = model.compute_loss(images, y, outputs)
    weighted = RetinaNet(config=ModelConfig(**{**TINY, "num_classes": 2, "box_loss_type": "giou",
                                               "box_loss_weight": 2.0}))
    weighted.set_weights(model.get_weights())
    weighted.box_loss_tracker.reset_state()
    assert float(weighted.compute_loss(images, y, outputs)) == pytest.approx(float(total) + expected, rel=1e-4)
    assert float(weighted.box_loss_tracker.result()) == pytest.approx(2 * expected, rel=1e-4)
