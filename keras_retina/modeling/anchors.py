"""Anchor boxes for pyramid levels P3-P7, and the one definition of anchor order.

Paper section 4 ("Anchors", Table 1c): base size `anchor_size * 2^level` (32 .. 512 on P3 .. P7),
scales {2^0, 2^(1/3), 2^(2/3)} and aspect ratios (width / height) {0.5, 1, 2}: A = 9 per location.
An anchor of base size s, scale c and ratio r has height s*c/sqrt(r) and width s*c*sqrt(r).

Anchor order (every tensor indexed by anchor: label encoder targets, head outputs, decoder inputs):

    level (P3 first) -> row y -> column x -> scale (outer) -> aspect ratio (inner)

Level l has ceil(side / 2^l) rows and columns, location (y, x) centred at ((y + 0.5) * 2^l, (x + 0.5) * 2^l);
sides must be multiples of SIZE_MULTIPLE (32), else ValueError. `AnchorGenerator.by_level((height, width))`
-> {"P3".."P7": float32 `[H_l * W_l * A, 4]` yxyx pixels}, numpy (cached) for ints, tensors for int
tensors; `flatten_levels`: head outputs `[B, H_l, W_l, A * D]` -> `[B, A_total, D]` in this order.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_retina import renamed


class _TensorOps:
    """The numpy functions `level_anchors` uses, on tensors (sizes known only in the graph)."""

    arange = staticmethod(lambda n, dtype: tf.range(tf.cast(n, dtype), dtype=dtype))
    meshgrid = staticmethod(tf.meshgrid)
    stack = staticmethod(tf.stack)
    concatenate = staticmethod(lambda values, axis: tf.concat(values, axis))
    reshape = staticmethod(tf.reshape)
    float64 = staticmethod(lambda x: tf.cast(x, tf.float64))

LEVEL_NAMES = ("P3", "P4", "P5", "P6", "P7")

# Paper defaults (section 4, Table 1c).
MIN_LEVEL = 3
MAX_LEVEL = 7
NUM_SCALES = 3
ASPECT_RATIOS = (0.5, 1.0, 2.0)
ANCHOR_SIZE = 4.0
# Anchor geometries a ModelConfig names (`builder.anchor_generator`): ours (centre offset 0.5),
# detectron2's (offset 0) and torchvision's (`torchvision_anchors`).
GEOMETRIES = ("centered", "detectron2", "torchvision")


def level_name(level):
    return f"P{level}"


def config_input_size(input_size):
    """`input_size` as stored in layer configs: an int (square) or a [height, width] list."""
    if isinstance(input_size, (int, np.integer)):
        return int(input_size)
    return [int(side) for side in input_size]


def call_input_size(layer, given, fixed, renamed_arguments):
    """The input size a layer's call works at: `given` (or under its old name `image_size` in
    `renamed_arguments`), else the layer's `fixed` one; ValueError naming `layer` without either."""
    given = renamed.argument(renamed_arguments, "image_size", "input_size", given, f"{layer} call")
    renamed.no_others(renamed_arguments, f"{layer}.call")
    size = fixed if given is None else given
    if size is None:
        raise ValueError(f"{layer} needs the input's input_size (height, width): give it to the call or to the layer.")
    return size


SIZE_MULTIPLE = 32  # stride of C5


def validate_input_size(input_size):
    """(height, width) ints; raises ValueError unless both are positive multiples of 32."""
    height, width = static_hw(input_size) or (0, 0)
    if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(
            f"input_size={input_size!r}: each side must be a positive multiple of "
            f"{SIZE_MULTIPLE} (the stride of C5); e.g. 512, 640 or 800."
        )
    return height, width


