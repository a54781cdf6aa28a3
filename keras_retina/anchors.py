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


def anchors_per_location(num_scales=NUM_SCALES, aspect_ratios=ASPECT_RATIOS):
    return num_scales * len(aspect_ratios)


def generate_anchors(
    image_size,
    min_level=MIN_LEVEL,
    max_level=MAX_LEVEL,
    num_scales=NUM_SCALES,
    aspect_ratios=ASPECT_RATIOS,
    anchor_size=ANCHOR_SIZE,
):
    """All anchors of an image, in anchor order.

    Args:
      image_size: int or (height, width); sides multiples of 32.
      min_level, max_level: pyramid levels (3 and 7 in the paper).
      num_scales: scales per octave; scale i is 2^(i / num_scales).
      aspect_ratios: width / height ratios.
      anchor_size: base anchor side in units of the level's stride.

    Returns:
      dict level name ("P3".."P7") -> numpy float32 `[H_l * W_l * A, 4]`, yxyx
      pixels. Concatenating the values in level order gives `[A_total, 4]`
      (use `concat_anchors`).
    """
    height, width = validate_image_size(image_size)
    out = {}
    for level in range(min_level, max_level + 1):
        stride = 2**level
        rows, cols = feature_size(height, level), feature_size(width, level)
        cy = (np.arange(rows, dtype=np.float64) + 0.5) * stride
        cx = (np.arange(cols, dtype=np.float64) + 0.5) * stride
        cy, cx = np.meshgrid(cy, cx, indexing="ij")  # [rows, cols]
        half_sizes = []
        for scale_index in range(num_scales):
            side = anchor_size * stride * 2 ** (scale_index / num_scales)
            for ratio in aspect_ratios:
                half_sizes.append((side / math.sqrt(ratio) / 2, side * math.sqrt(ratio) / 2))
        half = np.asarray(half_sizes)  # [A, 2] (half height, half width)
        centers = np.stack([cy, cx], axis=-1)[:, :, None, :]  # [rows, cols, 1, 2]
        boxes = np.concatenate([centers - half, centers + half], axis=-1)  # [rows, cols, A, 4]
        out[level_name(level)] = boxes.reshape(-1, 4).astype(np.float32)
    return out


def concat_anchors(anchors_by_level):
    """dict level -> `[A_l, 4]` -> `[A_total, 4]` numpy float32, in level order."""
    return np.concatenate([anchors_by_level[k] for k in sorted(anchors_by_level, key=_level_key)], 0)


def num_anchors(image_size, min_level=MIN_LEVEL, max_level=MAX_LEVEL, num_scales=NUM_SCALES,
                aspect_ratios=ASPECT_RATIOS):
    """Total anchor count of an image (76,725 for 640x640 with the paper's defaults)."""
    height, width = validate_image_size(image_size)
    locations = sum(feature_size(height, lv) * feature_size(width, lv)
                    for lv in range(min_level, max_level + 1))
    return locations * anchors_per_location(num_scales, aspect_ratios)


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
