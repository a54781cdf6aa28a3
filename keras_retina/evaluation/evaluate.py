"""`keras_retina evaluate` as functions: COCO metrics of a model_dir's model or of a LiteRT / ONNX file.

- `evaluate_model_dir(model_dir, data_config=None, batch_size=16, checkpoint="best")`: the best
  (else the latest) checkpoint on the validation data the data flags name, else the data the
  model_dir was trained on; `postprocess` (PostprocessSettings) decodes as an export with them would
  (the metrics say which were given).
- `evaluate_file(deployed, model_dir=None, data_config=None)`: a LiteRT / ONNX file loaded by
  `deploy.runtime.load`, run by its runtime, each picture letterboxed into its fixed input.

Both print the 12 COCO numbers and the per-class AP table, write them as JSON (`output`, by
default beside the model: `model_dir/eval/metrics-<step>.json`, `FILE.metrics.json`), with
`report` the evaluation report beside it (`evaluation.report`: `<metrics>_report/index.html`)
and return the metrics dict. Raise UsageError when there is no validation data, DataError when its
categories are not the model's.
"""

import dataclasses
import os
from typing import Protocol

from keras_retina.config_fields import from_dict
from keras_retina.data import pipeline
from keras_retina.data.data_config import DataConfig, saved_data_settings
from keras_retina.data.splits import open_sources
from keras_retina.errors import DataError, SettingsError, UsageError
from keras_retina.evaluation.coco_metrics import evaluate_coco, evaluate_deployed, format_metrics
from keras_retina.evaluation.report import report_folder, write_report
from keras_retina.files import write_json
from keras_retina.model_dir import ModelDir
from keras_retina.modeling.detection_decoder import PostprocessSettings
from keras_retina.modeling.precision import set_precision

NO_VALIDATION_DATA = ("No validation data: give --val_annotations/--val_images, --tfds_name (--tfds_val_split), "
                      "--val_tfrecord or --demo_data")


class DeployedFile(Protocol):
    """What evaluation reads of a LiteRT / ONNX file: a `deploy.runtime.DeployedModel` (`load_deployed`)."""

    path: str
    label_map: list
    input_size: tuple
    metadata: dict

    def detect_picture(self, pixels): ...


def validation_source(data_config, run=None):
    """The validation source the data flags name, else the one `run` (a ModelDir) was trained on
    (read with this config's --skip_bad_examples)."""
    data_config = data_config or DataConfig()
    if not data_config.sources_given():
        if run is None:
            raise UsageError(f"{NO_VALIDATION_DATA}, or --model_dir (its data).")
        saved = from_dict(DataConfig, saved_data_settings(run.read_config()["data"]), run.config_path)
        data_config = dataclasses.replace(saved, skip_bad_examples=data_config.skip_bad_examples)
    val = open_sources(data_config, need_train=False).val
    if val is None:
        raise UsageError(f"{NO_VALIDATION_DATA}.")
    return val


def evaluate_model_dir(model_dir: str, data_config: DataConfig | None = None, batch_size: int = 16,
                       output: str | None = None, mixed_precision: str = "none", checkpoint: str = "best", *,
                       report: bool = True, report_pictures: int = 12, report_score_threshold: float = 0.0,
                       postprocess: PostprocessSettings | None = None) -> dict:
    run = ModelDir(model_dir)
    set_precision(mixed_precision, run.model_config)
    net, label_map, _, checkpoint = run.load_model(which=checkpoint)
    if postprocess is not None and postprocess.given():  # the settings an export would fix
        net.decoder = postprocess.apply(net.decoder)
    val = validation_source(data_config, run)
    if [e["id"] for e in val.label_map] != [e["id"] for e in label_map]:
        raise DataError(f"{val.name}: its categories differ from the model's {run.label_map_path}.")
    metrics, evaluation = evaluate_coco(net, pipeline.eval_dataset(val, net.resize_policy, batch_size), label_map,
                                        keep=True)
    metrics["checkpoint"] = checkpoint
    if postprocess is not None and postprocess.given():
        metrics["postprocess"] = postprocess.given()
    print(f"COCO evaluation of {checkpoint} on {metrics['num_images']} images:")
    default = run.metrics_path(checkpoint.rsplit("-", 1)[-1])
    if checkpoint == run.best_checkpoint():
        default = default.replace("metrics-", "metrics-best-")  # beside the training's own evaluation of that step
    if postprocess is not None and postprocess.given():  # other settings: never over the training's own file
        tag = "".join(f"-{k}{v:g}" for k, v in sorted(postprocess.given().items()))
        default = default[:-len(".json")] + tag + ".json"
    path = output or default
    _report(metrics, path)
    if report:
        write_evaluation_report(evaluation, label_map, val, path, {"model": checkpoint, "data": val.name},
                                report_pictures, report_threshold=report_score_threshold,
                                title=f"Evaluation of {_name(model_dir)} ({os.path.basename(checkpoint)})")
    return metrics


def evaluate_file(deployed: DeployedFile, model_dir: str | None = None, data_config: DataConfig | None = None,
                  output: str | None = None, report: bool = True, report_pictures: int = 12,
                  *, report_score_threshold: float = 0.0, postprocess: PostprocessSettings | None = None) -> dict:
    if postprocess is not None and postprocess.given():
        raise SettingsError(sorted(postprocess.given()), "a LiteRT / ONNX file's postprocessing was fixed when it "
                                                         "was exported; export it again with them.")
    path = deployed.path
    val = validation_source(data_config, ModelDir(model_dir) if model_dir else None)
    metrics, evaluation = evaluate_deployed(deployed, val.examples(), val.label_map, keep=True)
    metrics["model"] = path
    size = deployed.input_size
    print(f"COCO evaluation of {path} ({deployed.metadata['quantize']}, input {size[0]}x{size[1]}) "
          f"on {metrics['num_images']} images of {val.name}:")
    output = output or path + ".metrics.json"
    _report(metrics, output)
    if report:
        write_evaluation_report(evaluation, val.label_map, val, output, {"model": path, "data": val.name},
                                report_pictures, report_threshold=report_score_threshold)
    return metrics


def write_evaluation_report(evaluation, label_map, source, metrics_path, about, pictures=12, *, report_threshold=0.0,
                            title=None):
    """The report (`evaluation.report`) beside `metrics_path`; prints and returns its page's path."""
    page = write_report(report_folder(metrics_path), evaluation, label_map, source, num_pictures=pictures,
                        report_threshold=report_threshold or None, about=about,
                        title=title or f"Evaluation of {_name(about.get('model', 'the model'))}")
    print(f"Report (PR curves, thresholds, confusion matrix, errors, worst pictures): {page}", flush=True)
    return page


def _name(path):
    return os.path.basename(os.path.normpath(path))


def _report(metrics, path):
    print(format_metrics(metrics))
    write_json(metrics, path)
    print(f"Metrics written to {path}")
    return metrics
