"""A picture's way into the model and back: the resize policy, the input mapping, the letterbox.

- `ResizePolicy` (`policy_from_config(ModelConfig)`): the scale a picture of any size gets (the
  paper's shorter side S capped at L, section 5.1, or a square) and the canvas it is padded into:
  a few bucket shapes, or each side up to a multiple of 32 ("tight"). Invalid settings: ValueError.
- `to_model_input(picture, policy)` -> (float32 `[h, w, 3]` 0-255, resized and padded at the
  bottom and right in the policy's pad colour; scale); `to_original(boxes, scale, original_hw)`:
  yxyx input pixels -> the picture's pixels (or 0..1), clipped to it. Training, evaluation, the
  SavedModel, `predict` and TensorBoard use this one pair.
- `letterbox(pixels, input_size, policy)` / `to_picture(...)`: the same for a fixed input (LiteRT
  and ONNX files): scale = min(the policy's, the fit), top left, uint8.
- `resize` (with boxes and an optional crop window: scale jitter) and `pad_to` underneath.
Sizes are (height, width) in pixels; everything runs in TensorFlow (eagerly, in `tf.data`, in the
SavedModel) on Python numbers or tensors. docs/training.md#image-scale says how buckets are chosen.
"""

import math

import numpy as np
import tensorflow as tf
from keras import ops

from keras_retina.modeling.anchors import SIZE_MULTIPLE
from keras_retina.ops import boxes as box_lib

POLICIES = ("shorter_side", "square")
CANVASES = ("buckets", "tight")
ROUNDINGS = ("round", "floor")
METHODS = ("bilinear", "pil_bilinear")
BUCKET_RATIOS = (1.0, 4.0 / 3.0, 3.0 / 2.0)  # COCO's photos are mostly 4:3 and 3:2
MAX_SIZE_RATIO = 5.0 / 3.0  # Detectron: 600 -> 1000, 800 -> 1333


