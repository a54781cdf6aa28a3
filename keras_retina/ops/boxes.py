"""Box formats, pairwise IoU and clipping.

The one internal box format of keras_retina is **yxyx pixels**: a float32
tensor whose last axis is `[ymin, xmin, ymax, xmax]` in pixels of the image
the model sees (its input, the picture resized and padded), with `ymax > ymin`
and `xmax > xmin` for a real box. Ground truth, anchors, decoded detections
and every function in the package use it. Other formats exist only at the
edges and are converted here:

- COCO annotations: `[x, y, width, height]` pixels (`xywh_to_yxyx`).
- The box coder works on centres and sizes (`yxyx_to_centers`,
  `centers_to_yxyx`): `[cy, cx, h, w]` pixels.

All functions accept any leading dimensions (`[..., 4]`) and run eagerly,
inside `tf.function` and inside `tf.data.Dataset.map`.
"""

import numpy as np
from keras import ops


def xywh_to_yxyx(boxes):
    """COCO `[x, y, w, h]` -> `[ymin, xmin, ymax, xmax]`; `[..., 4]` -> `[..., 4]`."""
    x, y, w, h = ops.unstack(boxes, 4, axis=-1)
    return ops.stack([y, x, y + h, x + w], axis=-1)


def yxyx_to_xywh(boxes):
    """`[ymin, xmin, ymax, xmax]` -> COCO `[x, y, w, h]`; `[..., 4]` -> `[..., 4]`."""
    ymin, xmin, ymax, xmax = ops.unstack(boxes, 4, axis=-1)
    return ops.stack([xmin, ymin, xmax - xmin, ymax - ymin], axis=-1)


def yxyx_to_centers(boxes):
    """`[..., 4]` yxyx -> `[..., 4]` `[cy, cx, h, w]` (same units)."""
    ymin, xmin, ymax, xmax = ops.unstack(boxes, 4, axis=-1)
    h = ymax - ymin
    w = xmax - xmin
    return ops.stack([ymin + 0.5 * h, xmin + 0.5 * w, h, w], axis=-1)


def centers_to_yxyx(centers):
    """`[..., 4]` `[cy, cx, h, w]` -> `[..., 4]` yxyx (same units)."""
    cy, cx, h, w = ops.unstack(centers, 4, axis=-1)
    return ops.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def area(boxes):
    """`[..., 4]` yxyx -> `[...]`; boxes with non-positive height or width have area 0."""
    ymin, xmin, ymax, xmax = ops.unstack(boxes, 4, axis=-1)
    return ops.maximum(ymax - ymin, 0.0) * ops.maximum(xmax - xmin, 0.0)


def pairwise_iou(boxes1, boxes2):
    """Intersection over union of every box in `boxes1` with every box in `boxes2`.

    Args:
      boxes1: `[..., M, 4]` float32, yxyx.
      boxes2: `[..., N, 4]` float32, yxyx (leading dims broadcast with boxes1's).

    Returns:
      `[..., M, N]` float32 in [0, 1]. A pair whose union is empty (two
      degenerate boxes) has IoU 0, never NaN.
    """
    b1 = ops.expand_dims(ops.cast(boxes1, "float32"), -2)  # [..., M, 1, 4]
    b2 = ops.expand_dims(ops.cast(boxes2, "float32"), -3)  # [..., 1, N, 4]
    y1a, x1a, y2a, x2a = ops.unstack(b1, 4, axis=-1)
    y1b, x1b, y2b, x2b = ops.unstack(b2, 4, axis=-1)
    inter_h = ops.maximum(ops.minimum(y2a, y2b) - ops.maximum(y1a, y1b), 0.0)
    inter_w = ops.maximum(ops.minimum(x2a, x2b) - ops.maximum(x1a, x1b), 0.0)
    intersection = inter_h * inter_w
    union = area(b1) + area(b2) - intersection
    return ops.where(union > 0.0, intersection / ops.maximum(union, 1e-12), 0.0)


