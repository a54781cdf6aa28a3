import numpy as np
import pytest
import tensorflow as tf

from keras_retina.modeling import losses
from keras_retina.modeling.label_encoder import BACKGROUND, IGNORE

from conftest import assert_close


def _paper_focal(labels, logits, alpha, gamma):
    """Paper eq. 5 in float64: -alpha_t (1 - p_t)^gamma log(p_t)."""
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    p_t = np.where(labels == 1, p, 1 - p)
    alpha_t = np.where(labels == 1, alpha, 1 - alpha)
    return (-alpha_t * (1 - p_t) ** gamma * np.log(p_t)).sum(-1)


def _labels_logits(seed=0, shape=(2, 50, 6)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, shape).astype(np.float32)
    labels = (rng.uniform(size=shape) < 0.2).astype(np.float32)
    return labels, logits


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 1.0), (0.75, 0.0), (0.25, 0.5)])
def test_focal_loss_equals_paper_formula(alpha, gamma):
    labels, logits = _labels_logits()
    ours = losses.FocalLoss(alpha, gamma, reduction=None)(labels, logits)
    assert_close(ours, _paper_focal(labels, logits, alpha, gamma), rtol=1e-5, atol=1e-6)


def test_focal_loss_equals_model_garden():
    mg_focal = pytest.importorskip("official.vision.losses.focal_loss")
    import tf_keras

    labels, logits = _labels_logits(1)
    theirs = mg_focal.FocalLoss(0.25, 2.0, reduction=tf_keras.losses.Reduction.NONE)(labels, logits)
    # Convention map: theirs is per element [B, A, K]; ours is per anchor [B, A], summed over K.
    assert np.shape(theirs) == labels.shape
    assert_close(losses.FocalLoss(0.25, 2.0, reduction=None)(labels, logits),
                 np.asarray(theirs).sum(-1), rtol=1e-5)


def test_balanced_ce_and_focal_star():
    labels, logits = _labels_logits(2)
    ce = losses.classification_loss("balanced_ce", alpha=0.25).call(labels, logits)
    assert_close(ce, _paper_focal(labels, logits, 0.25, 0.0), rtol=1e-5)
    gamma, beta = 2.0, 1.0
    fl_star = losses.classification_loss("focal_star", 0.25, gamma, beta).call(labels, logits)
    x_t = np.where(labels == 1, logits, -logits).astype(np.float64)
    p_star = 1 / (1 + np.exp(-(gamma * x_t + beta)))
    alpha_t = np.where(labels == 1, 0.25, 0.75)
    assert_close(fl_star, (-alpha_t * np.log(p_star) / gamma).sum(-1), rtol=1e-5)
    with pytest.raises(ValueError, match="classification_loss"):
        losses.classification_loss("hinge")


def test_smooth_l1_hand_computed():
    beta = 0.5
    targets = np.zeros((1, 4), np.float32)
    preds = np.array([[0.2, -0.4, 1.0, -3.0]], np.float32)
    expected = 0.5 * 0.2**2 / beta + 0.5 * 0.4**2 / beta + (1.0 - 0.25) + (3.0 - 0.25)
    assert_close(losses.SmoothL1Loss(beta, reduction=None)(targets, preds), [expected])
    assert_close(losses.SmoothL1Loss(0.0, reduction=None)(targets, preds), [4.6])


@pytest.mark.parametrize("gamma", [2.0, 0.5, 0.0])
def test_huge_logits_give_finite_loss_and_gradients(gamma):
    logits = tf.constant([[1e4, -1e4, 88.0, -88.0, 0.0]], tf.float32)
    labels = tf.constant([[0.0, 1.0, 1.0, 0.0, 1.0]])
    for loss_fn in (losses.FocalLoss(0.25, gamma, reduction=None),
                    losses.FocalStarLoss(0.25, 4.0, 0.0, reduction=None)):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = loss_fn(labels, logits)
        grad = tape.gradient(value, logits)
        assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)), loss_fn.name
        assert np.asarray(value)[0] > 1e3  # confidently wrong costs a lot, but finitely