def round_up(side, multiple=SIZE_MULTIPLE):
    """The smallest multiple of `multiple` >= side (ints or int tensors)."""
    return -(-side // multiple) * multiple


def default_max_size(image_size):
    """L for a shorter side S when none is given: round(5/3 S)."""
    return int(round(image_size * MAX_SIZE_RATIO))


class ResizePolicy:
    """The scale a picture gets and the canvas it is padded into (module docstring).

    Args:
      image_size: S (an int) for "shorter_side"; the square's side or (H, W) for "square".
      max_image_size: L for "shorter_side" (None: `default_max_size(S)`); unused by "square".
      policy: "shorter_side" or "square".
      pad_color: RGB 0-255 of the padding (black; converted torchvision / detectron2 models pad
        with the mean colour, which their normalisation maps to 0).
      rounding: resized sides rounded half up ("round": ours, detectron2's) or floored ("floor": torchvision's).
      method: "bilinear" (TensorFlow's and torchvision's, float result) or "pil_bilinear" (PIL's, as
        detectron2 resizes uint8 pictures: antialiased when shrinking, rounded to uint8).
      canvas: "buckets" (`buckets`: a few canvases by aspect ratio) or "tight" (shorter_side only: each
        side rounded up to 32, as torchvision and detectron2 pad). Batches are grouped by bucket either
        way. Invalid settings raise ValueError.
    """

    def __init__(self, image_size, max_image_size=None, policy="shorter_side", pad_color=(0.0, 0.0, 0.0),
                 rounding="round", canvas="buckets", *, method="bilinear"):
        if policy not in POLICIES:
            raise ValueError(f"resize={policy!r}: choose one of {', '.join(POLICIES)}.")
        if method not in METHODS:
            raise ValueError(f"resize_method={method!r}: choose one of {', '.join(METHODS)}.")
        self.method = method
        if rounding not in ROUNDINGS or canvas not in CANVASES:
            raise ValueError(f"rounding={rounding!r}, canvas={canvas!r}: choose round or floor, and one of "
                             f"{', '.join(CANVASES)}.")
        self.policy = policy
        self.rounding = rounding
        self.tight = canvas == "tight" and policy == "shorter_side"
        self.pad_color = tuple(float(c) for c in pad_color)
        if policy == "square":
            height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
            if min(height, width) <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
                raise ValueError(f"image_size={image_size!r}: with resize=square each side must be a positive "
                                 f"multiple of {SIZE_MULTIPLE} (the stride of C5); e.g. 512, 640 or 800.")
            self.size = (int(height), int(width))
            self.buckets = (self.size,)
            self.mixed_canvas = self.size
            return
        if not isinstance(image_size, int) or image_size <= 0:
            raise ValueError(f"image_size={image_size!r}: with resize=shorter_side it is the shorter side S, a "
                             f"positive int (paper: 600 or 800).")
        max_size = default_max_size(image_size) if max_image_size is None else int(max_image_size)
        if max_size < image_size:
            raise ValueError(f"max_image_size={max_size} is below image_size={image_size}: the longer side "
                             f"cap L must be at least the shorter side S.")
        self.size = (int(image_size), max_size)
        short = round_up(image_size)
        ratios = sorted({r for r in BUCKET_RATIOS if r * image_size < max_size} | {max_size / image_size})
        landscape = [(short, round_up(math.ceil(min(r * image_size, max_size) - 1e-6))) for r in ratios]
        landscape = sorted(set(landscape))
        portrait = [(w, h) for h, w in landscape if w != h]
        self.buckets = tuple(sorted(landscape + portrait, key=lambda hw: (hw[0] * hw[1], hw)))
        self.mixed_canvas = (round_up(max_size), round_up(max_size))

    @property
    def image_size(self):
        """S (shorter_side) or (H, W) (square)."""
        return self.size[0] if self.policy == "shorter_side" else self.size

    @property
    def max_image_size(self):
        return self.size[1] if self.policy == "shorter_side" else max(self.size)

    def scale(self, height, width, jitter=1.0):
        """Input pixels per picture pixel (float64 tensor: torchvision's arithmetic, whose floored
        sizes a float32 scale would miss by a pixel, e.g. 370 x 500 -> 800 x 1081) for a picture
        of height x width. `jitter` multiplies S (shorter_side; L stays the cap, Detectron's
        multi-scale training) or the whole scale (square)."""
        height, width = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
        jitter = tf.cast(jitter, tf.float64)
        if self.policy == "square":
            return tf.minimum(self.size[0] / height, self.size[1] / width) * jitter
        return tf.minimum(self.size[0] * jitter / tf.minimum(height, width),
                          self.size[1] / tf.maximum(height, width))

    def largest_canvas(self, height, width):
        """The largest canvas of the picture's orientation: a jittered picture is cropped to it."""
        if self.policy == "square":
            return tf.constant(self.size)
        short, long = round_up(self.size[0]), round_up(self.size[1])
        return tf.where(height > width, tf.constant([long, short]), tf.constant([short, long]))

    def bucket_index(self, height, width):
        """int32 index into `buckets` of the smallest canvas holding height x width, or
        len(buckets) when none does (the mixed canvas)."""
        buckets = tf.constant(self.buckets + (self.mixed_canvas,), tf.int32)
        fits = (buckets[:, 0] >= tf.cast(height, tf.int32)) & (buckets[:, 1] >= tf.cast(width, tf.int32))
        index = tf.range(len(self.buckets) + 1)
        # the first that fits (buckets are sorted by area); the mixed canvas holds every resized picture
        return tf.reduce_min(tf.where(fits, index, len(self.buckets)))

    def canvas(self, height, width):
        """int32 [2]: the canvas for content of height x width (`bucket_index`'s bucket, or each side
        rounded up to 32 with canvas="tight")."""
        if self.tight:
            return round_up(tf.cast(tf.stack([height, width]), tf.int32))
        buckets = tf.constant(self.buckets + (self.mixed_canvas,), tf.int32)
        return buckets[self.bucket_index(height, width)]

    def to_json(self):
        return {"resize": self.policy, "image_size": self.image_size, "max_image_size": self.max_image_size}

    def __repr__(self):
        return (f"ResizePolicy({self.policy}, image_size={self.image_size}, max_image_size={self.max_image_size}, "
                f"{len(self.buckets)} bucket(s))")


def policy_from_config(config):
    """The policy of a ModelConfig (or any object with image_size, max_image_size, resize and
    optionally pad_color, resize_rounding, canvas, resize_method)."""
    return ResizePolicy(config.image_size, config.max_image_size, config.resize,
                        getattr(config, "pad_color", (0.0, 0.0, 0.0)), getattr(config, "resize_rounding", "round"),
                        getattr(config, "canvas", "buckets"), method=getattr(config, "resize_method", "bilinear"))


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


def resize(image, boxes, scale, window=None, offset=None, rounding="round", *, method="bilinear"):
    """Scales `[H, W, C]` (uint8 or float) by `scale` (sides rounded as `rounding` says, pixels
    interpolated as `method` says: `transform.METHODS`); with `window` (h, w) and `offset`
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


def letterbox(pixels, input_size, policy):
    """uint8 `[h, w, 3]` picture -> (uint8 `[H, W, 3]` input, scale) for the model's `policy`:
    scale = min(the policy's, H / h, W / w), resized as the policy resizes, at the top left, padded
    with the policy's pad colour, rounded to uint8."""
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    scale = min(float(policy.scale(height, width)), input_size[0] / height, input_size[1] / width)
    resized, _ = resize(tf.convert_to_tensor(pixels), tf.zeros([0, 4]), scale,
                                      rounding=policy.rounding, method=policy.method)
    padded = pad_to(resized, input_size, policy.pad_color)
    return tf.cast(tf.round(tf.clip_by_value(padded, 0.0, 255.0)), tf.uint8).numpy(), scale


def to_picture(boxes, scale, input_size, picture_hw, rounding="round"):
    """`[D, 4]` boxes normalised to the input -> normalised to the picture of `picture_hw`
    (clipped to it); `scale` is `letterbox`'s, `rounding` the policy's."""
    pixels = np.asarray(boxes, np.float32) * np.array([*input_size, *input_size], np.float32)
    return np.asarray(to_original(pixels, scale, tuple(picture_hw), normalised=True, rounding=rounding))
