"""Encode / decode of box regression targets (the R-CNN parameterisation).

Paper, section 4 ("Box Regression Subnet"): the box subnet predicts "the
relative offset between the anchor and the ground-truth box (we use the standard
box parameterization from R-CNN [1])". For a box (cy, cx, h, w) and an anchor
(acy, acx, ah, aw), in the order of our yxyx format:

    ty = wy * (cy - acy) / ah     tx = wx * (cx - acx) / aw
    th = wh * log(h / ah)         tw = ww * log(w / aw)

This module is the only place the coder weights and the decode clamp live.
Weights default to (1, 1, 1, 1), as in Detectron's RetinaNet (the paper's
reference implementation) and the Model Garden's RetinaNet. When decoding, th
and tw are clamped to log(1000 / 16) before exp() so a wild prediction cannot
overflow to Inf (Detectron's BBOX_XFORM_CLIP).
"""

import math

from keras import ops

from keras_retina.ops import boxes as box_lib

DEFAULT_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
DECODE_CLAMP = math.log(1000.0 / 16.0)
# Box sides are floored at this many pixels before the log, so a degenerate
# box can never produce -Inf (such boxes are never matched to anchors anyway).
_MIN_SIDE = 1e-6


def encode(boxes, anchors, weights=DEFAULT_WEIGHTS):
    """Boxes -> regression targets relative to anchors.

    Args:
      boxes: `[..., 4]` float32, yxyx pixels.
      anchors: `[..., 4]` float32, yxyx pixels, broadcastable to `boxes`.
      weights: (wy, wx, wh, ww).

    Returns:
      `[..., 4]` float32 `[ty, tx, th, tw]`.
    """
    cy, cx, h, w = ops.unstack(box_lib.yxyx_to_centers(boxes), 4, axis=-1)
    acy, acx, ah, aw = ops.unstack(box_lib.yxyx_to_centers(anchors), 4, axis=-1)
    h = ops.maximum(h, _MIN_SIDE)
    w = ops.maximum(w, _MIN_SIDE)
    wy, wx, wh, ww = weights
    return ops.stack(
        [
            wy * (cy - acy) / ah,
            wx * (cx - acx) / aw,
            wh * ops.log(h / ah),
            ww * ops.log(w / aw),
        ],
        axis=-1,
    )


def decode(deltas, anchors, weights=DEFAULT_WEIGHTS):
    """Regression outputs -> boxes; the inverse of `encode` (up to the clamp).

    Args:
      deltas: `[..., 4]` float `[ty, tx, th, tw]`.
      anchors: `[..., 4]` float32, yxyx pixels, broadcastable to `deltas`.
      weights: (wy, wx, wh, ww), the same as used for encoding.

    Returns:
      `[..., 4]` float32, yxyx pixels (not clipped to the image).
    """
    deltas = ops.cast(deltas, "float32")
    ty, tx, th, tw = ops.unstack(deltas, 4, axis=-1)
    acy, acx, ah, aw = ops.unstack(box_lib.yxyx_to_centers(anchors), 4, axis=-1)
    wy, wx, wh, ww = weights
    th = ops.minimum(th / wh, DECODE_CLAMP)
    tw = ops.minimum(tw / ww, DECODE_CLAMP)
    centers = ops.stack(
        [ty / wy * ah + acy, tx / wx * aw + acx, ops.exp(th) * ah, ops.exp(tw) * aw], axis=-1
    )
    return box_lib.centers_to_yxyx(centers)
