"""Training augmentations beyond the paper's flip and scale jitter, each exact for boxes.

`AUGMENTATIONS` names the settings; `settings(preset, **given)` resolves them from a preset
(`PRESETS`: "none" is the paper's recipe, "photos" for pictures with an up and a down,
"overhead" for aerial, satellite and microscopy pictures, which have none) and the values given.
`augment(image, boxes, settings, uniform)` applies them to one picture before it is resized:

- rotate90: with this probability, a quarter turn k = 1..3 (each equally likely); boxes turn
  with the picture;
- vertical_flip: upside down with this probability;
- color: brightness, contrast and saturation scaled by a factor in [1 - color, 1 + color], hue
  shifted by up to color / 10 of a turn (0: none);
- zoom_out: with this probability, the picture is placed at a random spot of a canvas up to twice
  its sides filled with its mean colour (objects become smaller once resized);
- crop: with this probability, a random window of 50-100% of each side is kept (objects become
  larger); boxes are clipped to it, and a box with no area inside is dropped by the pipeline's
  box rule (`ops.boxes.check_boxes`).

image uint8/float `[H, W, 3]`, boxes float32 `[N, 4]` yxyx pixels of it -> (float32 image 0-255,
boxes of the augmented picture, unclipped). `uniform(shape, low, high, which)` draws the random
numbers (stateful, or stateless for --deterministic: `which` picks the stream).
"""

import tensorflow as tf

AUGMENTATIONS = ("rotate90", "vertical_flip", "color", "zoom_out", "crop")
PRESETS = {
    "none": {"rotate90": 0.0, "vertical_flip": 0.0, "color": 0.0, "zoom_out": 0.0, "crop": 0.0},
    "photos": {"rotate90": 0.0, "vertical_flip": 0.0, "color": 0.3, "zoom_out": 0.2, "crop": 0.3},
    "overhead": {"rotate90": 0.75, "vertical_flip": 0.5, "color": 0.3, "zoom_out": 0.2, "crop": 0.3},
}
STREAMS = 11  # random streams `augment` uses (`which` 0..10)


def settings(preset="none", **given):
    """The augmentation settings of `preset` with the given (not None) values on top."""
    resolved = dict(PRESETS[preset])
    resolved.update({name: value for name, value in given.items() if value is not None})
    return resolved


def active(augmentation):
    return bool(augmentation) and any(augmentation[name] for name in AUGMENTATIONS)


def _rotate(image, boxes, quarter_turns):
    """Counter-clockwise quarter turns of the picture and its boxes (tf.image.rot90's direction)."""
    height, width = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, 4, axis=-1)
    turned = [
        lambda: (image, boxes),
        lambda: (tf.image.rot90(image, 1), tf.stack([width - xmax, ymin, width - xmin, ymax], -1)),
        lambda: (tf.image.rot90(image, 2),
                 tf.stack([height - ymax, width - xmax, height - ymin, width - xmin], -1)),
        lambda: (tf.image.rot90(image, 3), tf.stack([xmin, height - ymax, xmax, height - ymin], -1)),
    ]
    image, boxes = tf.switch_case(quarter_turns, turned)
    image.set_shape([None, None, 3])
    return image, boxes


def _vertical_flip(image, boxes):
    height = tf.cast(tf.shape(image)[0], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, 4, axis=-1)
    return tf.image.flip_up_down(image), tf.stack([height - ymax, xmin, height - ymin, xmax], -1)


def _color(image, strength, uniform):
    """Brightness, contrast, saturation and hue jitter on a float 0-255 picture."""
    x = image / 255.0
    x = x * uniform([], 1.0 - strength, 1.0 + strength, which=3)
    mean = tf.reduce_mean(x)
    x = (x - mean) * uniform([], 1.0 - strength, 1.0 + strength, which=4) + mean
    x = tf.clip_by_value(x, 0.0, 1.0)
    x = tf.image.adjust_saturation(x, uniform([], 1.0 - strength, 1.0 + strength, which=5))
    x = tf.image.adjust_hue(x, uniform([], -strength / 10, strength / 10, which=6))
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def _zoom_out(image, boxes, uniform):
    shape = tf.shape(image)
    size = tf.cast(shape[:2], tf.float32)
    factor = uniform([], 1.0, 2.0, which=7)
    canvas = tf.cast(tf.math.ceil(size * factor), tf.int32)
    offset = tf.cast(tf.cast(canvas - shape[:2], tf.float32) * uniform([2], which=8), tf.int32)
    mean = tf.reduce_mean(image, axis=[0, 1])
    padded = tf.image.pad_to_bounding_box(image - mean, offset[0], offset[1], canvas[0], canvas[1]) + mean
    shift = tf.cast(tf.stack([offset[0], offset[1], offset[0], offset[1]]), tf.float32)
    return padded, boxes + shift


def _crop(image, boxes, uniform):
    shape = tf.shape(image)
    size = tf.cast(shape[:2], tf.float32)
    window = tf.maximum(tf.cast(size * uniform([2], 0.5, 1.0, which=9), tf.int32), 1)
    offset = tf.cast(tf.cast(shape[:2] - window, tf.float32) * uniform([2], which=10), tf.int32)
    cropped = image[offset[0]:offset[0] + window[0], offset[1]:offset[1] + window[1]]
    shift = tf.cast(tf.stack([offset[0], offset[1], offset[0], offset[1]]), tf.float32)
    return cropped, boxes - shift


def augment(image, boxes, augmentation, uniform):
    image = tf.cast(image, tf.float32)
    if augmentation["rotate90"]:
        # u < p: quarter turns 1..3 spread evenly over [0, p); otherwise none
        draw = uniform([], which=0)
        turns = tf.where(draw < augmentation["rotate90"],
                         1 + tf.cast(draw / augmentation["rotate90"] * 3.0, tf.int32) % 3, 0)
        image, boxes = _rotate(image, boxes, turns)
    if augmentation["vertical_flip"]:
        image, boxes = tf.cond(uniform([], which=1) < augmentation["vertical_flip"],
                               lambda: _vertical_flip(image, boxes), lambda: (image, boxes))
    if augmentation["color"]:
        image = _color(image, float(augmentation["color"]), uniform)
    if augmentation["zoom_out"]:
        image, boxes = tf.cond(uniform([], which=2) < augmentation["zoom_out"],
                               lambda: _zoom_out(image, boxes, uniform), lambda: (image, boxes))
    if augmentation["crop"]:
        image, boxes = tf.cond(uniform([], which=2) > 1.0 - augmentation["crop"],
                               lambda: _crop(image, boxes, uniform), lambda: (image, boxes))
    image.set_shape([None, None, 3])
    return image, boxes