def _paper_focal_gradient(labels, logits, alpha, gamma):
    """d FL / d logit in float64, differentiated by hand from eq. 5 (chain rule through p)."""
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    dp = p * (1 - p)  # d p / d x
    pos = -alpha * (-gamma * (1 - p) ** (gamma - 1) * np.log(p) + (1 - p) ** gamma / p) * dp
    neg = -(1 - alpha) * (gamma * p ** (gamma - 1) * np.log(1 - p) - p**gamma / (1 - p)) * dp
    return np.where(labels == 1, pos, neg)


def _autodiff_focal(labels, logits, alpha, gamma):
    """FL summed over K from plain TensorFlow ops (eq. 5 with the sigmoid fused), for autodiff."""
    x_t = (2.0 * labels - 1.0) * logits
    alpha_t = labels * alpha + (1.0 - labels) * (1.0 - alpha)
    return tf.reduce_sum(alpha_t * tf.nn.softplus(-x_t) * tf.exp(-gamma * tf.nn.softplus(x_t)), axis=-1)


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 1.0), (0.75, 0.0), (0.25, 1.5), (0.25, 4.0)])
def test_focal_loss_and_its_gradient_equal_autodiff_and_hand_computed(alpha, gamma):
    labels, logits = _labels_logits(3, (2, 40, 5))
    weights = np.random.default_rng(4).choice([0.0, 1.0], (2, 40), p=[0.2, 0.8]).astype(np.float32)
    logits_t = tf.constant(logits)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits_t)
        fused = losses.FocalLoss(alpha, gamma, reduction="sum")(labels, logits_t, sample_weight=weights)
        autodiff = tf.reduce_sum(_autodiff_focal(tf.constant(labels), logits_t, alpha, gamma) * weights)
    expected = (_paper_focal(labels, logits, alpha, gamma) * weights).sum()
    assert_close(fused, expected, rtol=1e-5)
    assert_close(fused, autodiff, rtol=1e-6)
    grad = tape.gradient(fused, logits_t)
    assert_close(grad, tape.gradient(autodiff, logits_t), rtol=1e-5, atol=1e-7)
    hand = _paper_focal_gradient(labels, logits, alpha, gamma) * weights[..., None]
    assert_close(grad, hand, rtol=1e-4, atol=1e-7)

    @tf.function  # as in a training step
    def graph_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = losses.FocalLoss(alpha, gamma, reduction="sum")(labels, x, sample_weight=weights)
        return value, tape.gradient(value, x)

    value, graph = graph_grad(logits_t)
    assert_close(value, fused, rtol=1e-6)
    assert_close(graph, grad, rtol=1e-6, atol=1e-9)


def test_detection_losses_use_a_focal_loss_subclass_own_formula():
    class Doubled(losses.FocalLoss):
        def call(self, y_true, y_pred):
            return 2.0 * super().call(y_true, y_pred)

    cls_logits, box_outputs, box_targets = _detection_inputs()
    cls_targets = np.full((2, 30), BACKGROUND, np.int32)
    cls_targets[0, 0] = 1
    smooth = losses.SmoothL1Loss(reduction="sum")
    plain, _ = losses.detection_losses(cls_targets, box_targets, cls_logits, box_outputs,
                                       losses.FocalLoss(reduction="sum"), smooth)
    doubled, _ = losses.detection_losses(cls_targets, box_targets, cls_logits, box_outputs,
                                         Doubled(reduction="sum"), smooth)
    assert_close(doubled, 2.0 * np.asarray(plain), rtol=1e-6)


