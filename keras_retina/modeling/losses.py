"""RetinaNet losses: sigmoid focal loss (and its paper variants), smooth L1, normalisation.

Classification (paper section 3): logit x, label y in {0, 1}, p = sigmoid(x), x_t = (2y - 1) x;
p_t and alpha_t are p and alpha if y = 1, else 1 - p and 1 - alpha:

    FL(p_t)  = -alpha_t (1 - p_t)^gamma log(p_t)            (eq. 5; alpha .25, gamma 2)
    CE_alpha = FL with gamma = 0                             (eq. 3, "balanced_ce")
    FL*      = -alpha_t log(sigmoid(gamma x_t + beta)) / gamma                    (eqs. 6-8)

The sigmoid is fused into the loss (section 3.2): no Inf or NaN loss or gradient for finite logits.
Box regression: class-agnostic smooth L1 (`beta`, default 1/9: Detectron's) on `ops.box_coder` targets.
`detection_losses(cls_targets [B, A], box_targets [B, A, 4], cls_logits [B, A, K], box_outputs [B, A, 4],
...)` -> (classification, box): sums over non-ignored (box: foreground) anchors over the global batch's
foreground count, at least 1 (section 4.1). `classification_loss(name)`: "focal" | "focal_star" |
"balanced_ce", or the quality-aware "quality_focal" | "varifocal" (`quality_losses`: the targets
are the IoUs of the predicted boxes).
"""

import keras
import tensorflow as tf
from keras import ops

from keras_retina.modeling.box_losses import BOX_LOSS_TYPES, ON_BOXES, BoxIoULoss
from keras_retina.modeling.label_encoder import BACKGROUND, IGNORE
from keras_retina.modeling.quality_losses import VFL_ALPHA, QualityFocalLoss, VarifocalLoss

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
FOCAL_STAR_GAMMA = 4.0  # FL* (appendix A): its best setting in the select-settings table, 33.9 AP
FOCAL_STAR_BETA = 0.0
SMOOTH_L1_BETA = 1.0 / 9.0


def _signed_logits(y_true, y_pred):
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    return y_true, (2.0 * y_true - 1.0) * y_pred


