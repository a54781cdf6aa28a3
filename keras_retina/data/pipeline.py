"""Sources -> batches for training and evaluation: augment, resize/pad, label encoding.

Every function takes a source (`data.source`: COCO JSON, TFRecord, TFDS, or a user's
`tf.data.Dataset` of examples, wrapped) and reads its examples:

    image_id  int64 []          image     uint8 [H, W, 3] RGB
    boxes     float32 [N, 4]    yxyx pixels of the original image
    classes   int32 [N]         0..K-1    is_crowd bool [N]    area float32 [N]

Training (`train_dataset`): crowd boxes dropped (never positives), random
horizontal flip (the paper's only augmentation), optional scale jitter (random
resize in [min, max] x then a random crop / pad), the resize and padding of
`input_mapping` (aspect kept, the longer side to `image_size`), boxes checked
by `boxes.check_boxes` (only boxes it lets train stay; the rest get class -1),
then the model's `LabelEncoder` on each image,
all in parallel `map`s, batched and prefetched. Elements:
(images float32 [B, S, S, 3] 0-255, {"cls_targets" [B, A], "box_targets" [B, A, 4]}).

Evaluation (`eval_dataset`): the same resize/pad without randomness; elements
(images, meta) where meta carries `image_id`, `scale` (input pixels per
original pixel) and the padded ground truth (`boxes` in original pixels,
`classes`, `is_crowd`, `area`, padding class -1) for COCO evaluation.
"""

import tensorflow as tf

from keras_retina import anchors as anchor_lib
from keras_retina import boxes as box_lib
from keras_retina.data.source import as_source
from keras_retina.input_mapping import fit_scale, resize_and_pad, to_model_input


def _flip(image, boxes):
    width = tf.cast(tf.shape(image)[1], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, 4, axis=-1)
    return tf.image.flip_left_right(image), tf.stack([ymin, width - xmax, ymax, width - xmin], -1)


def _clip_and_keep(boxes, classes, size):
    """Boxes clipped to the input image; those `boxes.check_boxes` does not let train (no area
    inside, NaN/inf: zeroed, so nothing downstream sees them) get class -1 (padding)."""
    boxes, verdict = box_lib.check_boxes(boxes, size[0], size[1])
    return boxes, tf.where(box_lib.trainable(verdict), classes, -1)


def preprocess_for_training(example, image_size, flip=True, scale_range=(1.0, 1.0), seed=None):
    """One example -> (image float32 [S, S, 3], boxes [N, 4] input pixels, classes [N], -1 = dropped).

    `seed`: None (TensorFlow's stateful random ops) or an int `[2]` seed that fixes this
    example's flip, scale and crop (the `--deterministic` path)."""
    size = anchor_lib.image_hw(image_size)
    image, boxes = example["image"], example["boxes"]
    classes = tf.where(example["is_crowd"], -1, example["classes"])
    if seed is None:
        def uniform(shape, low=0.0, high=1.0, which=0):
            return tf.random.uniform(shape, low, high)
    else:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)

        def uniform(shape, low=0.0, high=1.0, which=0):
            return tf.random.stateless_uniform(shape, seeds[which], low, high)
    if flip:
        image, boxes = tf.cond(uniform([], which=0) < 0.5, lambda: _flip(image, boxes),
                               lambda: (image, boxes))
    scale = fit_scale(image, size)
    low, high = scale_range
    if (low, high) == (1.0, 1.0):
        image, boxes = resize_and_pad(image, boxes, size, scale)
    else:
        scale = scale * uniform([], low, high, which=1)
        scaled = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
        room = tf.maximum(scaled - tf.constant(size), 0)
        offset = tf.cast(tf.cast(room, tf.float32) * uniform([2], which=2), tf.int32)
        image, boxes = resize_and_pad(image, boxes, size, scale, offset)
    boxes, classes = _clip_and_keep(boxes, classes, size)
    return image, boxes, classes


def _training_transform(label_encoder, image_size, flip, scale_range, seed=None):
    def transform(i, example):
        image, boxes, classes = preprocess_for_training(
            example, image_size, flip, scale_range, seed=None if seed is None else tf.stack([seed, i]))
        return image, label_encoder(boxes, classes)

    return transform


def train_dataset(source, label_encoder, image_size, batch_size, flip=True, scale_range=(1.0, 1.0),
                  shuffle=True, seed=None, repeat=True):
    """A source -> an (optionally endless) dataset of encoded training batches, the source's
    examples reshuffled each pass (`data.source`: COCO JSON over the whole set before
    decoding; TFRecord and TFDS through a buffer of still-encoded records)."""
    ds = as_source(source).examples(shuffle=shuffle, seed=seed)
    if repeat:
        ds = ds.repeat()
    transform = _training_transform(label_encoder, image_size, flip, scale_range)
    ds = ds.map(lambda example: transform(None, example), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=seed is not None)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def deterministic_train_dataset(source, label_encoder, image_size, batch_size, seed, start_step=0,
                                flip=True, scale_range=(1.0, 1.0)):
    """`--deterministic` training batches: element i of the endless stream is a pure function
    of (seed, i) (`source.ordered_examples`), augmented with the stateless seed (seed, i), so a
    run resumed at any step sees exactly the batches an uninterrupted run sees from that step
    on. Bad files are left out when the source is read, so every element exists."""
    start = int(start_step) * int(batch_size)
    seed = tf.cast(seed, tf.int64)
    ds = as_source(source).ordered_examples(seed, start)
    # No ignore_errors here: a skipped element would shift every later batch and break the
    # resume guarantee, so an image that fails now (after the reader's checks) stops training.
    ds = ds.map(_training_transform(label_encoder, image_size, flip, scale_range, seed),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def preprocess_for_eval(example, image_size):
    """One example -> (image float32 [S, S, 3], meta dict) with no randomness."""
    size = anchor_lib.image_hw(image_size)
    image, scale = to_model_input(example["image"], size)
    meta = {
        "image_id": example["image_id"],
        "scale": scale,
        "original_size": tf.shape(example["image"])[:2],
        "boxes": example["boxes"],
        "classes": example["classes"],
        "is_crowd": example["is_crowd"],
        "area": example["area"],
    }
    return image, meta


def eval_dataset(source, image_size, batch_size):
    """A source -> batches of (images, meta); ground truth padded with class -1."""
    ds = as_source(source).examples().map(lambda e: preprocess_for_eval(e, image_size),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    size = anchor_lib.image_hw(image_size)
    return ds.padded_batch(
        batch_size,
        padded_shapes=([size[0], size[1], 3], {
            "image_id": [], "scale": [], "original_size": [2], "boxes": [None, 4],
            "classes": [None], "is_crowd": [None], "area": [None]}),
        padding_values=(0.0, {
            "image_id": tf.constant(-1, tf.int64), "scale": 0.0, "original_size": 0,
            "boxes": 0.0, "classes": -1, "is_crowd": False, "area": 0.0}),
    ).prefetch(tf.data.AUTOTUNE)