@pytest.mark.parametrize("gamma", [2.0, 0.5, 0.0])
def test_focal_loss_finite_for_huge_logits(gamma):
    logits = tf.constant([[1e4, -1e4, 88.0, -88.0, 0.0, 1e4]], tf.float32)
    labels = tf.constant([[0.0, 1.0, 1.0, 0.0, 1.0, 1.0]])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = tf.reduce_sum(losses.focal_loss(labels, logits, 0.25, gamma))
    grad = tape.gradient(value, logits).numpy()
    assert np.isfinite(float(value)) and float(value) > 1e3 and np.all(np.isfinite(grad))
    # Confidently wrong: the gradient pushes back with weight alpha_t; confidently right: ~0.
    assert_close(grad[0, :2], [0.75, -0.25], rtol=1e-6)
    assert abs(grad[0, 5]) < 1e-30


def _detection_inputs():
    rng = np.random.default_rng(5)
    cls_logits = rng.normal(0, 2, (2, 30, 3)).astype(np.float32)
    box_outputs = rng.normal(0, 1, (2, 30, 4)).astype(np.float32)
    box_targets = rng.normal(0, 1, (2, 30, 4)).astype(np.float32)
    return cls_logits, box_outputs, box_targets


def test_detection_losses_normalised_by_foreground_count():
    cls_logits, box_outputs, box_targets = _detection_inputs()
    cls_targets = np.full((2, 30), BACKGROUND, np.int32)
    cls_targets[0, :3] = [0, 2, 1]
    cls_targets[1, 5] = 2
    cls_targets[1, 6:10] = IGNORE
    focal = losses.FocalLoss(reduction="sum")
    smooth = losses.SmoothL1Loss(reduction="sum")
    cls_loss, box_loss = losses.detection_losses(cls_targets, box_targets, cls_logits, box_outputs,
                                                 focal, smooth)
    onehot = np.zeros((2, 30, 3), np.float32)
    for b, a in zip(*np.nonzero(cls_targets >= 0)):
        onehot[b, a, cls_targets[b, a]] = 1
    per_anchor = _paper_focal(onehot, cls_logits, 0.25, 2.0)
    expected_cls = per_anchor[cls_targets != IGNORE].sum() / 4  # 4 foreground anchors
    fg = cls_targets >= 0
    expected_box = np.asarray(losses.SmoothL1Loss(reduction=None)(box_targets, box_outputs))[fg].sum() / 4
    assert_close(cls_loss, expected_cls, rtol=1e-5)
    assert_close(box_loss, expected_box, rtol=1e-5)


def test_no_foreground_and_all_ignored_are_finite():
    cls_logits, box_outputs, box_targets = _detection_inputs()
    focal, smooth = losses.FocalLoss(reduction="sum"), losses.SmoothL1Loss(reduction="sum")
    background = np.full((2, 30), BACKGROUND, np.int32)  # an image with no boxes
    cls_loss, box_loss = losses.detection_losses(background, box_targets, cls_logits, box_outputs,
                                                 focal, smooth)
    assert np.isfinite(cls_loss) and float(cls_loss) > 0 and float(box_loss) == 0.0
    # Divided by max(count, 1) = 1: the plain sum over background anchors.
    assert_close(cls_loss, _paper_focal(np.zeros_like(cls_logits), cls_logits, 0.25, 2.0).sum(), rtol=1e-5)
    ignored = np.full((2, 30), IGNORE, np.int32)
    cls_loss, box_loss = losses.detection_losses(ignored, box_targets, cls_logits, box_outputs,
                                                 focal, smooth)
    assert float(cls_loss) == 0.0 and float(box_loss) == 0.0


@pytest.mark.parametrize("loss", [
    losses.FocalLoss(0.3, 1.5, reduction="sum", name="fl"),
    losses.FocalStarLoss(0.2, 2.0, 1.0, reduction="mean", name="fls"),
    losses.SmoothL1Loss(0.25, reduction=None, name="sl1"),
])
def test_losses_round_trip_config(loss):
    import keras

    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    labels, logits = _labels_logits(4, (3, 4))
    assert_close(restored(labels, logits), loss(labels, logits))
