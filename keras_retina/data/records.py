"""A sequential reader's records in a fixed order, images still encoded.

TFRecord files and TFDS splits have no random access. What `--deterministic`
training (`pipeline.deterministic_train_dataset`) and the dirty-data pass
(`cleaning.scan_records`) need from them is this stream:

- `records`: a `tf.data.Dataset` of `(where, raw)` in file order. `where` is a
  string naming the record for people ("<file> record <n> (source_id <id>)",
  "<name> <split> example <n> (image id <id>)"); `raw` is what the reader stores
  (a serialized tf.Example, a TFDS example with the image left encoded).
- `convert(raw)`: the reader's example (decoded uint8 image, pixel yxyx boxes,
  classes 0..K-1; see `data.pipeline`).
- `annotations(raw)`: the fields `cleaning.scan_records` checks (normalised yxyx
  boxes, classes, the dataset's category ids, is_crowd, the encoded image).
- `exclude`: names of records to leave out (those sharing another record's image
  id, and the undecodable ones the pass found under --skip_bad_examples) and `num_examples` (records left; None until the
  pass has counted them).
"""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass
class RecordStream:
    records: tf.data.Dataset
    convert: object
    annotations: object
    exclude: tuple = ()
    num_examples: int = None

    def examples(self, skip_bad_examples=False, shuffle_buffer=0, seed=None):
        """The reader's examples (without the excluded records), in file order or shuffled
        through a buffer of `shuffle_buffer` still-encoded records (reshuffled each pass);
        with `skip_bad_examples` a record that fails to decode is skipped (tf.data's
        `ignore_errors`) instead of stopping the reading. The dataset carries this stream as
        `record_stream`."""
        records = self.kept_records()
        if shuffle_buffer:
            records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        dataset = records.map(lambda where, raw: self.convert(raw), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
        dataset = dataset.ignore_errors(log_warning=True) if skip_bad_examples else dataset
        dataset.record_stream = self
        dataset.skip_bad_examples = skip_bad_examples
        return dataset

    def annotation_records(self):
        """Records for `cleaning.scan_records`: {"where", **annotations(raw)}."""
        return self.records.map(lambda where, raw: {"where": where, **self.annotations(raw)},
                                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def kept_records(self):
        """`records` without the excluded ones."""
        if not self.exclude:
            return self.records
        # Names are str with undecodable bytes kept as surrogates (`cleaning.scan_records`).
        keys = tf.constant([where.encode("utf-8", "surrogateescape") for where in self.exclude])
        excluded = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, tf.ones_like(keys, tf.int32)), 0)
        return self.records.filter(lambda where, raw: excluded.lookup(where) == 0)
