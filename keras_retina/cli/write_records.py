"""`keras_retina write-records --train_annotations=... --records_dir=DIR [--runner=...]`: annotation files
-> sharded TFRecords in the TF Object Detection API layout, as an Apache Beam pipeline
(`batch.records_pipeline`); needs the beam extra."""

import logging
import sys
import time

from keras_retina.cli.detect_batch import _beam
from keras_retina.errors import DataError, UsageError


def run(configs, options, args):
    _beam()
    for name in ("apache_beam", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from apache_beam.io.filesystem import BeamIOError

    from keras_retina.batch import filesystem as fs
    from keras_retina.batch.inputs import shard_count
    from keras_retina.batch.records_pipeline import write_records
    from keras_retina.batch.runners import pipeline_options
    from keras_retina.data.label_statistics import format_statistics, label_statistics
    from keras_retina.data.splits import open_sources

    data = configs["data"]
    if not options["records_dir"]:
        raise UsageError("write-records needs --records_dir (where the TFRecord shards go).")
    beam_options = pipeline_options(options["runner"], options["workers"], options["beam_options"])
    records_dir = fs.remove_slash(fs.local(options["records_dir"]))
    fs.check_path(records_dir, f"--records_dir={options['records_dir']}", folder=True)
    if data.tfds_name or data.train_tfrecord:
        raise UsageError("write-records writes annotation files (COCO JSON, VOC, YOLO, CSV) as TFRecords; "
                         "--tfds_name / --train_tfrecord are records already.")
    sources = open_sources(data, need_train=True, load_train=True, verify_images=False)
    entries = {}
    for split, source in (("train", sources.train), ("val", sources.val)):
        if source is None:
            continue
        print(format_statistics(split, label_statistics(source)))
        print(source.report.format(skipping=data.skip_bad_examples), flush=True)
        source.report.raise_if_bad(data.skip_bad_examples)
        entries[split] = [dict(entry) for entry in source.images if not entry.get("bad")]
    shards = {split: shard_count(len(rows), options["shards"]) for split, rows in entries.items()}
    start = time.monotonic()
    try:
        written, failures, before = write_records(entries, sources.label_map, records_dir, shards, beam_options)
    except BeamIOError as error:  # a bucket without credentials, say
        raise DataError(f"--records_dir={options['records_dir']}: {fs.unreachable(error)}") from None
    seconds = time.monotonic() - start
    for split in entries:
        resumed = f" ({before[split]} finished before: skipped)" if before[split] else ""
        print(f"[{split}] {written[split]:,} pictures -> {records_dir}/{split}-*-of-{shards[split]:05d}"
              f".tfrecord, {shards[split]} shard(s){resumed}", flush=True)
    print(f"Done in {seconds:.1f} s; label map: {records_dir}/label_map.pbtxt (and .json). Train on them "
          f"with --train_tfrecord='{records_dir}/train-*.tfrecord' "
          f"--label_map={records_dir}/label_map.json.", flush=True)
    for failure in failures[:10]:
        print(f"  failed: {failure['input']}: {failure['reason']}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} picture(s) could not be read and are not in the records: "
              f"{records_dir}/failures.jsonl", file=sys.stderr)
    return 1 if failures else 0


