"""Detection and dataset building over archives larger than one machine, as Apache Beam pipelines.

Needs the `beam` extra (`pip install "keras-retina[beam]"`): the modules here import apache_beam.
inputs (what to detect: pictures, videos, large pictures; shards; the run's manifest), work (a
picture, a group of tile windows or a range of frames, and the worker's job on it), model_handler
(RunInference's ModelHandler: the detector loaded once per worker), outputs (shard files written
whole, the dead-letter files, the merged COCO results, the run's counts), detect_pipeline (the
detect-batch pipeline), records_pipeline (annotations -> sharded TFRecords), runners (the runner
and its options), filesystem (files of any filesystem Beam reads, written whole).
"""
