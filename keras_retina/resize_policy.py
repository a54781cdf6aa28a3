"""The resize policy: the scale a picture of any size gets, and the canvas it is padded into.

Policies (`ModelConfig.resize`):

- "shorter_side" (the paper's; section 5.1, Table 1e: "image scale (defined by the shorter
  image side)", Detectron's max size): scale = min(S / shorter side, L / longer side), so the
  shorter side becomes S unless the longer side would pass L. S = `image_size`,
  L = `max_image_size` (default round(5/3 S): 600 -> 1000, 800 -> 1333, as in Detectron).
- "square": scale = min(H / height, W / width), the longer side fitted into an H x W square
  (`image_size` int or (H, W)); every input has the same static shape (TPUs, XLA).

The resized picture sits at the top left of a canvas filled with `pad_color` (black unless
the model says otherwise); its sides are multiples of 32
(`SIZE_MULTIPLE`, the stride of C5, so the FPN's x2 upsampling lines up). Canvases come from
a small fixed set, the buckets, so a compiled step and TensorFlow's per-shape kernels see few
shapes:

- shorter_side: for aspect ratios r in BUCKET_RATIOS below L / S, and L / S itself, the
  landscape canvas (up32(S), up32(min(r S, L))) and its portrait transpose: 7 canvases at
  800/1333 (800x800, 800x1088, 800x1216, 800x1344 and the three portraits), 7 at 600/1000.
- square: one canvas, (H, W).

A picture goes to the smallest-area bucket it fits (`bucket_index`); a batch whose pictures
need different buckets (only with `--deterministic`, which batches in stream order) is padded
to the smallest bucket holding all of them, or to `mixed_canvas` (up32(L) x up32(L)) when
landscape and portrait pictures share it. All sizes are (height, width) in pixels; the
functions run on Python numbers and on TensorFlow tensors (inside `tf.data` and the graph).
"""

import math

import tensorflow as tf

from keras_retina.anchors import SIZE_MULTIPLE
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
    """One policy with its sizes (see module docstring).

    Args:
      image_size: S (an int) for "shorter_side"; the square's side or (H, W) for "square".
      max_image_size: L for "shorter_side" (None: `default_max_size(S)`); unused by "square".
      policy: "shorter_side" or "square".
      pad_color: RGB 0-255 of the padding (black; converted torchvision / detectron2 models pad
        with the mean colour, which their normalisation maps to 0).
      rounding: resized sides rounded half up ("round": ours, detectron2's `int(x + 0.5)`) or
        floored ("floor": torchvision's).
      method: "bilinear" (TensorFlow's and torchvision's interpolation, float result) or
        "pil_bilinear" (PIL's, as detectron2 resizes uint8 pictures: antialiased when shrinking,
        rounded to uint8); `input_mapping.resize` applies it.
      canvas: "buckets" (the bucket canvases above) or "tight" (shorter_side only: each side
        rounded up to 32, as torchvision and detectron2 pad; a batch to its largest picture).
        Batches are grouped by bucket either way.
    """

    def __init__(self, image_size, max_image_size=None, policy="shorter_side", pad_color=(0.0, 0.0, 0.0),
                 rounding="round", canvas="buckets", method="bilinear"):
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


def from_config(config):
    """The policy of a ModelConfig (or any object with image_size, max_image_size, resize and
    optionally pad_color, resize_rounding, canvas, resize_method)."""
    return ResizePolicy(config.image_size, config.max_image_size, config.resize,
                        getattr(config, "pad_color", (0.0, 0.0, 0.0)), getattr(config, "resize_rounding", "round"),
                        getattr(config, "canvas", "buckets"), getattr(config, "resize_method", "bilinear"))
