"""`keras_retina detect-batch`: detection over many pictures, videos and large pictures as Beam pipelines.

    inputs (sorted, dealt into shards)                         [launcher: inputs.list_inputs, deal]
      -> (shard, uri) of the shards not finished yet           [a rerun skips finished shards; read
                                                                from OUTPUT_DIR/pending_inputs.jsonl]
      -> Work items: a picture, tile windows, frame ranges     [work.expand, on the workers; items
                                                                whose part file exists are skipped]
      -> RunInference(DetectorHandler)                         [model loaded once per worker]
      -> each result written as its part file                  [outputs.write_part, same worker]
    then, a second pipeline: each shard's parts -> its files    [outputs.combine_shard]
    then detections.json merged from the shards, and counts    [launcher: outputs.merge_results]

Names, windows and frame numbers travel between the stages; pixels are read where they are
detected and results go to files where they are made, so no process gathers the run: memory
stays flat whatever the archive's size (on the local runner too, which keeps a stage's whole
output in memory before a shuffle). A picture that cannot be read becomes a line of its shard's
failures file (with the reason) and the run goes on. Outputs equal `predict`'s on the same
inputs: pictures detected one by one, tiles and frames in `predict`'s batches, merged by the same
code.
"""

import json

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from keras_retina.batch import filesystem as fs
from keras_retina.batch import inputs as input_lib
from keras_retina.batch import outputs
from keras_retina.batch.model_handler import DetectorHandler
from keras_retina.batch.work import Work, expand

PENDING = "pending_inputs.jsonl"  # [shard, uri] of each input of the unfinished shards, while the run detects


def _is_failed(item, _count):
    return 0 if isinstance(item, Work) else 1


def _expand(pair, settings, output_dir):
    return [item for item in expand(pair[0], pair[1], settings)
            if not (isinstance(item, Work) and outputs.has_part(output_dir, item))]


def run_detect_batch(inputs, output_dir, spec, settings, *, shards, options, postprocess=None, asked=None,
                     max_batch_size=8):
    """Runs the pipelines (module docstring) on `inputs` (sorted URIs) into `output_dir`; returns
    (counts of `outputs.merge_results`, shards finished before this run, work items of the other
    shards done before it)."""
    input_lib.check_manifest(output_dir, inputs, shards, asked or {}, started=outputs.has_results(output_dir))
    done = outputs.finished_shards(output_dir, shards)
    outputs.remove_unfinished(output_dir, done)
    items_done = outputs.done_items(output_dir)
    dealt = input_lib.deal(inputs, shards)
    for shard, uris in dealt.items():  # more shards than inputs: the empty ones are finished at once
        if not uris and shard not in done:
            outputs.write_shard(shard, [], output_dir, shards)
    pending = [(shard, uri) for shard, uris in sorted(dealt.items()) if shard not in done for uri in uris]
    if pending:
        # The inputs reach the workers as a file they read, not inside the job's description (a
        # cluster runner's job graph has a size limit that an archive's list of names would pass).
        listed = fs.join(output_dir, PENDING)
        fs.write_json_lines(listed, pending)
        with beam.Pipeline(options=options) as pipeline:
            items = (pipeline
                     | "Inputs" >> beam.io.ReadFromText(listed)
                     | "Parse" >> beam.Map(json.loads)
                     | "Spread inputs" >> beam.Reshuffle()
                     | "Work items" >> beam.FlatMap(_expand, settings, output_dir))
            work, failed = items | "Readable" >> beam.Partition(_is_failed, 2)
            # Each branch writes its own parts: a Flatten would end the workers' fused stage there, and
            # the local runner would hold every result in its own memory before writing.
            _ = (work
                 | "Spread work" >> beam.Reshuffle()
                 | "Detect" >> RunInference(DetectorHandler(spec, settings, postprocess, max_batch_size=max_batch_size))
                 | "Write parts" >> beam.Map(outputs.write_part, output_dir))
            _ = failed | "Write failures" >> beam.Map(outputs.write_part, output_dir)
        with beam.Pipeline(options=options) as pipeline:
            _ = (pipeline
                 | "Shards" >> beam.Create(sorted({shard for shard, _ in pending}), reshuffle=False)
                 | "Spread shards" >> beam.Reshuffle()
                 | "Write shards" >> beam.Map(outputs.combine_shard, output_dir, shards, settings.tile))
        fs.delete([listed])
    return outputs.merge_results(output_dir, shards, inputs), len(done), items_done
