"""RunInference's ModelHandler for keras_retina: the detector loaded once per worker, Work items in.

Beam's own TensorFlow handlers load with `tf.keras.models.load_model`, which Keras 3 refuses for a
SavedModel, and import tensorflow_hub; this one loads any model `predict` takes
(`inference.detector.batch_detector`: a model_dir, an exported SavedModel, a LiteRT / ONNX file)
and runs `work.do_work` on each item of a batch. What it receives and returns are small (names,
windows, frame numbers in; detections out): pixels are read inside `run_inference`.

`check_model_location(spec)`: where the workers can read the model from, said before the run
starts. TensorFlow 2.20 reads a model_dir or a SavedModel from local paths and from gs:// (its own
filesystems: TF_SCHEMES), not from the other schemes Beam reads (s3://, azfs://, hdfs://: its HDFS
support moved to tensorflow-io); the LiteRT and ONNX runtimes read a file of the worker's own
disk. Anything else is a UsageError naming the flag.
"""

import dataclasses
import logging

from apache_beam.ml.inference.base import ModelHandler

from keras_retina.batch import filesystem as fs
from keras_retina.batch.work import do_work
from keras_retina.errors import UsageError

TF_SCHEMES = ("gs",)  # the URIs TensorFlow 2.20's own filesystems read


class _WithoutMemoryNote(logging.Filter):
    """Beam 2.77's RunInference reads its memory use only when torch imports (its model manager needs
    it) and otherwise warns at every batch; the note says nothing about the run."""

    def filter(self, record):
        return "memory usage cannot be fetched" not in record.getMessage()


logging.getLogger().addFilter(_WithoutMemoryNote())


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Which model a worker loads (one of model, saved_model, model_dir), as `predict`'s flags."""

    model: str | None = None
    saved_model: str | None = None
    model_dir: str | None = None
    checkpoint: str = "best"
    mixed_precision: str = "none"

    def named(self):
        """The model as its flag gives it: `--model_dir=...`."""
        return next(f"--{flag}={value}" for flag, value in (("model", self.model), ("saved_model", self.saved_model),
                                                            ("model_dir", self.model_dir)) if value)


def check_model_location(spec):
    """A UsageError when the workers could not read `spec`'s model where it is (module docstring)."""
    if spec.model and fs.scheme(spec.model):
        raise UsageError(f"--model={spec.model}: the LiteRT and ONNX runtimes read a file of the worker's own disk; "
                         f"give a path every worker has, or give an exported SavedModel on gs:// with --saved_model.")
    for flag, value in (("saved_model", spec.saved_model), ("model_dir", spec.model_dir)):
        if value and fs.scheme(value) not in (None, *TF_SCHEMES):
            raise UsageError(f"--{flag}={value}: TensorFlow reads a model from local paths and from "
                             f"{', '.join(s + '://' for s in TF_SCHEMES)}, not from {fs.scheme(value)}://; copy it "
                             f"there, or to a folder every worker mounts (docs/scale.md).")


class DetectorHandler(ModelHandler):
    def __init__(self, spec, settings, postprocess=None, *, max_batch_size=8):
        super().__init__(min_batch_size=1, max_batch_size=max_batch_size)
        self._spec, self._settings, self._postprocess = spec, settings, postprocess

    def load_model(self):
        from keras_retina.inference.detector import batch_detector

        spec = self._spec
        return batch_detector(spec.model, spec.saved_model, spec.model_dir, spec.mixed_precision, spec.checkpoint,
                              postprocess=self._postprocess)

    def run_inference(self, batch, model, inference_args=None):
        return [do_work(work, model, self._settings) for work in batch]

    def get_num_bytes(self, batch):
        return sum(len(work.uri) + 64 * len(work.windows) for work in batch)

    def get_metrics_namespace(self):
        return "keras_retina"
