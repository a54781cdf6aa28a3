"""Sources -> batches for training and evaluation: augment, resize, bucket, encode labels.

Inputs: a source (`data.source`, whose examples hold image uint8 [H, W, 3] RGB, boxes float32
[N, 4] yxyx pixels of the original image, classes int32 [N] 0..K-1, is_crowd, area, image_id)
and the model's resize policy (`modeling.transform.ResizePolicy`).

- `train_dataset(source, label_encoder, policy, batch_size, ...)`: crowd boxes dropped, random
  horizontal flip, optional scale jitter (paper 5.2), resize, boxes checked by
  `ops.boxes.check_boxes` (the rest get class -1), batches of one aspect-ratio bucket padded to
  its canvas: (images float32 [B, H_b, W_b, 3] 0-255, {"cls_targets" [B, A_b], "box_targets"
  [B, A_b, 4]}), (H_b, W_b) one of `policy.buckets`.
- `deterministic_train_dataset(...)` (--deterministic): batch k is a pure function of (seed, k).
- `eval_dataset(source, policy, batch_size)`: (images, meta) batches of one bucket, no randomness;
  meta: image_id, scale, picture_size, original_size, ground truth in original pixels (class -1 pads).
"""

import tensorflow as tf

from keras_retina.data import augment
from keras_retina.data.source import as_source
from keras_retina.modeling.transform import pad_to, resize, resized_size
from keras_retina.ops import boxes as box_lib


def _flip(image, boxes):
    width = tf.cast(tf.shape(image)[1], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, 4, axis=-1)
    return tf.image.flip_left_right(image), tf.stack([ymin, width - xmax, ymax, width - xmin], -1)


def _clip_and_keep(boxes, classes, size):
    """Boxes clipped to the resized picture; those `ops.boxes.check_boxes` does not let train (no
    area inside, NaN/inf: zeroed, so nothing downstream sees them) get class -1 (padding)."""
    boxes, verdict = box_lib.check_boxes(boxes, size[0], size[1])
    return boxes, tf.where(box_lib.trainable(verdict), classes, -1)


def preprocess_for_training(example, policy, flip=True, scale_range=(1.0, 1.0), seed=None, augmentation=None):
    """One example -> (image float32 [h, w, 3] resized, not padded; boxes [N, 4] input pixels;
    classes [N], -1 = dropped).

    `augmentation`: `data.augment` settings applied first (None: none). `seed`: None
    (TensorFlow's stateful random ops) or an int `[2]` seed that fixes this example's
    augmentation, flip, scale and crop (the `--deterministic` path)."""
    image, boxes = example["image"], example["boxes"]
    classes = tf.where(example["is_crowd"], -1, example["classes"])
    if seed is None:
        def uniform(shape, low=0.0, high=1.0, which=0):
            return tf.random.uniform(shape, low, high)

        augment_uniform = uniform
    else:
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
        augment_seeds = tf.random.experimental.stateless_split(seeds[3], augment.STREAMS)

        def uniform(shape, low=0.0, high=1.0, which=0):
            return tf.random.stateless_uniform(shape, seeds[which], low, high)

        def augment_uniform(shape, low=0.0, high=1.0, which=0):
            return tf.random.stateless_uniform(shape, augment_seeds[which], low, high)
    if augment.active(augmentation):
        image, boxes = augment.augment(image, boxes, augmentation, augment_uniform)
    if flip:
        image, boxes = tf.cond(uniform([], which=0) < 0.5, lambda: _flip(image, boxes),
                               lambda: (image, boxes))
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    low, high = scale_range
    if (low, high) == (1.0, 1.0):
        image, boxes = resize(image, boxes, policy.scale(height, width), rounding=policy.rounding,
                              method=policy.method)
    else:
        scale = policy.scale(height, width, jitter=uniform([], low, high, which=1))
        window = policy.largest_canvas(height, width)
        room = tf.maximum(resized_size(height, width, scale, policy.rounding) - window, 0)
        offset = tf.cast(tf.cast(room, tf.float32) * uniform([2], which=2), tf.int32)
        image, boxes = resize(image, boxes, scale, window, offset, policy.rounding, method=policy.method)
    boxes, classes = _clip_and_keep(boxes, classes, tf.shape(image)[:2])
    return image, boxes, classes


def _to_canvas(policy, images):
    """A batch padded to the canvas of its largest picture (static for a one-bucket policy),
    padding in `policy.pad_color`: `_bucketed` batched the pictures shifted by -pad_color with
    zero padding; the shift is undone here."""
    if len(policy.buckets) == 1 and not policy.tight:
        canvas = policy.buckets[0]
    else:
        shape = tf.shape(images)
        canvas = policy.canvas(shape[1], shape[2])
    images = pad_to(images, canvas)
    return images + tf.constant(policy.pad_color, images.dtype) if any(policy.pad_color) else images


