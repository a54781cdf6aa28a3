"""What a data source is: the interface the input pipeline, training and evaluation use.

Every reader returns a source (`coco_json.CocoJsonSource`, `records.RecordSource` for TFRecord
files and TFDS splits; `DatasetSource` wraps a user's own `tf.data.Dataset` of examples).
A source has:

    name              str, for messages ("train.json", "coco/2017 train", a file pattern)
    label_map         [{"id": dataset category id, "name": str}], index = contiguous class
    report            data.cleaning.DataReport of what the dirty-data pass fixed, skipped or dropped
    num_examples      int (None when the source cannot count them)
    decoded           True when the dirty-data pass decoded every image already
    examples(shuffle=False, seed=None)
                      tf.data.Dataset of examples (below), in file order or reshuffled each pass
                      (COCO JSON: over the whole set; records: through a buffer of
                      SHUFFLE_BUFFER still-encoded records), images decoded after shuffling
    ordered_examples(seed, start)
                      endless tf.data.Dataset of (i, example) for i = start, start + 1, ...:
                      element i is a pure function of (seed, i), epochs of num_examples each in
                      their own seeded order (what --deterministic resumes on)
    find_undecodable()
                      strings naming the examples whose image does not decode (and why, where
                      known); training calls it to name the files when TensorFlow stops on input

Examples (one per image):

    image_id  int64 []          image     uint8 [H, W, 3] RGB (`images.decode_image`)
    boxes     float32 [N, 4]    yxyx pixels of the original image
    classes   int32 [N]         0..K-1 (-1: not in the label map; never trained on)
    is_crowd  bool [N]          area float32 [N]   (COCO evaluation uses both)

Sources are not changed after they are made: the dirty-data pass of a record source returns a
new, filtered one (`RecordSource.checked`).
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
