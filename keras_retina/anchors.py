"""Anchor boxes for pyramid levels P3-P7, and the one definition of anchor order.

Paper, section 4 ("Anchors"): anchors have areas 32^2 .. 512^2 on P3 .. P7
(base size `anchor_size * stride`, with anchor_size = 4 and stride = 2^level),
three aspect ratios {1:2, 1:1, 2:1} and three scales {2^0, 2^(1/3), 2^(2/3)}
per level: A = 9 anchors per location (Table 1c).

Aspect ratio is width / height: 0.5 is a tall box (w:h = 1:2), 2.0 a wide one.
An anchor of base size s, scale c and ratio r has height s*c/sqrt(r) and width
s*c*sqrt(r), so its area is (s*c)^2 for every ratio.

Anchor order (the layout every tensor indexed by anchor follows: the label
encoder's targets, the heads' flattened outputs and the decoder's inputs):

    level (P3 first) -> row y -> column x -> scale (outer) -> aspect ratio (inner)

i.e. anchor index within a location is `scale_index * len(aspect_ratios) +
ratio_index`. This is the Model Garden's order (`official.vision.ops.anchor`),
so its targets map onto ours without permutation. A head's conv output
`[B, H, W, A * D]` becomes `[B, H * W * A, D]` by a plain reshape
(`flatten_levels`), which is exactly this order.

The centre of location (y, x) on level l is ((y + 0.5) * stride, (x + 0.5) * stride)
pixels, stride = 2^l. Level l has ceil(side / 2^l) rows and columns, which is
what the network's stride-2 'same' convolutions produce. Image sides must be
multiples of 32 (the stride of C5) so the FPN's top-down x2 upsampling lines up
exactly; P6 and P7 then round up (800 px: P6 13 x 13, P7 7 x 7), and their
last anchors are centred up to half a stride beyond the image edge.
"""

import math

import keras
import numpy as np
from keras import ops

LEVEL_NAMES = ("P3", "P4", "P5", "P6", "P7")

# Paper defaults (section 4, Table 1c).
MIN_LEVEL = 3
MAX_LEVEL = 7
NUM_SCALES = 3
ASPECT_RATIOS = (0.5, 1.0, 2.0)
ANCHOR_SIZE = 4.0


def level_name(level):
    return f"P{level}"


def image_hw(image_size):
    """`image_size` as an int (square) or (height, width) -> (height, width) ints."""
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    height, width = image_size
    return int(height), int(width)


def config_image_size(image_size):
    """`image_size` as stored in layer configs: an int (square) or a [height, width] list."""
    if isinstance(image_size, (int, np.integer)):
        return int(image_size)
    return [int(side) for side in image_size]


SIZE_MULTIPLE = 32  # stride of C5


def validate_image_size(image_size):
    """(height, width) ints; raises ValueError unless both are positive multiples of 32."""
    height, width = image_hw(image_size)
    if height <= 0 or width <= 0 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(
            f"image_size={image_size!r}: each side must be a positive multiple of "
            f"{SIZE_MULTIPLE} (the stride of C5); e.g. 512, 640 or 800."
        )
    return height, width


