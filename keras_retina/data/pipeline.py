"""Examples -> batches for training and evaluation: augment, resize/pad, label encoding.

Every reader (`coco_json`, `tfds_coco`, `tfrecord`) yields the same example:

    image_id  int64 []          image     uint8 [H, W, 3] RGB
    boxes     float32 [N, 4]    yxyx pixels of the original image
    classes   int32 [N]         0..K-1    is_crowd bool [N]    area float32 [N]

Training (`train_dataset`): crowd boxes dropped (never positives), random
horizontal flip (the paper's only augmentation), optional scale jitter (random
resize in [min, max] x then a random crop / pad), aspect-preserving resize so
the longer side is `image_size`, zero padding at the bottom/right to
`image_size` x `image_size`, then the model's `LabelEncoder` on each image,
all in parallel `map`s, batched and prefetched. Elements:
(images float32 [B, S, S, 3] 0-255, {"cls_targets" [B, A], "box_targets" [B, A, 4]}).

Evaluation (`eval_dataset`): the same resize/pad without randomness; elements
(images, meta) where meta carries `image_id`, `scale` (input pixels per
original pixel) and the padded ground truth (`boxes` in original pixels,
`classes`, `is_crowd`, `area`, padding class -1) for COCO evaluation.
"""

import tensorflow as tf

from keras_retina import anchors as anchor_lib


def resize_and_pad(image, boxes, size, scale, offset=None):
    """Resizes by `scale`, crops at `offset` (y, x) if given, pads to `size` (height, width).

    image uint8/float `[H, W, 3]`, boxes `[N, 4]` yxyx pixels -> float32 `[size, 3]` 0-255,
    boxes in the new pixels. The one resize/pad of the project: training, evaluation and the
    exported serving graph all use it.
    """
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    new_hw = tf.maximum(tf.cast(tf.round(tf.stack([height, width]) * scale), tf.int32), 1)
    image = tf.image.resize(tf.cast(image, tf.float32), new_hw, method="bilinear")
    boxes = boxes * scale
    if offset is not None:
        image = image[offset[0]:offset[0] + size[0], offset[1]:offset[1] + size[1]]
        shift = tf.cast(tf.stack([offset[0], offset[1], offset[0], offset[1]]), tf.float32)
        boxes = boxes - shift
    image = tf.image.pad_to_bounding_box(image, 0, 0, size[0], size[1])
    image = tf.clip_by_value(image, 0.0, 255.0)
    return image, boxes


