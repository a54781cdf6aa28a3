"""RecordSource: TFRecord files and TFDS splits as a source (`data.source`), images still encoded.

These have no random access, so a RecordSource holds the reader's records in a fixed order and
what the reader knows about them:
- `records`: a `tf.data.Dataset` of `(where, raw)` in file order. `where` is a string naming
  the record for people ("<file> record <n> (source_id <id>)", "<name> <split> example <n>
  (image id <id>)"); `raw` is what the reader stores (a serialized tf.Example, a TFDS example
  with the image left encoded).
- `convert(raw)`: the example (`data.source`).
- `annotations(raw)`: the fields `cleaning.scan_records` checks (normalised yxyx boxes,
  classes, the dataset's category ids, is_crowd, the encoded image).
`checked(skip_bad_examples, decode)` runs the dirty-data pass (DataError on bad data unless
skipped) and returns a new source that leaves out the records it must (sharing an image id;
under --skip_bad_examples the undecodable ones), knows `num_examples` and carries the `report`.
"""

import dataclasses

import tensorflow as tf

from keras_retina.data import cleaning
from keras_retina.data.source import SHUFFLE_BUFFER
from keras_retina.errors import DataError
from keras_retina.ops.images import decode_image


@dataclasses.dataclass(frozen=True)
class RecordSource:
    name: str
    label_map: list
    records: tf.data.Dataset
    convert: object
    annotations: object
    report: cleaning.DataReport = None
    exclude: tuple = ()
    num_examples: int = None
    skip_bad_examples: bool = False
    decoded: bool = False

    def checked(self, skip_bad_examples=False, decode=None):
        """The dirty-data pass (`cleaning.scan_records`); returns the filtered source.

        Every annotation is checked; with `decode` (default: `skip_bad_examples`) every image
        is decoded too. Without `skip_bad_examples` a bad annotation or image is a DataError
        listing them; with it they are left out and counted in the new source's `report`."""
        decode = skip_bad_examples if decode is None else decode
        report = cleaning.DataReport(self.name)
        print(f"[data] checking the annotations of {self.name}" + (" and decoding every image" if decode else "")
              + " ...", flush=True)
        try:
            total, excluded = cleaning.scan_records(self.annotation_records(), report, len(self.label_map),
                                                    decode=decode)
        except tf.errors.OpError as error:  # not a tf.Example, a missing field, a cut file
            reason = (error.message or str(error)).strip().splitlines()[0]
            raise DataError(f"{self.name}: a record cannot be read as an image with annotations ({reason}). "
                            f"Rewrite or remove the file.") from None
        report.raise_if_bad(skipping=skip_bad_examples)
        source = dataclasses.replace(self, report=report, exclude=tuple(excluded),
                                     num_examples=total - len(excluded), skip_bad_examples=skip_bad_examples,
                                     decoded=decode)
        if source.num_examples == 0:
            raise DataError(f"{self.name}: no usable images.\n{report.format(skipping=skip_bad_examples)}")
        return source

    def examples(self, shuffle=False, seed=None, shuffle_buffer=SHUFFLE_BUFFER):
        """Examples without the excluded records, in file order or shuffled through a buffer of
        `shuffle_buffer` still-encoded records (reshuffled each pass); with
        `skip_bad_examples` a record that fails to decode is skipped (tf.data's
        `ignore_errors`) instead of stopping the reading."""
        records = self.kept_records()
        if shuffle:
            records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        dataset = records.map(lambda where, raw: self.convert(raw), num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
        return dataset.ignore_errors(log_warning=True) if self.skip_bad_examples else dataset

    def ordered_examples(self, seed, start, shuffle_buffer=SHUFFLE_BUFFER):
        """(i, example) from i = `start` on: epoch e = i // num_examples is the kept records
        shuffled through a `shuffle_buffer` seeded by (seed, e); a resumed run re-reads (does
        not decode) the records of its epoch up to its position."""
        count = self.num_examples
        if count is None:
            raise ValueError(f"{self.name}: ordered_examples needs the count of the dirty-data pass (checked()).")
        records = self.kept_records()
        seed = tf.cast(seed, tf.int64)

        def epoch(e):
            # The order depends on (seed, e) alone: drop the graph-level seed in this function's
            # graph (with --seed=0 TensorFlow would compare a tensor op seed with 0 in Python).
            tf.compat.v1.get_default_graph().seed = None
            shuffled = records.shuffle(shuffle_buffer, seed=seed * 1_000_003 + e, reshuffle_each_iteration=False)
            return shuffled.enumerate().map(lambda k, record: (e * count + k, record[1]))

        first_epoch, offset = divmod(int(start), count)
        ds = tf.data.Dataset.range(first_epoch, 2**62 // count).flat_map(epoch).skip(offset)
        return ds.map(lambda i, raw: (i, self.convert(raw)), num_parallel_calls=tf.data.AUTOTUNE,
                      deterministic=True)

    def find_undecodable(self):
        """Names of the kept records whose image does not decode."""
        decoded = self.kept_records().map(
            lambda where, raw: (where, tf.shape(decode_image(self.annotations(raw)["encoded"]))),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        good = {where.numpy() for where, _ in decoded.ignore_errors()}
        return [cleaning.shown(where.numpy()) for where, _ in self.kept_records() if where.numpy() not in good]

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
