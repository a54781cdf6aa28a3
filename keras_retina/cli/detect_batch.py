"""`keras_retina detect-batch INPUT ... --model_dir=RUN --output_dir=DIR [--runner=direct|dataflow|...]`:
`predict` over archives, as an Apache Beam pipeline (`batch.detect_pipeline`); needs the beam extra."""

import logging
import os
import sys
import time

from keras_retina.cli.flags import postprocess_settings
from keras_retina.cli.options import TILE_FLAGS
from keras_retina.errors import DataError, UsageError
from keras_retina.inference.detector import check_model
from keras_retina.inference.tiling import TileSettings
from keras_retina.inference.video import VideoSettings
from keras_retina.pretrained import registry


def _beam():
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        raise UsageError("detect-batch runs on Apache Beam, which is not installed here: "
                         "pip install \"keras-retina[beam]\" (docs/scale.md).") from None


def run(configs, options, args):
    _beam()
    import tensorflow as tf

    for name in ("apache_beam", "absl"):  # Beam's start-up notes (optional cloud clients, ...) are not the user's
        logging.getLogger(name).setLevel(logging.ERROR)
    from apache_beam.io.filesystem import BeamIOError

    from keras_retina.batch import filesystem as fs
    from keras_retina.batch import inputs as input_lib
    from keras_retina.batch.detect_pipeline import run_detect_batch
    from keras_retina.batch.model_handler import ModelSpec, check_model_location
    from keras_retina.batch.runners import pipeline_options
    from keras_retina.batch.work import BatchSettings

    if registry.is_name(options["model"]):
        options = {**options, "model": None, "model_dir": registry.resolve_model_dir(options["model"])}
    if not (options["model"] or options["saved_model"] or options["model_dir"]):
        raise UsageError("detect-batch needs --model_dir, --saved_model or --model (as predict).")
    if options["tile_whole_picture"]:
        raise UsageError("--tile_whole_picture: detect-batch reads a large picture's tiles on many workers and has "
                         "no whole preview to detect on; leave it out (or run predict).")
    tile = TileSettings(tile=options["tile"], **{field: options[flag] for flag, field in TILE_FLAGS.items()}) if (
        options["tile"]) else None
    video = VideoSettings(every_nth_frame=options["every_nth_frame"], max_frames=options["max_frames"] or None,
                          batch_size=options["detect_batch_size"])
    settings = BatchSettings(tile=tile, video=video)
    beam_options = pipeline_options(options["runner"], options["workers"], options["beam_options"])
    output_dir = fs.remove_slash(fs.local(options["output_dir"]))
    fs.check_path(output_dir, f"--output_dir={options['output_dir']}", folder=True)
    spec = ModelSpec(*(fs.local(options[flag]) if options[flag] else None for flag in ("model", "saved_model",
                                                                                       "model_dir")),
                     options["checkpoint"], configs["train"].mixed_precision)
    postprocess = postprocess_settings(options)
    # Workers load the model; a wrong flag is said here, before any input is listed or the run's
    # manifest written.
    check_model_location(spec)
    try:
        check_model(spec.model, spec.saved_model, spec.model_dir, spec.checkpoint, postprocess=postprocess)
    except tf.errors.OpError as error:  # a bucket without credentials, say
        raise DataError(f"{spec.named()}: could not be read here: {error.message.splitlines()[0]}") from None
    try:
        inputs = input_lib.list_inputs(args, options["input_list"])
    except BeamIOError as error:  # a bucket without credentials, say
        raise DataError(f"an input could not be listed: {fs.unreachable(error)}") from None
    if not inputs:
        raise UsageError("detect-batch: no input (give pictures, videos, folders, globs or --input_list).")
    shards = input_lib.shard_count(len(inputs), options["shards"])
    asked = {"model": {k: v for k, v in vars(spec).items() if v}, "postprocess": postprocess.given(),
             "tile": vars(tile) if tile else None, "video": vars(video)}
    workers = f" ({options['workers']} worker process(es))" if options["runner"] == "direct" else ""
    print(f"detect-batch: {len(inputs):,} input(s) in {shards} shard(s) -> {output_dir} on the {options['runner']} "
          f"runner{workers}", flush=True)
    start = time.monotonic()
    try:
        counts, before, items = run_detect_batch(
            inputs, output_dir, spec, settings, shards=shards, postprocess=postprocess, asked=asked,
            options=beam_options)
    except BeamIOError as error:  # the launcher's own files (the manifest, the shards) out of reach
        raise DataError(f"--output_dir={options['output_dir']}: {fs.unreachable(error)}") from None
    seconds = time.monotonic() - start
    resumed = [f"{before} of {shards} shard(s) were finished before" if before else "",
               f"{items:,} work item(s) were done before" if items else ""]
    resumed = f" ({' and '.join(r for r in resumed if r)}: skipped)" if any(resumed) else ""
    print(f"Done in {seconds:.1f} s{resumed}: {counts['pictures']:,} picture(s), {counts['videos']} video(s) "
          f"({counts['frames']:,} frames detected), {counts['detections']:,} detection(s), "
          f"{len(counts['failures'])} input(s) failed.", flush=True)
    print(f"Detections: {output_dir}/detections-*.jsonl (per shard) and {os.path.join(output_dir, 'detections.json')} "
          f"(COCO results of the pictures).", flush=True)
    for failure in counts["failures"][:10]:
        print(f"  failed: {failure['input']}: {failure['reason']}", file=sys.stderr)
    if counts["failures"]:
        print(f"{len(counts['failures'])} input(s) could not be read: {output_dir}/failures-*.jsonl lists them with "
              f"their reasons.", file=sys.stderr)
    return 1 if counts["failures"] else 0