def feature_size(side, level):
    """Rows (or columns) of pyramid level `level` for an image side: ceil(side / 2^level)
    (ints or int tensors)."""
    return -(-side // 2**level)


def static_hw(input_size):
    """(height, width) Python ints when `input_size` (an int, a pair, or an int tensor [2]) is
    known before the graph runs, else None."""
    if isinstance(input_size, (int, np.integer)):
        return int(input_size), int(input_size)
    if isinstance(input_size, (tuple, list)) and all(isinstance(s, (int, np.integer)) for s in input_size):
        return int(input_size[0]), int(input_size[1])
    value = tf.get_static_value(input_size) if tf.is_tensor(input_size) else None
    if value is None and isinstance(input_size, (tuple, list)):
        parts = [tf.get_static_value(s) for s in input_size]
        value = None if any(p is None for p in parts) else parts
    if value is None:
        return None
    return int(value[0]), int(value[1])


@keras.saving.register_keras_serializable(package="keras_retina")
class AnchorGenerator(keras.layers.Layer):
    """The anchor geometry: the one object the label encoder, decoder, model and coverage report ask.

    Args:
      min_level, max_level: pyramid levels (3 and 7 in the paper).
      num_scales: scales per octave; scale i is 2^(i / num_scales).
      aspect_ratios: width / height ratios.
      anchor_size: base anchor side in units of the level's stride.
      center_offset: location (y, x) is centred at ((y + offset) * stride, (x + offset) * stride):
        0.5 (ours: the cell's centre) or 0 (detectron2's and torchvision's: its top-left corner).

    `by_level(input_size)` -> {"P3".."P7": float32 `[H_l * W_l * A, 4]` yxyx pixels}; `anchors(input_size)`
    -> `[A_total, 4]`. Another geometry is a subclass overriding `level_anchors(level, height, width, xp)`
    with only `xp`'s arange, meshgrid, stack, concatenate, reshape, float64 and arithmetic (one formula
    for numpy and tensors); `torchvision_anchors` is one. Invalid settings raise ValueError.
    """

    def __init__(self, min_level=MIN_LEVEL, max_level=MAX_LEVEL, num_scales=NUM_SCALES,
                 aspect_ratios=ASPECT_RATIOS, anchor_size=ANCHOR_SIZE, center_offset=0.5, **kwargs):
        super().__init__(**kwargs)
        if not 1 <= min_level <= max_level or num_scales < 1 or not aspect_ratios or anchor_size <= 0:
            raise ValueError(f"AnchorGenerator needs 1 <= min_level <= max_level, num_scales >= 1, "
                             f"aspect ratios and anchor_size > 0; got {min_level}, {max_level}, "
                             f"{num_scales}, {aspect_ratios}, {anchor_size}.")
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.num_scales = int(num_scales)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.anchor_size = float(anchor_size)
        self.center_offset = float(center_offset)
        self._cache = _Cache()
        self.built = True  # no weights

    @property
    def anchors_per_location(self):
        """A: anchors at each location of every level (9 in the paper)."""
        return self.num_scales * len(self.aspect_ratios)

    def level_anchors(self, level, height, width, xp=np):
        """`[rows * cols * A, 4]` float64 yxyx pixels of one level of a `height` x `width` input,
        in anchor order; location (y, x) is centred at ((y + offset) * stride, (x + offset) *
        stride), stride = 2^level. `xp` is numpy (ints) or `_TensorOps` (int tensors): one formula
        for both."""
        stride = 2**level
        rows, cols = feature_size(height, level), feature_size(width, level)
        cy = (xp.arange(rows, dtype=np.float64) + self.center_offset) * stride
        cx = (xp.arange(cols, dtype=np.float64) + self.center_offset) * stride
        cy, cx = xp.meshgrid(cy, cx, indexing="ij")  # [rows, cols]
        half_sizes = []
        for scale_index in range(self.num_scales):
            side = self.anchor_size * stride * 2 ** (scale_index / self.num_scales)
            for ratio in self.aspect_ratios:
                half_sizes.append((side / math.sqrt(ratio) / 2, side * math.sqrt(ratio) / 2))
        half = np.asarray(half_sizes)  # [A, 2] (half height, half width)
        centers = xp.stack([cy, cx], axis=-1)[:, :, None, :]  # [rows, cols, 1, 2]
        return xp.reshape(xp.concatenate([centers - half, centers + half], axis=-1), (-1, 4))

    def by_level(self, input_size):
        """dict level name -> float32 `[H_l * W_l * A, 4]` for an input of `input_size` (an int,
        (height, width), or an int tensor [2]): numpy when the size is static, else tensors."""
        static = static_hw(input_size)
        if static is None:
            height, width = tf.cast(input_size[0], tf.int32), tf.cast(input_size[1], tf.int32)
            return {level_name(lv): tf.cast(self.level_anchors(lv, height, width, xp=_TensorOps), tf.float32)
                    for lv in range(self.min_level, self.max_level + 1)}
        height, width = validate_input_size(static)
        cache = self._cache.by_size
        if (height, width) not in cache:
            cache[height, width] = {
                level_name(lv): self.level_anchors(lv, height, width).astype(np.float32)
                for lv in range(self.min_level, self.max_level + 1)}
        return cache[height, width]

    def anchors(self, input_size):
        """`[A_total, 4]` float32 yxyx pixels, all levels in anchor order (numpy when static)."""
        return concat_anchors(self.by_level(input_size))

    def level_counts(self, input_size):
        """Anchors per level (ints for a static size, else int32 tensors), in level order."""
        static = static_hw(input_size)
        height, width = validate_input_size(static) if static else (input_size[0], input_size[1])
        return [feature_size(height, lv) * feature_size(width, lv) * self.anchors_per_location
                for lv in range(self.min_level, self.max_level + 1)]

    def num_anchors(self, input_size):
        """A_total for an input of `input_size` (76,725 at 640 x 640 with the paper's geometry)."""
        return sum(self.level_counts(input_size))

    def call(self, input_size):
        return self.by_level(input_size)

    def get_config(self):
        config = super().get_config()
        config.update(min_level=self.min_level, max_level=self.max_level, num_scales=self.num_scales,
                      aspect_ratios=list(self.aspect_ratios), anchor_size=self.anchor_size,
                      center_offset=self.center_offset)
        return config


class _Cache:
    """Anchors by image size, in a plain object: Keras and tf.train.Checkpoint do not track it."""

    def __init__(self):
        self.by_size = {}


def deserialize_generator(generator):
    """An AnchorGenerator, its serialized config, or None (the paper's geometry) -> a generator."""
    if generator is None:
        return AnchorGenerator()
    if isinstance(generator, dict):
        return keras.saving.deserialize_keras_object(generator)
    return generator


def generate_anchors(input_size=None, min_level=MIN_LEVEL, max_level=MAX_LEVEL, num_scales=NUM_SCALES,
                     aspect_ratios=ASPECT_RATIOS, anchor_size=ANCHOR_SIZE, **renamed_arguments):
    """All anchors of an input by level: `AnchorGenerator(...).by_level(input_size)`."""
    input_size = renamed.argument(renamed_arguments, "image_size", "input_size", input_size, "generate_anchors")
    renamed.no_others(renamed_arguments, "generate_anchors")
    return AnchorGenerator(min_level, max_level, num_scales, aspect_ratios, anchor_size).by_level(input_size)


def concat_anchors(anchors_by_level):
    """dict level -> `[A_l, 4]` -> `[A_total, 4]` float32 in level order (numpy stays numpy)."""
    levels = [anchors_by_level[k] for k in sorted(anchors_by_level, key=_level_key)]
    if all(isinstance(level, np.ndarray) for level in levels):
        return np.concatenate(levels, 0)
    return tf.concat(levels, 0)


def num_anchors(input_size=None, min_level=MIN_LEVEL, max_level=MAX_LEVEL, num_scales=NUM_SCALES,
                aspect_ratios=ASPECT_RATIOS, **renamed_arguments):
    """Total anchor count of an input (76,725 for 640x640 with the paper's defaults)."""
    input_size = renamed.argument(renamed_arguments, "image_size", "input_size", input_size, "num_anchors")
    renamed.no_others(renamed_arguments, "num_anchors")
    return AnchorGenerator(min_level, max_level, num_scales, aspect_ratios).num_anchors(input_size)


def flatten_levels(outputs_by_level, values_per_anchor):
    """Head outputs in anchor order.

    Args:
      outputs_by_level: dict level name -> `[B, H_l, W_l, A * D]`, channel
        index `a * D + d` for anchor a and value d.
      values_per_anchor: D (K for classification, 4 for boxes).

    Returns:
      `[B, A_total, D]`, levels concatenated in ascending order.
    """
    flat = [keras.layers.Reshape((-1, values_per_anchor))(outputs_by_level[key])
            for key in sorted(outputs_by_level, key=_level_key)]
    return ops.concatenate(flat, axis=1)


def _level_key(name):
    return int(name[1:])