def feature_size(side, level):
    """Rows (or columns) of pyramid level `level` for an image side: ceil(side / 2^level)."""
    return -(-side // 2**level)


@keras.saving.register_keras_serializable(package="keras_retina")
class AnchorGenerator(keras.layers.Layer):
    """The anchor geometry: the one object the label encoder, the decoder, the model and the
    anchor-coverage report ask for anchors.

    Args:
      min_level, max_level: pyramid levels (3 and 7 in the paper).
      num_scales: scales per octave; scale i is 2^(i / num_scales).
      aspect_ratios: width / height ratios.
      anchor_size: base anchor side in units of the level's stride.

    `by_level(image_size)` -> dict "P3".."P7" -> numpy float32 `[H_l * W_l * A, 4]` yxyx
    pixels in anchor order (module docstring); `anchors(image_size)` -> `[A_total, 4]`. Both
    are computed once per image size. Another geometry (centre offset, rounding) is a
    subclass that overrides `level_anchors`.
    """

    def __init__(self, min_level=MIN_LEVEL, max_level=MAX_LEVEL, num_scales=NUM_SCALES,
                 aspect_ratios=ASPECT_RATIOS, anchor_size=ANCHOR_SIZE, **kwargs):
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
        self._cache = _Cache()
        self.built = True  # no weights

    @property
    def anchors_per_location(self):
        """A: anchors at each location of every level (9 in the paper)."""
        return self.num_scales * len(self.aspect_ratios)

    def level_anchors(self, level, rows, cols):
        """`[rows * cols * A, 4]` float64 yxyx pixels of one level, in anchor order; location
        (y, x) is centred at ((y + 0.5) * stride, (x + 0.5) * stride)."""
        stride = 2**level
        cy = (np.arange(rows, dtype=np.float64) + 0.5) * stride
        cx = (np.arange(cols, dtype=np.float64) + 0.5) * stride
        cy, cx = np.meshgrid(cy, cx, indexing="ij")  # [rows, cols]
        half_sizes = []
        for scale_index in range(self.num_scales):
            side = self.anchor_size * stride * 2 ** (scale_index / self.num_scales)
            for ratio in self.aspect_ratios:
                half_sizes.append((side / math.sqrt(ratio) / 2, side * math.sqrt(ratio) / 2))
        half = np.asarray(half_sizes)  # [A, 2] (half height, half width)
        centers = np.stack([cy, cx], axis=-1)[:, :, None, :]  # [rows, cols, 1, 2]
        return np.concatenate([centers - half, centers + half], axis=-1).reshape(-1, 4)

    def by_level(self, image_size):
        """dict level name -> numpy float32 `[H_l * W_l * A, 4]` for an input of `image_size`."""
        height, width = validate_image_size(image_size)
        cache = self._cache.by_size
        if (height, width) not in cache:
            cache[height, width] = {
                level_name(lv): self.level_anchors(lv, feature_size(height, lv),
                                                   feature_size(width, lv)).astype(np.float32)
                for lv in range(self.min_level, self.max_level + 1)}
        return cache[height, width]

    def anchors(self, image_size):
        """`[A_total, 4]` numpy float32, yxyx pixels, all levels in anchor order."""
        return concat_anchors(self.by_level(image_size))

    def num_anchors(self, image_size):
        """A_total for an input of `image_size` (76,725 at 640 x 640 with the paper's geometry)."""
        height, width = validate_image_size(image_size)
        locations = sum(feature_size(height, lv) * feature_size(width, lv)
                        for lv in range(self.min_level, self.max_level + 1))
        return locations * self.anchors_per_location

    def call(self, image_size):
        return self.by_level(image_size)

    def get_config(self):
        config = super().get_config()
        config.update(min_level=self.min_level, max_level=self.max_level, num_scales=self.num_scales,
                      aspect_ratios=list(self.aspect_ratios), anchor_size=self.anchor_size)
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


def generate_anchors(image_size, min_level=MIN_LEVEL, max_level=MAX_LEVEL, num_scales=NUM_SCALES,
                     aspect_ratios=ASPECT_RATIOS, anchor_size=ANCHOR_SIZE):
    """All anchors of an image by level: `AnchorGenerator(...).by_level(image_size)`."""
    return AnchorGenerator(min_level, max_level, num_scales, aspect_ratios, anchor_size).by_level(image_size)


def concat_anchors(anchors_by_level):
    """dict level -> `[A_l, 4]` -> `[A_total, 4]` numpy float32, in level order."""
    return np.concatenate([anchors_by_level[k] for k in sorted(anchors_by_level, key=_level_key)], 0)


def num_anchors(image_size, min_level=MIN_LEVEL, max_level=MAX_LEVEL, num_scales=NUM_SCALES,
                aspect_ratios=ASPECT_RATIOS):
    """Total anchor count of an image (76,725 for 640x640 with the paper's defaults)."""
    return AnchorGenerator(min_level, max_level, num_scales, aspect_ratios).num_anchors(image_size)


def flatten_levels(outputs_by_level, values_per_anchor):
    """Head outputs in anchor order.

    Args:
      outputs_by_level: dict level name -> `[B, H_l, W_l, A * D]`, channel
        index `a * D + d` for anchor a and value d.
      values_per_anchor: D (K for classification, 4 for boxes).

    Returns:
      `[B, A_total, D]`, levels concatenated in ascending order.
    """
    flat = []
    for key in sorted(outputs_by_level, key=_level_key):
        x = outputs_by_level[key]
        _, height, width, channels = x.shape  # static: the model input size is fixed
        flat.append(ops.reshape(x, (-1, height * width * channels // values_per_anchor,
                                    values_per_anchor)))
    return ops.concatenate(flat, axis=1)


def _level_key(name):
    return int(name[1:])
