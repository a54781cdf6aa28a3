"""The data source interface that the input pipeline, training and evaluation use.

Sources: `readers.picture_source.PictureSource` (picture files: COCO JSON, Pascal VOC, YOLO, CSV),
`readers.record_source.RecordSource` (TFRecord files, TFDS splits) and `DatasetSource` (a user's
`tf.data.Dataset` of examples, wrapped by `as_source`).
Each has `name` (str, for messages), `label_map` ([{"id", "name"}], index = contiguous class),
`report` (`data.cleaning.DataReport`), `num_examples` (int or None), `decoded` (True when the
dirty-data pass decoded every image already), `examples(shuffle=False, seed=None)` (a
tf.data.Dataset of examples, file order or reshuffled each pass), `ordered_examples(seed, start)`
(endless (i, example) from i = start, element i a pure function of (seed, i): --deterministic)
and `find_undecodable()` (strings naming the examples whose image does not decode).

Examples (one per image): image_id int64 [], image uint8 [H, W, 3] RGB, boxes float32 [N, 4] yxyx
pixels of the original image, classes int32 [N] 0..K-1 (-1: not in the label map), is_crowd bool [N],
area float32 [N]. A source never changes once made: `RecordSource.checked` returns a new one.
"""

import tensorflow as tf

from keras_retina.errors import UsageError

SHUFFLE_BUFFER = 1000  # examples (TFRecord/TFDS: still-encoded records) shuffled at a time


class DatasetSource:
    """A user's `tf.data.Dataset` of examples as a source (no count, no deterministic order)."""

    decoded = False

    def __init__(self, dataset, label_map=None, name="dataset", report=None):
        self.dataset = dataset
        self.label_map = label_map
        self.name = name
        self.report = report
        self.num_examples = None

    def examples(self, shuffle=False, seed=None):
        if shuffle:
            return self.dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        return self.dataset

    def ordered_examples(self, seed, start):
        raise UsageError(f"{self.name}: --deterministic needs a source whose examples can be numbered: "
                         f"COCO JSON, TFRecord or TFDS read by keras_retina (--train_annotations, "
                         f"--train_tfrecord, --tfds_name or --demo_data).")

    def find_undecodable(self):
        return []


def as_source(examples):
    """A source as it is; a `tf.data.Dataset` of examples wrapped in a DatasetSource."""
    return DatasetSource(examples) if isinstance(examples, tf.data.Dataset) else examples
