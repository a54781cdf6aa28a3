"""Quality-aware classification losses: the true class's target is the IoU of the anchor's predicted box.

The paper's focal loss (section 3) trains an anchor's score towards 1 for its object's class however
well its box fits, so at inference a loose box can outscore a tight one and NMS keeps the loose one.
These losses train the score of a foreground anchor's class towards q, the IoU of the box the model
predicts at that anchor with the object's box (computed in the loss, `RetinaNet.compute_loss`, from
the decoded boxes, with no gradient through q); every other target stays 0. A score then ranks boxes
by how well they fit as well as by class, which is what AP at IoU 0.75 rewards.

    QFL (quality focal loss, Li et al., "Generalized Focal Loss", NeurIPS 2020, eq. 5):
        QFL(p) = -|q - p|^beta ((1 - q) log(1 - p) + q log p),        beta = 2
    VFL (varifocal loss, Zhang et al., "VarifocalNet", CVPR 2021, eq. 2):
        VFL(p) = -q (q log p + (1 - q) log(1 - p))   if q > 0
                 -alpha p^gamma log(1 - p)           if q = 0,         alpha = 0.75, gamma = 2

p = sigmoid(logit); the gradient flows through the weights too, as in the formulas (and in the
authors' code). Both are binary cross entropy against the soft target q times a weight: QFL's
|q - p|^beta down-weights well-scored anchors of either kind, as the focal term does; VFL keeps the
positives' full weight (scaled by q: tight boxes count more) and focal-weights only the negatives.
With q in {0, 1} QFL is the focal loss without alpha (alpha = 1/2, doubled), tested. Both are summed
over anchors and classes and divided by the number of foreground anchors, as the paper's (section
4.1); their authors normalise the same way. Neither changes the model: the prior-probability bias
(pi = 0.01) and the decoder (sigmoid scores, the 0.05 cut) are the paper's.

`call(y_true, y_pred)`: y_true `[..., K]` targets in [0, 1] (q on the true class, 0 elsewhere),
y_pred `[..., K]` logits -> `[...]`, summed over K. `quality_aware = True` tells RetinaNet to give
the IoU targets; called with 0/1 labels (as any classification loss may be) they are plain
detection losses.
"""

import keras
from keras import ops

QFL_BETA = 2.0
VFL_ALPHA = 0.75
VFL_GAMMA = 2.0


def _cross_entropy(targets, logits):
    """Binary cross entropy of soft `targets` from `logits`, elementwise; finite for any finite logit."""
    return ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits)))


@keras.saving.register_keras_serializable(package="keras_retina")
class QualityFocalLoss(keras.losses.Loss):
    """GFL's quality focal loss (module docstring), beta >= 0."""

    quality_aware = True

    def __init__(self, beta=QFL_BETA, reduction="sum_over_batch_size", name="quality_focal_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if beta < 0.0:
            raise ValueError(f"QualityFocalLoss needs beta >= 0, got {beta}.")
        self.beta = beta

    def call(self, y_true, y_pred):
        targets = ops.cast(y_true, "float32")
        logits = ops.cast(y_pred, "float32")
        weight = ops.abs(targets - ops.sigmoid(logits)) ** self.beta
        return ops.sum(weight * _cross_entropy(targets, logits), axis=-1)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable(package="keras_retina")
class VarifocalLoss(keras.losses.Loss):
    """VarifocalNet's varifocal loss (module docstring), 0 <= alpha, gamma >= 0."""

    quality_aware = True

    def __init__(self, alpha=VFL_ALPHA, gamma=VFL_GAMMA, reduction="sum_over_batch_size",
                 name="varifocal_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if alpha < 0.0 or gamma < 0.0:
            raise ValueError(f"VarifocalLoss needs alpha >= 0 and gamma >= 0, got {alpha}, {gamma}.")
        self.alpha = alpha
        self.gamma = gamma

    def call(self, y_true, y_pred):
        targets = ops.cast(y_true, "float32")
        logits = ops.cast(y_pred, "float32")
        negative = self.alpha * ops.sigmoid(logits) ** self.gamma
        weight = ops.where(targets > 0.0, targets, negative)
        return ops.sum(weight * _cross_entropy(targets, logits), axis=-1)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}
