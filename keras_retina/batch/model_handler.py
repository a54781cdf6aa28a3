"""RunInference's ModelHandler for keras_retina: the detector loaded once per worker, Work items in.

Beam's own TensorFlow handlers load with `tf.keras.models.load_model`, which Keras 3 refuses for a
SavedModel, and import tensorflow_hub; this one loads any model `predict` takes
(`inference.detector.batch_detector`: a model_dir, an exported SavedModel, a LiteRT / ONNX file)
and runs `work.do_work` on each item of a batch. What it receives and returns are small (names,
windows, frame numbers in; detections out): pixels are read inside `run_inference`.
"""

import dataclasses
import logging

from apache_beam.ml.inference.base import ModelHandler

from keras_retina.batch.work import do_work


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
