"""Quality-aware classification losses (`modeling.quality_losses`): the formulas of GFL's QFL and
VarifocalNet's VFL, by hand and on random inputs, and RetinaNet giving them the IoU of each
foreground anchor's predicted box as its class's target."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_retina import ModelConfig, RetinaNet
from keras_retina.modeling import box_losses, losses
from keras_retina.modeling.label_encoder import IGNORE
from keras_retina.modeling.quality_losses import QualityFocalLoss, VarifocalLoss
from keras_retina.ops import box_coder

from conftest import TINY


def _value(loss, target, logit):
    return float(loss(np.float32([[target]]), np.float32([[logit]])))


def test_hand_computed_values():
    qfl, vfl = QualityFocalLoss(), VarifocalLoss()
    # logit 0: p = 1/2, and the cross entropy against any target is log 2
    assert _value(qfl, 0.6, 0.0) == pytest.approx(0.1**2 * math.log(2), rel=1e-6)  # |q - p|^2 = 0.01
    assert _value(vfl, 0.6, 0.0) == pytest.approx(0.6 * math.log(2), rel=1e-6)  # weighted by q itself
    assert _value(vfl, 0.0, 0.0) == pytest.approx(0.75 * 0.5**2 * math.log(2), rel=1e-6)  # alpha p^gamma
    assert _value(qfl, 0.0, 0.0) == pytest.approx(0.25 * math.log(2), rel=1e-6)
    # a score equal to its target costs QFL nothing, whatever the target
    assert _value(qfl, 0.7, math.log(0.7 / 0.3)) == pytest.approx(0.0, abs=1e-7)


def _reference(kind, q, x):
    """The papers' formulas in float64 numpy (QFL: GFL eq. 5, beta 2; VFL: VarifocalNet eq. 2)."""
    p = 1.0 / (1.0 + np.exp(-x))
    if kind == "qfl":
        return (-np.abs(q - p) ** 2 * ((1 - q) * np.log(1 - p) + q * np.log(p))).sum(-1)
    positive = -q * (q * np.log(p) + (1 - q) * np.log(1 - p))
    negative = -0.75 * p**2 * np.log(1 - p)
    return np.where(q > 0, positive, negative).sum(-1)


@pytest.mark.parametrize("kind,loss", [("qfl", QualityFocalLoss(reduction="none")),
                                       ("vfl", VarifocalLoss(reduction="none"))])
def test_equal_to_the_papers_formulas_with_finite_gradients(kind, loss):
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (64, 5))
    targets = np.where(rng.uniform(size=(64, 5)) < 0.3, rng.uniform(0.05, 1.0, (64, 5)), 0.0)
    got = loss(targets.astype(np.float32), logits.astype(np.float32)).numpy()
    np.testing.assert_allclose(got, _reference(kind, targets, logits), rtol=2e-5, atol=1e-6)
    # the gradient is the formula's (through the weight too): central differences in float64
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(loss(tf.constant(targets), tf.cast(x, tf.float32)))
    gradient = tape.gradient(value, x).numpy()
    step = 1e-4  # each element's loss depends on its own logit only: one column at a time
    per_element = np.stack([(_reference(kind, targets[:, k:k + 1], logits[:, k:k + 1] + step)
                             - _reference(kind, targets[:, k:k + 1], logits[:, k:k + 1] - step)) / (2 * step)
                            for k in range(5)], -1)
    np.testing.assert_allclose(gradient, per_element, rtol=1e-3, atol=1e-5)
    # huge logits: finite loss and gradient
    huge = tf.Variable(np.float32([[-500.0, 500.0, 80.0]]))
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(loss(tf.constant([[0.9, 0.0, 0.4]]), huge))
    assert np.isfinite(float(value)) and np.isfinite(tape.gradient(value, huge).numpy()).all()


