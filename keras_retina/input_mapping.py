"""The mapping of a picture into the model's input, and of detections back to the picture.

One pair of functions, used by the training and evaluation pipelines, the exported serving
graph, `predict` and the TensorBoard pictures:

- `to_model_input(image, input_size)`: the picture resized with its aspect kept so it fits
  `input_size` (height, width), zero-padded at the bottom and right; returns the padded
  float32 `[h, w, 3]` (0-255) and `scale` (input pixels per picture pixel).
- `to_original(boxes, scale, original_hw, normalised=False)`: detections `[..., 4]` yxyx in
  input pixels -> yxyx in pixels of the picture (or normalised to it, 0..1), clipped to it.

`resize_and_pad(image, boxes, size, scale, offset)` is the resize underneath, with boxes and an
optional crop, for training's scale jitter. All run in TensorFlow (eagerly, inside `tf.data`
and inside the SavedModel); `to_original` also takes numpy arrays.
"""

import tensorflow as tf
from keras import ops

from keras_retina import boxes as box_lib


def fit_scale(image, size):
    """Scale that fits the whole `[H, W, C]` image into `size` (height, width), aspect kept."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    return tf.minimum(size[0] / shape[0], size[1] / shape[1])


def resize_and_pad(image, boxes, size, scale, offset=None):
    """Resizes by `scale`, crops at `offset` (y, x) if given, pads to `size` (height, width).

    image uint8/float `[H, W, 3]`, boxes `[N, 4]` yxyx pixels -> float32 `[size, 3]` 0-255,
    boxes in the new pixels (not clipped).
    """
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    new_hw = tf.maximum(tf.cast(tf.round(tf.stack([height, width]) * scale), tf.int32), 1)
    image = tf.image.resize(image, new_hw, method="bilinear")  # uint8 in, float32 out: no full-size float copy
    boxes = boxes * scale
    if offset is not None:
        image = image[offset[0]:offset[0] + size[0], offset[1]:offset[1] + size[1]]
        shift = tf.cast(tf.stack([offset[0], offset[1], offset[0], offset[1]]), tf.float32)
        boxes = boxes - shift
    image = tf.image.pad_to_bounding_box(image, 0, 0, size[0], size[1])
    image = tf.clip_by_value(image, 0.0, 255.0)
    return image, boxes


def to_model_input(image, input_size):
    """uint8/float `[H, W, 3]` -> (float32 `[input_size..., 3]` resized and padded, scale)."""
    scale = fit_scale(image, input_size)
    padded, _ = resize_and_pad(image, tf.zeros([0, 4]), input_size, scale)
    return padded, scale


def to_original(boxes, scale, original_hw, normalised=False):
    """Detections in input pixels -> the original picture's pixels (or 0..1), clipped to it.

    Args:
      boxes: `[..., D, 4]` yxyx input pixels.
      scale: `[...]` input pixels per original pixel (from `to_model_input`).
      original_hw: `[..., 2]` the original picture's height and width.
      normalised: return boxes normalised to the picture instead of pixels.
    """
    boxes = ops.cast(boxes, "float32") / ops.cast(scale, "float32")[..., None, None]
    original_hw = ops.cast(original_hw, "float32")
    height, width = original_hw[..., 0:1], original_hw[..., 1:2]  # [..., 1]: broadcast over D
    boxes = box_lib.clip_to_image(boxes, height, width)
    return box_lib.normalise(boxes, height, width) if normalised else boxes