@keras.saving.register_keras_serializable(package="keras_retina")
class FocalLoss(keras.losses.Loss):
    """Alpha-balanced sigmoid focal loss from logits (paper eq. 5).

    `call(y_true, y_pred)`: y_true `[..., K]` 0/1 labels (one-hot; all zeros for
    background), y_pred `[..., K]` logits -> `[...]`, summed over K. With the
    Keras `reduction` the usual reductions apply on top. gamma = 0 gives
    alpha-balanced cross entropy (eq. 3).
    """

    def __init__(self, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA, reduction="sum_over_batch_size",
                 name="focal_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0.0 <= alpha <= 1.0 or gamma < 0.0:
            raise ValueError(f"FocalLoss needs 0 <= alpha <= 1 and gamma >= 0, got {alpha}, {gamma}.")
        self.alpha = alpha
        self.gamma = gamma

    def call(self, y_true, y_pred):
        return focal_loss(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"), self.alpha, self.gamma)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="keras_retina")
class FocalStarLoss(keras.losses.Loss):
    """FL* (paper section 3.5, eqs. 6-8), alpha-balanced as in the paper's experiments.

    Same shapes as `FocalLoss`. Defaults gamma = 4, beta = 0: one of the two
    settings of Table 2 that match FL's AP.
    """

    def __init__(self, alpha=FOCAL_ALPHA, gamma=FOCAL_STAR_GAMMA, beta=FOCAL_STAR_BETA,
                 reduction="sum_over_batch_size",
                 name="focal_star_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if gamma <= 0.0:
            raise ValueError(f"FocalStarLoss needs gamma > 0, got {gamma}.")
        self.alpha = alpha
        self.gamma = gamma
        self.beta = beta

    def call(self, y_true, y_pred):
        y_true, x_t = _signed_logits(y_true, y_pred)
        alpha_t = y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)
        loss = alpha_t * ops.softplus(-(self.gamma * x_t + self.beta)) / self.gamma
        return ops.sum(loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma, "beta": self.beta}


@keras.saving.register_keras_serializable(package="keras_retina")
class SmoothL1Loss(keras.losses.Loss):
    """Smooth L1 (Huber / beta): 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta.

    `call(y_true, y_pred)`: `[..., 4]` box targets and predictions -> `[...]`,
    summed over the 4 coordinates.
    """

    def __init__(self, beta=SMOOTH_L1_BETA, reduction="sum_over_batch_size",
                 name="smooth_l1_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if beta < 0.0:
            raise ValueError(f"SmoothL1Loss needs beta >= 0, got {beta}.")
        self.beta = beta

    def call(self, y_true, y_pred):
        diff = ops.abs(ops.cast(y_pred, "float32") - ops.cast(y_true, "float32"))
        if self.beta == 0.0:
            loss = diff
        else:
            loss = ops.where(diff < self.beta, 0.5 * diff * diff / self.beta, diff - 0.5 * self.beta)
        return ops.sum(loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


def focal_loss(labels, logits, alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA):
    """FL summed over K, with its gradient written out (module docstring).

    Args:
      labels: `[..., K]` 0/1 float32.
      logits: `[..., K]` float32.
    Returns `[...]` float32; the gradient flows to `logits` only.
    """
    signs = 2.0 * labels - 1.0
    alpha_t = alpha * labels + (1.0 - alpha) * (1.0 - labels)

    # Gradient written out, d FL / d x_t = alpha_t (1 - p_t)^gamma (gamma p_t log(p_t) - (1 - p_t)): one
    # pass of elementwise ops, and only the [..., K] gradient is kept for the backward pass.
    @tf.custom_gradient
    def loss(logits):
        x_t = signs * logits
        e = tf.exp(-tf.abs(x_t))
        log1p_e = tf.math.log1p(e)
        neg_log_p = tf.nn.relu(-x_t) + log1p_e  # -log(p_t) = softplus(-x_t)
        q = tf.where(x_t >= 0.0, e, 1.0) / (1.0 + e)  # 1 - p_t = sigmoid(-x_t), exact for any x_t
        if gamma == 0.0:
            weighted = alpha_t
        elif gamma == 2.0:
            weighted = alpha_t * tf.square(q)
        else:  # (1 - p_t)^gamma = exp(-gamma softplus(x_t)): 0, not NaN, when 1 - p_t underflows
            weighted = alpha_t * tf.exp(-gamma * (tf.nn.relu(x_t) + log1p_e))
        d_logits = weighted * signs * (-q - gamma * neg_log_p * (1.0 - q))
        return tf.reduce_sum(weighted * neg_log_p, axis=-1), lambda upstream: upstream[..., None] * d_logits

    return loss(logits)


CLASSIFICATION_LOSSES = ("focal", "focal_star", "balanced_ce", "quality_focal", "varifocal")


def box_loss(name="smooth_l1", beta=SMOOTH_L1_BETA):
    """'smooth_l1' (paper) | 'l1' (on deltas) | 'giou' | 'diou' | 'ciou' (on decoded boxes,
    `box_losses`) -> a loss object that sums (`reduction="sum"`, as `detection_losses` needs)."""
    if name == "smooth_l1":
        return SmoothL1Loss(beta, reduction="sum")
    if name == "l1":
        return SmoothL1Loss(0.0, reduction="sum", name="l1_loss")
    if name in ON_BOXES:
        return BoxIoULoss(name, reduction="sum")
    raise ValueError(f"box_loss_type={name!r}: choose one of {BOX_LOSS_TYPES}.")


def default_gamma(name):
    """The gamma a classification loss uses when none is given: FOCAL_STAR_GAMMA for FL*, else
    FOCAL_GAMMA (balanced_ce ignores it)."""
    return FOCAL_STAR_GAMMA if name == "focal_star" else FOCAL_GAMMA


def default_alpha(name):
    """The alpha a classification loss uses when none is given: VarifocalNet's 0.75 for 'varifocal'
    (it weights the negatives), else FOCAL_ALPHA (quality_focal ignores it)."""
    return VFL_ALPHA if name == "varifocal" else FOCAL_ALPHA


def classification_loss(name, alpha=None, gamma=None, beta=FOCAL_STAR_BETA):
    """'focal' (default) | 'focal_star' | 'balanced_ce' | 'quality_focal' | 'varifocal' (IoU targets,
    `quality_losses`; quality_focal's beta is `gamma`) -> a loss object that sums (`reduction="sum"`, as
    `detection_losses` needs). alpha, gamma None: `default_alpha(name)`, `default_gamma(name)`."""
    if gamma is None:
        gamma = default_gamma(name)
    if alpha is None:
        alpha = default_alpha(name)
    if name == "quality_focal":
        return QualityFocalLoss(gamma, reduction="sum")
    if name == "varifocal":
        return VarifocalLoss(alpha, gamma, reduction="sum")
    if name == "focal":
        return FocalLoss(alpha, gamma, reduction="sum")
    if name == "focal_star":
        return FocalStarLoss(alpha, gamma, beta, reduction="sum")
    if name == "balanced_ce":
        return FocalLoss(alpha, 0.0, reduction="sum", name="balanced_ce")
    raise ValueError(f"classification_loss={name!r}: choose one of {CLASSIFICATION_LOSSES}.")


def global_foreground_count(cls_targets):
    """Number of foreground anchors in the whole global batch, as float32, at least 1.

    Under a `tf.distribute` strategy each replica sees only its share of the
    batch; the count is summed over replicas (all-reduce), so every replica
    divides its local loss sum by the same global normaliser. Keras sums the
    replicas' gradients, and the sum of per-replica losses `local_sum / global_count`
    is exactly the single-device loss of the whole batch.
    """
    count = ops.sum(ops.cast(cls_targets >= 0, "float32"))
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return ops.maximum(ops.stop_gradient(count), 1.0)


def detection_losses(cls_targets, box_targets, cls_logits, box_outputs, cls_loss_fn, box_loss_fn, *, quality=None):
    """Per-replica RetinaNet losses, normalised by the global foreground count.

    Args:
      cls_targets: `[B, A]` int32 from `LabelEncoder` (class, BACKGROUND or IGNORE).
      box_targets: `[B, A, 4]` float32 encoded targets.
      cls_logits: `[B, A, K]` classification logits.
      box_outputs: `[B, A, 4]` box regression outputs.
      cls_loss_fn, box_loss_fn: Keras losses with `reduction="sum"`, called with
        `(targets, outputs, sample_weight=[B, A])`.
      quality: optional `[B, A]` float32 in [0, 1]: the true class's target (else 1), for the
        quality-aware losses.

    Returns:
      (classification_loss, box_loss) scalars float32: the sums over this
      replica's non-ignored (box: foreground) anchors divided by the global
      number of foreground anchors. Summed over replicas they are the
      whole batch's loss.
    """
    num_classes = ops.shape(cls_logits)[-1]
    cls_targets = ops.cast(cls_targets, "int32")
    # one_hot of BACKGROUND / IGNORE (negative ids) is all zeros.
    labels = ops.one_hot(ops.maximum(cls_targets, -1), num_classes)
    labels = ops.where(ops.expand_dims(cls_targets >= 0, -1), labels, 0.0)
    if quality is not None:
        labels = labels * ops.expand_dims(ops.cast(quality, "float32"), -1)
    not_ignored = ops.cast(cls_targets != IGNORE, "float32")
    foreground = ops.cast(cls_targets > BACKGROUND, "float32")
    normaliser = global_foreground_count(cls_targets)
    cls_loss = cls_loss_fn(labels, cls_logits, sample_weight=not_ignored) / normaliser
    box_loss = box_loss_fn(box_targets, box_outputs, sample_weight=foreground) / normaliser
    return cls_loss, box_loss