def normalise(boxes, height, width):
    """yxyx pixels `[..., 4]` -> yxyx in units of the image's height and width (0..1 inside)."""
    return boxes / ops.cast(ops.stack([height, width, height, width], axis=-1), boxes.dtype)


def denormalise(boxes, height, width):
    """yxyx normalised to the image `[..., 4]` -> yxyx pixels of an image `height` x `width`."""
    return boxes * ops.cast(ops.stack([height, width, height, width], axis=-1), boxes.dtype)


def clip_to_image(boxes, height, width):
    """Clips yxyx pixel boxes `[..., 4]` to the image `[0, height] x [0, width]`."""
    ymin, xmin, ymax, xmax = ops.unstack(boxes, 4, axis=-1)
    height = ops.cast(height, boxes.dtype)
    width = ops.cast(width, boxes.dtype)
    return ops.stack(
        [
            ops.clip(ymin, 0.0, height),
            ops.clip(xmin, 0.0, width),
            ops.clip(ymax, 0.0, height),
            ops.clip(xmax, 0.0, width),
        ],
        axis=-1,
    )


# Verdicts of `check_boxes`, one per box; `VERDICT_KINDS` names them as data reports do.
VALID, CLIPPED, EMPTY, OUTSIDE, BAD = 0, 1, 2, 3, 4
VERDICT_KINDS = {CLIPPED: "clipped_box", EMPTY: "empty_box", OUTSIDE: "outside_box", BAD: "bad_box"}


def check_boxes(boxes, height, width):
    """The one rule for which boxes can be trained on, used by every reader and the pipeline.

    Args:
      boxes: `[..., 4]` yxyx in the units of `height` and `width` (pixels, or 1 x 1 for
        normalised boxes).
      height, width: the image's size, scalars or broadcastable to `[...]`; NaN where the image
        size is unknown (then no box is OUTSIDE or CLIPPED).

    Returns:
      (boxes clipped to the image with non-finite ones zeroed `[..., 4]` float32,
       verdict `[...]` int32): BAD for a NaN/inf coordinate or a negative height or width,
       EMPTY for zero height or width, OUTSIDE for a box with no area inside the image,
       CLIPPED for one partly outside (the returned box is the clipped one), VALID otherwise.
       Only VALID and CLIPPED boxes are trained on.
    """
    boxes = ops.cast(boxes, "float32")
    height = ops.cast(height, "float32")
    width = ops.cast(width, "float32")
    finite = ops.all(ops.isfinite(boxes), axis=-1)
    safe = ops.where(ops.expand_dims(finite, -1), boxes, 0.0)
    ymin, xmin, ymax, xmax = ops.unstack(safe, 4, axis=-1)
    bad = ops.logical_not(finite) | (ymax < ymin) | (xmax < xmin)
    empty = (ymax == ymin) | (xmax == xmin)
    known = ops.isfinite(height) & ops.isfinite(width)
    outside = known & ((ymax <= 0.0) | (xmax <= 0.0) | (ymin >= height) | (xmin >= width))
    partly = known & ((ymin < 0.0) | (xmin < 0.0) | (ymax > height) | (xmax > width))
    verdict = ops.where(bad, BAD, ops.where(empty, EMPTY, ops.where(
        outside, OUTSIDE, ops.where(partly, CLIPPED, VALID))))
    clipped = ops.stack([ops.clip(ymin, 0.0, height), ops.clip(xmin, 0.0, width),
                         ops.clip(ymax, 0.0, height), ops.clip(xmax, 0.0, width)], axis=-1)
    return clipped, ops.cast(verdict, "int32")


def trainable(verdict):
    """Boxes whose `check_boxes` verdict lets them be trained on (VALID or CLIPPED)."""
    return verdict <= CLIPPED


def coco_bboxes(boxes):
    """`[D, 4]` yxyx pixels -> D COCO `[x, y, width, height]` lists (one conversion per image)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.asarray(yxyx_to_xywh(boxes)).tolist() if len(boxes) else []