def _bucketed(ds, policy, batch_size, padded_shapes, padding_values, grouped, *, drop_remainder):
    """Padded batches of one bucket each (`grouped`, several buckets) or in stream order; the
    pictures (first element) shifted by -pad_color (`_to_canvas` shifts them back)."""
    if any(policy.pad_color):
        color = tf.constant(policy.pad_color, tf.float32)
        ds = ds.map(lambda image, *rest: (image - color, *rest), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)

    def batch(elements):
        return elements.padded_batch(batch_size, padded_shapes, padding_values, drop_remainder=drop_remainder)

    if not grouped or (len(policy.buckets) == 1 and not policy.tight):
        return batch(ds)

    def key(image, *_):
        return tf.cast(policy.bucket_index(tf.shape(image)[0], tf.shape(image)[1]), tf.int64)

    # One bucket per batch, as detectron2 groups by orientation; one traced training step serves every bucket.
    return ds.group_by_window(key, lambda _, window: batch(window), window_size=batch_size)


def _encode_batch(label_encoder, policy):
    def encode(images, boxes, classes):
        images = _to_canvas(policy, images)
        size = tf.shape(images)[1:3]
        targets = tf.map_fn(lambda bc: label_encoder(bc[0], bc[1], input_size=size), (boxes, classes),
                            fn_output_signature={"cls_targets": tf.TensorSpec([None], tf.int32),
                                                 "box_targets": tf.TensorSpec([None, 4], tf.float32)})
        return images, targets

    return encode


_TRAIN_PADDING = (([None, None, 3], [None, 4], [None]), (0.0, 0.0, -1))


def _training_batches(ds, policy, label_encoder, batch_size, grouped):
    shapes, values = _TRAIN_PADDING
    ds = _bucketed(ds, policy, batch_size, shapes, values, grouped, drop_remainder=True)
    # In order: workers of a multi-worker run shard this stream by position.
    return ds.map(_encode_batch(label_encoder, policy), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True).prefetch(tf.data.AUTOTUNE)


def _training_transform(policy, flip, scale_range, seed=None, augmentation=None):
    def transform(i, example):
        return preprocess_for_training(example, policy, flip, scale_range,
                                       seed=None if seed is None else tf.stack([seed, i]), augmentation=augmentation)

    return transform


def train_dataset(source, label_encoder, policy, batch_size, flip=True, scale_range=(1.0, 1.0),
                  *, shuffle=True, seed=None, repeat=True, augmentation=None):
    """A source -> an (optionally endless) dataset of encoded training batches grouped by
    bucket, the source's examples reshuffled each pass (`data.source`: COCO JSON over the
    whole set before decoding; TFRecord and TFDS through a buffer of still-encoded records)."""
    ds = as_source(source).examples(shuffle=shuffle, seed=seed)
    if repeat:
        ds = ds.repeat()
    transform = _training_transform(policy, flip, scale_range, augmentation=augmentation)
    ds = ds.map(lambda example: transform(None, example), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=seed is not None)
    return _training_batches(ds, policy, label_encoder, batch_size, grouped=True)


def deterministic_train_dataset(source, label_encoder, policy, batch_size, seed, start_step=0,
                                *, flip=True, scale_range=(1.0, 1.0), augmentation=None):
    """`--deterministic` training batches: element i of the endless stream is a pure function
    of (seed, i) (`source.ordered_examples`), augmented with the stateless seed (seed, i), and
    batch k holds elements kB .. kB + B - 1, so a run resumed at any step sees exactly the
    batches an uninterrupted run sees from that step on. Bad files are left out when the
    source is read, so every element exists."""
    start = int(start_step) * int(batch_size)
    seed = tf.cast(seed, tf.int64)
    ds = as_source(source).ordered_examples(seed, start)
    # No ignore_errors here: a skipped element would shift every later batch and break the
    # resume guarantee, so an image that fails now (after the reader's checks) stops training.
    ds = ds.map(_training_transform(policy, flip, scale_range, seed, augmentation),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _training_batches(ds, policy, label_encoder, batch_size, grouped=False)


def preprocess_for_eval(example, policy):
    """One example -> (image float32 [h, w, 3] resized, not padded; meta dict), no randomness."""
    scale = policy.scale(tf.shape(example["image"])[0], tf.shape(example["image"])[1])
    image, _ = resize(example["image"], tf.zeros([0, 4]), scale, rounding=policy.rounding, method=policy.method)
    meta = {
        "image_id": example["image_id"],
        "scale": tf.cast(scale, tf.float32),
        "picture_size": tf.shape(image)[:2],
        "original_size": tf.shape(example["image"])[:2],
        "boxes": example["boxes"],
        "classes": example["classes"],
        "is_crowd": example["is_crowd"],
        "area": example["area"],
    }
    return image, meta


def eval_dataset(source, policy, batch_size):
    """A source -> batches of (images, meta) of one bucket each (the last batch of a bucket may
    be smaller), padded to its canvas; ground truth padded with class -1."""
    ds = as_source(source).examples().map(lambda e: preprocess_for_eval(e, policy),
                                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    shapes = ([None, None, 3], {"image_id": [], "scale": [], "picture_size": [2], "original_size": [2],
                                "boxes": [None, 4],
                                "classes": [None], "is_crowd": [None], "area": [None]})
    values = (0.0, {"image_id": tf.constant(-1, tf.int64), "scale": 0.0, "picture_size": 1, "original_size": 0,
                    "boxes": 0.0,
                    "classes": -1, "is_crowd": False, "area": 0.0})
    ds = _bucketed(ds, policy, batch_size, shapes, values, grouped=True, drop_remainder=False)
    return ds.map(lambda images, meta: (_to_canvas(policy, images), meta),
                  num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
