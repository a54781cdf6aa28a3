"""The mapping of a picture into the model's input, and of detections back to the picture.

One pair of functions, used by the training and evaluation pipelines, the exported serving
graph, `predict` and the TensorBoard pictures, with the model's `resize_policy.ResizePolicy`:

- `to_model_input(image, policy)`: the picture scaled by `policy.scale` (aspect kept),
  padded (`policy.pad_color`) at the bottom and right to its canvas (`policy.canvas`: sides multiples of 32);
  returns the padded float32 `[h, w, 3]` (0-255) and `scale` (input pixels per picture pixel).
- `to_original(boxes, scale, original_hw, normalised=False)`: detections `[..., 4]` yxyx in
  input pixels -> yxyx in pixels of the picture (or normalised to it, 0..1), clipped to it.

`resize(image, boxes, scale, window=None, offset=None)` is the resize underneath, with boxes
and an optional crop (training's scale jitter); `pad_to(image, canvas, color)` the padding. All run
in TensorFlow (eagerly, inside `tf.data` and inside the SavedModel); `to_original` also
takes numpy arrays.
"""

import tensorflow as tf
from keras import ops

from keras_retina import boxes as box_lib


def resized_size(height, width, scale, rounding="round"):
    """int32 [2]: the picture's size after scaling (each side rounded or floored, at least 1)."""
    return resized_sizes(tf.stack([height, width]), scale, rounding)


def resized_sizes(sizes, scales, rounding="round"):
    """int32 `[..., 2]`: (height, width) `[..., 2]` after scaling by `scales` `[...]` (a batch's
    pictures inside their inputs, from the evaluation pipeline's meta). "floor" is torchvision's
    (`F.interpolate(scale_factor=..., recompute_scale_factor=True)`), "round" (half up) ours and
    detectron2's (`ResizeShortestEdge`: `int(x + 0.5)`)."""
    scaled = tf.cast(sizes, tf.float64) * tf.cast(scales, tf.float64)[..., None]
    return tf.maximum(tf.cast(tf.floor(scaled if rounding == "floor" else scaled + 0.5), tf.int32), 1)


def _ratios(original_hw, resized_hw):
    """float32 `[..., 4]` (y, x, y, x) input pixels per picture pixel of each axis: the resize's own
    ratio (bilinear resizing maps input to output by resized / original per axis)."""
    ratio = tf.cast(resized_hw, tf.float32) / tf.cast(original_hw, tf.float32)
    return tf.concat([ratio, ratio], axis=-1)


def resize(image, boxes, scale, window=None, offset=None, rounding="round", method="bilinear"):
    """Scales `[H, W, C]` (uint8 or float) by `scale` (sides rounded as `rounding` says, pixels
    interpolated as `method` says: `resize_policy.METHODS`); with `window` (h, w) and `offset`
    (y, x) keeps only that window. Boxes `[N, 4]` yxyx pixels follow (not clipped). -> float32
    image (0-255), boxes."""
    old_hw = tf.shape(image)[:2]
    new_hw = resized_size(old_hw[0], old_hw[1], scale, rounding)
    # uint8 in, float32 out: no full-size float copy. PIL's bilinear widens its triangle filter by
    # the shrink factor (an antialiasing filter; the same as plain bilinear when enlarging) and
    # gives uint8 pixels; TensorFlow's antialiased bilinear is that filter.
    antialias = method == "pil_bilinear"
    image = tf.image.resize(image, new_hw, method="bilinear", antialias=antialias)
    if antialias:
        image = tf.round(image)
    boxes = boxes * _ratios(old_hw, new_hw)
    if window is not None:
        image = image[offset[0]:offset[0] + window[0], offset[1]:offset[1] + window[1]]
        shift = tf.cast(tf.stack([offset[0], offset[1], offset[0], offset[1]]), tf.float32)
        boxes = boxes - shift
    return tf.clip_by_value(image, 0.0, 255.0), boxes


def pad_to(image, canvas, color=None):
    """Pads `[h, w, C]` (or a batch `[B, h, w, C]`) at the bottom and right to `canvas` (height,
    width) with `color` (C values; None: zeros). The picture's own pixels are untouched."""
    padded = tf.image.pad_to_bounding_box(image, 0, 0, canvas[0], canvas[1])
    if color is None or not any(color):
        return padded
    outside = 1.0 - tf.image.pad_to_bounding_box(tf.ones_like(image[..., :1]), 0, 0, canvas[0], canvas[1])
    return padded + outside * tf.constant(color, padded.dtype)


def to_model_input(image, policy):
    """uint8/float `[H, W, 3]` -> (float32 `[canvas..., 3]` resized and padded, scale)."""
    scale = policy.scale(tf.shape(image)[0], tf.shape(image)[1])
    resized, _ = resize(image, tf.zeros([0, 4]), scale, rounding=policy.rounding, method=policy.method)
    shape = tf.shape(resized)
    return pad_to(resized, policy.canvas(shape[0], shape[1]), policy.pad_color), scale


def to_original(boxes, scale, original_hw, normalised=False, rounding="round", resized_hw=None):
    """Detections in input pixels -> the original picture's pixels (or 0..1), clipped to it.

    Args:
      boxes: `[..., D, 4]` yxyx input pixels.
      scale: `[...]` input pixels per original pixel (from `to_model_input`).
      original_hw: `[..., 2]` the original picture's height and width.
      normalised: return boxes normalised to the picture instead of pixels.
      rounding: the policy's (`ResizePolicy.rounding`): boxes are divided by each axis' own ratio,
        resized side / original side, as torchvision's `resize_boxes` does.
      resized_hw: `[..., 2]` the picture's size in the input when known (else from scale).
    """
    if resized_hw is None:
        resized_hw = resized_sizes(original_hw, scale, rounding)
    boxes = ops.cast(boxes, "float32") / _ratios(original_hw, resized_hw)[..., None, :]
    original_hw = ops.cast(original_hw, "float32")
    height, width = original_hw[..., 0:1], original_hw[..., 1:2]  # [..., 1]: broadcast over D
    boxes = box_lib.clip_to_image(boxes, height, width)
    return box_lib.normalise(boxes, height, width) if normalised else boxes