def test_qfl_on_hard_labels_is_the_focal_loss_without_alpha():
    """q in {0, 1}: |q - p|^2 is (1 - p_t)^2, so QFL = 2 x FL(alpha = 1/2, gamma = 2), value and gradient."""
    rng = np.random.default_rng(5)
    labels = tf.constant((rng.uniform(size=(32, 4)) < 0.3).astype(np.float32))
    logits = tf.Variable(rng.normal(0, 2, (32, 4)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        qfl = QualityFocalLoss(reduction="sum")(labels, logits)
        focal = 2.0 * losses.FocalLoss(alpha=0.5, gamma=2.0, reduction="sum")(labels, logits)
    assert float(qfl) == pytest.approx(float(focal), rel=1e-5)
    np.testing.assert_allclose(tape.gradient(qfl, logits), tape.gradient(focal, logits), rtol=1e-4, atol=1e-7)


def test_the_factory_the_config_and_bad_settings():
    assert isinstance(losses.classification_loss("quality_focal"), QualityFocalLoss)
    vfl = losses.classification_loss("varifocal")
    assert (vfl.alpha, vfl.gamma, vfl.reduction) == (0.75, 2.0, "sum")
    config = ModelConfig(num_classes=2, classification_loss="varifocal")
    assert (config.focal_alpha, config.focal_gamma) == (0.75, 2.0)
    assert ModelConfig(num_classes=2).focal_alpha == 0.25  # the paper's, unchanged
    assert QualityFocalLoss.from_config(QualityFocalLoss(beta=1.5).get_config()).beta == 1.5
    assert VarifocalLoss.from_config(VarifocalLoss(alpha=0.5).get_config()).alpha == 0.5
    with pytest.raises(ValueError, match="beta >= 0"):
        QualityFocalLoss(beta=-1.0)
    with pytest.raises(ValueError, match="alpha >= 0"):
        VarifocalLoss(alpha=-0.1)


@pytest.mark.parametrize("name", ["quality_focal", "varifocal"])
def test_retinanet_gives_each_foreground_anchor_its_boxs_iou(name):
    """The classification loss RetinaNet tracks equals the loss of targets built here by hand: the IoU of
    each foreground anchor's decoded prediction with its decoded target on its class, 0 elsewhere,
    ignored anchors left out; no gradient reaches the box outputs through the targets, finite gradients
    reach the weights; the loss travels in the model's config."""
    model = RetinaNet(config=ModelConfig(**{**TINY, "num_classes": 2, "classification_loss": name,
                                            "box_loss_weight": 0.0}))
    images = tf.random.uniform((2, 64, 64, 3), 0, 255, seed=1)
    y = {"boxes": tf.constant([[[8.0, 8.0, 40.0, 40.0]], [[10.0, 20.0, 50.0, 60.0]]]),
         "classes": tf.constant([[0], [1]])}
    targets = model.encode_targets(y, (64, 64))
    deltas = targets["box_targets"] + tf.random.stateless_normal(targets["box_targets"].shape, (1, 2), stddev=0.3)
    logits = model(images)["classification"]
    model.cls_loss_tracker.reset_state()
    model.compute_loss(images, y, {"classification": logits, "box": deltas})

    anchors = model.anchor_generator.anchors((64, 64))
    weights = model.config.box_coder_weights
    iou = box_losses.aligned_iou(box_coder.decode(deltas, anchors, weights),
                                 box_coder.decode(targets["box_targets"], anchors, weights)).numpy()
    classes = targets["cls_targets"].numpy()
    foreground = classes >= 0
    hand = np.zeros(logits.shape, np.float32)
    hand[foreground, classes[foreground]] = iou[foreground]
    soft = hand[foreground, classes[foreground]]
    assert 0.05 < soft.min() and soft.max() < 0.999  # soft targets, not labels
    kept = classes != IGNORE
    reference = losses.classification_loss(name)
    expected = float(reference(hand[kept], np.asarray(logits)[kept])) / foreground.sum()
    assert float(model.cls_loss_tracker.result()) == pytest.approx(expected, rel=1e-4)

    with tf.GradientTape() as tape:
        box_outputs = tf.identity(deltas)
        tape.watch(box_outputs)
        loss = model.compute_loss(images, y, {"classification": logits, "box": box_outputs})
    gradient = tape.gradient(loss, box_outputs)  # box loss weight 0: only the targets could carry one
    assert gradient is None or not np.asarray(gradient).any()
    with tf.GradientTape() as tape:
        loss = model.compute_loss(images, y, model(images, training=True))
    gradients = [g for g in tape.gradient(loss, model.trainable_variables) if g is not None]
    assert np.isfinite(float(loss)) and gradients and all(np.isfinite(g.numpy()).all() for g in gradients)
    assert RetinaNet.from_config(model.get_config()).cls_loss_fn.__class__ is type(model.cls_loss_fn)

