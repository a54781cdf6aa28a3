"""Box regression losses on decoded boxes: GIoU, DIoU and CIoU, beside the paper's smooth L1 on deltas.

The paper (section 4.1) regresses anchor offsets with smooth L1. The IoU losses compare the boxes
themselves, yxyx pixels `[..., 4]` (the model decodes its outputs and the targets with the same
anchors first: `RetinaNet.compute_loss`), and return `[...]`:

    GIoU (Rezatofighi et al., CVPR 2019):  1 - IoU + (|C| - |A u B|) / |C|
    DIoU (Zheng et al., AAAI 2020):        1 - IoU + rho^2(centres) / c^2
    CIoU (the same paper):                 DIoU + alpha v,  v = 4 / pi^2 (atan(w_t / h_t) - atan(w / h))^2,
                                           alpha = v / (1 - IoU + v), a constant for the gradient

C is the smallest box holding both, c its diagonal, rho the distance between the centres. The
small constant EPS sits where torchvision.ops' `generalized_box_iou_loss`, `distance_box_iou_loss`
and `complete_box_iou_loss` put it, so the numbers are theirs (tested); CIoU's aspect term adds it
to the heights too, so a box of no height gives a finite loss where torchvision's is NaN.

`aligned_iou(boxes, targets)`: the IoU of each box with its own target (the quality-aware
classification losses' target, `quality_losses`).
`BoxIoULoss(kind)`: a Keras loss (`reduction="sum"` in RetinaNet). `losses.box_loss(name, beta)`
builds any of `BOX_LOSS_TYPES`: "smooth_l1" (paper), "l1" (on deltas: smooth L1 with beta 0,
torchvision's "l1"), "giou", "diou", "ciou".
"""

import math

import keras
from keras import ops

BOX_LOSS_TYPES = ("smooth_l1", "l1", "giou", "diou", "ciou")
ON_BOXES = ("giou", "diou", "ciou")
EPS = 1e-7


def _parts(boxes, targets):
    """Coordinates, intersection, union and the enclosing box of yxyx `boxes` and `targets`."""
    y1, x1, y2, x2 = ops.unstack(ops.cast(boxes, "float32"), 4, axis=-1)
    y1g, x1g, y2g, x2g = ops.unstack(ops.cast(targets, "float32"), 4, axis=-1)
    inter = (ops.maximum(ops.minimum(y2, y2g) - ops.maximum(y1, y1g), 0.0)
             * ops.maximum(ops.minimum(x2, x2g) - ops.maximum(x1, x1g), 0.0))
    union = (y2 - y1) * (x2 - x1) + (y2g - y1g) * (x2g - x1g) - inter
    enclosing = (ops.minimum(y1, y1g), ops.minimum(x1, x1g), ops.maximum(y2, y2g), ops.maximum(x2, x2g))
    return (y1, x1, y2, x2), (y1g, x1g, y2g, x2g), inter, union, enclosing


def aligned_iou(boxes, targets):
    """IoU of each yxyx box `[..., 4]` with its own target `[..., 4]` -> `[...]` (0 for two empty boxes)."""
    _, _, inter, union, _ = _parts(boxes, targets)
    return inter / (union + EPS)


def giou_loss(boxes, targets):
    _, _, inter, union, (cy1, cx1, cy2, cx2) = _parts(boxes, targets)
    iou = inter / (union + EPS)
    area_c = (cy2 - cy1) * (cx2 - cx1)
    return 1.0 - (iou - (area_c - union) / (area_c + EPS))


def _diou(boxes, targets):
    (y1, x1, y2, x2), (y1g, x1g, y2g, x2g), inter, union, (cy1, cx1, cy2, cx2) = _parts(boxes, targets)
    iou = inter / (union + EPS)
    diagonal = (cx2 - cx1) ** 2 + (cy2 - cy1) ** 2 + EPS
    centres = ((x1 + x2) / 2 - (x1g + x2g) / 2) ** 2 + ((y1 + y2) / 2 - (y1g + y2g) / 2) ** 2
    return 1.0 - iou + centres / diagonal, iou


def diou_loss(boxes, targets):
    return _diou(boxes, targets)[0]


def ciou_loss(boxes, targets):
    loss, iou = _diou(boxes, targets)
    y1, x1, y2, x2 = ops.unstack(ops.cast(boxes, "float32"), 4, axis=-1)
    y1g, x1g, y2g, x2g = ops.unstack(ops.cast(targets, "float32"), 4, axis=-1)
    aspect = ops.arctan((x2g - x1g) / (y2g - y1g + EPS)) - ops.arctan((x2 - x1) / (y2 - y1 + EPS))
    v = (4.0 / math.pi**2) * aspect**2
    alpha = ops.stop_gradient(v / (1.0 - iou + v + EPS))
    return loss + alpha * v


_KINDS = {"giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}


@keras.saving.register_keras_serializable(package="keras_retina")
class BoxIoULoss(keras.losses.Loss):
    """GIoU, DIoU or CIoU loss (module docstring): `call(targets, boxes)`, yxyx `[..., 4]` -> `[...]`.
    `on_boxes` tells RetinaNet to decode its outputs and targets before calling it."""

    on_boxes = True

    def __init__(self, kind="giou", reduction="sum_over_batch_size", name=None, dtype=None):
        if kind not in _KINDS:
            raise ValueError(f"BoxIoULoss kind={kind!r}: choose one of {', '.join(_KINDS)}.")
        super().__init__(name=name or f"{kind}_loss", reduction=reduction, dtype=dtype)
        self.kind = kind

    def call(self, y_true, y_pred):
        return _KINDS[self.kind](y_pred, y_true)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind}