def fit_scale(image, size):
    """Scale that fits the whole image into `size` (height, width) keeping its aspect."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    return tf.minimum(size[0] / shape[0], size[1] / shape[1])


def _flip(image, boxes):
    width = tf.cast(tf.shape(image)[1], tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes, 4, axis=-1)
    return tf.image.flip_left_right(image), tf.stack([ymin, width - xmax, ymax, width - xmin], -1)


def _clip_and_keep(boxes, classes, size):
    """Clips boxes to the input image; boxes left with no area, and boxes with a NaN or inf
    coordinate (zeroed, so nothing downstream sees them), get class -1 (padding)."""
    limits = tf.cast(tf.stack([size[0], size[1], size[0], size[1]]), tf.float32)
    finite = tf.reduce_all(tf.math.is_finite(boxes), axis=-1)
    boxes = tf.where(finite[:, None], boxes, 0.0)
    boxes = tf.clip_by_value(boxes, 0.0, limits)
    keep = tf.logical_and(boxes[:, 2] > boxes[:, 0], boxes[:, 3] > boxes[:, 1])
    return boxes, tf.where(keep, classes, -1)


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


SHUFFLE_BUFFER = 1000  # examples (TFRecord/TFDS: still-encoded records) shuffled at a time


def train_dataset(examples, label_encoder, image_size, batch_size, flip=True,
                  scale_range=(1.0, 1.0), shuffle_buffer=SHUFFLE_BUFFER, seed=None, repeat=True):
    """Examples -> an (optionally infinite) dataset of encoded training batches.

    Shuffling: a COCO JSON reader's dataset is reshuffled over the whole set before decoding;
    TFRecord and TFDS records through a `shuffle_buffer` of still-encoded records; other
    datasets through a `shuffle_buffer` of decoded examples."""

    def transform(example):
        image, boxes, classes = preprocess_for_training(example, image_size, flip, scale_range)
        return image, label_encoder(boxes, classes)

    ds = examples
    source = getattr(examples, "coco_source", None)
    stream = getattr(examples, "record_stream", None)
    if shuffle_buffer and source is not None:
        # Shuffle the small records of the whole set, then decode: no buffer of decoded images.
        ds = source.dataset(shuffle=True, seed=seed)
    elif shuffle_buffer and stream is not None:  # a buffer of encoded bytes, not of pixels
        ds = stream.examples(examples.skip_bad_examples, shuffle_buffer=shuffle_buffer, seed=seed)
    elif shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def deterministic_train_dataset(source, label_encoder, image_size, batch_size, seed, start_step=0,
                                flip=True, scale_range=(1.0, 1.0), shuffle_buffer=SHUFFLE_BUFFER):
    """`--deterministic` training batches: element i of the endless stream is a pure function
    of (seed, i), so a run resumed at any step sees exactly the batches an uninterrupted run
    sees from that step on.

    Element i belongs to epoch e = i // N and is augmented with the stateless seed (seed, i).
    Which example it is:
    - random access (`num_examples`, `example_at(index)`: the COCO JSON reader): example
      `index_shuffle(i mod N)` of the permutation seeded by (seed, e); a resumed run reads
      none of the earlier ones.
    - a `records.RecordStream` (TFRecord, TFDS; `num_examples` counted up front): the
      (i mod N)-th record of the epoch's seeded `shuffle_buffer` shuffle of the stream; a
      resumed run reads (not decodes) the epoch's records up to its position again.
    Bad files are left out when the source is read, so every element exists.
    """
    count = source.num_examples
    start = int(start_step) * int(batch_size)
    seed = tf.cast(seed, tf.int64)

    def transform(i, example):
        image, boxes, classes = preprocess_for_training(
            example, image_size, flip, scale_range, seed=tf.stack([seed, i]))
        return image, label_encoder(boxes, classes)

    if hasattr(source, "example_at"):
        def element(i):
            index = tf.random.experimental.index_shuffle(i % count, tf.stack([seed, i // count]), count - 1)
            return i, source.example_at(index)

        ds = tf.data.Dataset.range(start, 2**62).map(element, num_parallel_calls=tf.data.AUTOTUNE,
                                                     deterministic=True)
    else:
        records = source.kept_records()

        def epoch(e):
            # The order depends on (seed, e) alone: drop the graph-level seed in this function's
            # graph (with --seed=0 TensorFlow would compare a tensor op seed with 0 in Python).
            tf.compat.v1.get_default_graph().seed = None
            shuffled = records.shuffle(shuffle_buffer, seed=seed * 1_000_003 + e, reshuffle_each_iteration=False)
            return shuffled.enumerate().map(lambda k, record: (e * count + k, record[1]))

        first_epoch, offset = divmod(start, count)
        ds = tf.data.Dataset.range(first_epoch, 2**62 // count).flat_map(epoch).skip(offset)
        ds = ds.map(lambda i, raw: (i, source.convert(raw)), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True)
    # No ignore_errors here: a skipped element would shift every later batch and break the
    # resume guarantee, so an image that fails now (after the reader's checks) stops training.
    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def preprocess_for_eval(example, image_size):
    """One example -> (image float32 [S, S, 3], meta dict) with no randomness."""
    size = anchor_lib.image_hw(image_size)
    scale = fit_scale(example["image"], size)
    image, _ = resize_and_pad(example["image"], example["boxes"], size, scale)
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


def eval_dataset(examples, image_size, batch_size):
    """Examples -> batches of (images, meta); ground truth padded with class -1."""
    ds = examples.map(lambda e: preprocess_for_eval(e, image_size),
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
