"""`keras_retina export` as a function: a model_dir's model as a SavedModel, a LiteRT or an ONNX file.

`export(model_dir, export_dir, format="saved_model" | "tflite" | "onnx", ...)` bundles its options
in an `ExportSettings` (checked when made: train makes it before training when it exports at the
end), loads the best checkpoint (`checkpoint="latest"`: the latest) and writes

- saved_model: `export_dir/<version>/` for TF Serving (`deploy.saved_model`);
- tflite / onnx: one file of a fixed input size (`input_size`, default a square of the
  model's longer side: `deploy.fixed_size_detector`) at `output`, else
  `export_dir/retinanet_HxW[_quantize].tflite|onnx` (`ExportSettings.file_path`; never written over);
  int8 LiteRT files are calibrated on `calibration_count` pictures (`deploy.calibration`).

`postprocess` (a `modeling.detection_decoder.PostprocessSettings`: score_threshold,
pre_nms_top_k, nms_iou_threshold, max_detections; None keeps the model's) is fixed in the
exported graph. Prints what was written and how to run it; returns its path. Option errors are
UsageErrors naming the flag; unwritable places DataErrors.
"""

import dataclasses
import os

import keras

from keras_retina.deploy import file_formats, fixed_size_detector, saved_model
from keras_retina.deploy.file_formats import FILE_FORMATS
from keras_retina.deploy.metadata import QUANTIZE
from keras_retina.errors import DataError, UsageError
from keras_retina.model_dir import ModelDir
from keras_retina.modeling import detection_decoder
from keras_retina.modeling.precision import set_precision


def _needs():
    """What export needs, said when it is missing."""
    return (f"export needs --model_dir (the trained model) and --export_dir (e.g. serving/retinanet; SavedModel "
            f"versions go in numbered subfolders; --format={'|'.join(FILE_FORMATS)} may give --output=FILE instead).")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportSettings:
    """What `export` writes, checked once when made (UsageError naming the flag; DataError for a
    missing calibration folder). Keyword-only.

    format: saved_model (TF Serving), tflite (LiteRT) or onnx.
    export_dir: the SavedModel base (versions in numbered subfolders), or the folder of a file.
    output: a tflite / onnx file's path (instead of a name in export_dir).
    version: the SavedModel version (default: one more than the latest).
    input_size: a tflite / onnx file's fixed input, "H,W" or "S" (default: the model's canvas).
    quantize: tflite only: none, float16, dynamic or int8.
    calibration_images: int8 only: a folder of pictures (default: the model_dir's training data).
    calibration_count: int8 only: how many pictures calibrate it.
    mixed_precision: the SavedModel's compute precision (files are float32 or quantised).
    checkpoint: best (the best validation checkpoint) or latest.
    """

    format: str = "saved_model"
    export_dir: str = None
    output: str = None
    version: int = None
    input_size: str = None
    quantize: str = "none"
    calibration_images: str = None
    calibration_count: int = 200
    mixed_precision: str = "none"
    checkpoint: str = "best"

    def __post_init__(self):
        self._check()

    def _check(self):
        format, quantize, output, input_size = self.format, self.quantize, self.output, self.input_size
        formats = file_formats.export_formats()
        if format not in formats or quantize not in QUANTIZE:
            raise UsageError(f"--format={format}, --quantize={quantize}: choose a format of {formats} and "
                             f"a quantisation of {QUANTIZE}.")
        if not (self.export_dir or (format != "saved_model" and output)):
            raise UsageError(_needs())
        quantizing = sorted(f.name for f in FILE_FORMATS.values() if f.quantizes)
        if quantize != "none" and format not in quantizing:
            raise UsageError(f"--quantize={quantize} is for --format={'|'.join(quantizing)} (got --format={format}).")
        if self.calibration_images and quantize != "int8":
            raise UsageError(f"--calibration_images is for --format={'|'.join(quantizing)} --quantize=int8.")
        if self.calibration_images and not os.path.isdir(self.calibration_images):
            raise DataError(f"--calibration_images={self.calibration_images}: no such folder.")
        if format == "saved_model":
            for name, value in (("input_size", input_size), ("output", output)):
                if value:
                    raise UsageError(f"--{name}={value} is for --format={'|'.join(FILE_FORMATS)}; a SavedModel "
                                     f"takes pictures of any size and goes into --export_dir.")
            return
        if self.version:
            raise UsageError(f"--version={self.version} numbers SavedModels; a {format} file is named by --output.")
        if input_size:
            fixed_size_detector.parse_input_size(input_size)
        if FILE_FORMATS[format].requires:
            file_formats.load(FILE_FORMATS[format].requires)()
        if output and os.path.splitext(output)[1].lower() != f".{format}":
            raise UsageError(f"--output={output}: a --format={format} file ends in .{format}.")
        if "://" in (output or self.export_dir):
            raise UsageError(f"{FILE_FORMATS[format].title} files are written to a local path; got "
                             f"{output or self.export_dir}.")

    def file_path(self, policy):
        """(path, (H, W)) of a tflite / onnx file: `output`, else export_dir/retinanet_HxW[_quantize].FORMAT
        (the input size: `input_size` or the policy's default); UsageError when it exists."""
        size = (fixed_size_detector.parse_input_size(self.input_size) if self.input_size
                else fixed_size_detector.default_input_size(policy))
        suffix = "" if self.quantize == "none" else f"_{self.quantize}"
        path = self.output or os.path.join(self.export_dir, f"retinanet_{size[0]}x{size[1]}{suffix}.{self.format}")
        if os.path.exists(path):
            raise UsageError(f"{path} exists already; remove it or give another --output / --export_dir.")
        return path, size


def export(model_dir: str, export_dir: str | None = None, format: str = "saved_model", output: str | None = None,
           version: int | None = None, input_size: str | None = None, *, quantize: str = "none",
           calibration_images: str | None = None, calibration_count: int = 200, mixed_precision: str = "none",
           checkpoint: str = "best", settings: ExportSettings | None = None,
           postprocess: detection_decoder.PostprocessSettings | None = None, **renamed_keywords) -> str:
    """Exports `model_dir`'s model (module docstring); `settings`: an ExportSettings, else made from
    the keyword arguments; `postprocess`: PostprocessSettings. Returns the path written."""
    postprocess = detection_decoder.postprocess_settings(postprocess, renamed_keywords, "export")
    if not model_dir:
        raise UsageError(_needs())
    settings = settings or ExportSettings(
        format=format, export_dir=export_dir, output=output, version=version, input_size=input_size,
        quantize=quantize, calibration_images=calibration_images, calibration_count=calibration_count,
        mixed_precision=mixed_precision, checkpoint=checkpoint)
    run = ModelDir(model_dir)
    # LiteRT and ONNX files compute in float32 (or their own quantisation), whatever the training precision.
    set_precision(settings.mixed_precision if settings.format == "saved_model" else "none", run.model_config)
    net, label_map, config, checkpoint = run.load_model(which=settings.checkpoint)
    if settings.format != "saved_model":
        return _export_file(run, net, label_map, config, checkpoint, settings, postprocess=postprocess)
    path = saved_model.export_saved_model(net, label_map, settings.export_dir, settings.version,
                                          postprocess=postprocess)
    base = os.path.abspath(settings.export_dir)
    print(f"Exported {checkpoint} ({keras.mixed_precision.global_policy().name}) to {path}\n"
          f"  signatures: serving_default (encoded image bytes), serving_image_tensor (uint8)\n"
          f"  serve with: tensorflow_model_server --port=8500 --rest_api_port=8501 "
          f"--model_name={os.path.basename(base.rstrip('/'))} --model_base_path={base}")
    return path


def _export_file(run, net, label_map, config, checkpoint, settings, *, postprocess):
    path, size = settings.file_path(net.resize_policy)
    format, quantize = settings.format, settings.quantize
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot make {folder} for {path} ({error.strerror or error}); check --output / "
                        f"--export_dir.") from None
    if not os.access(folder, os.W_OK):
        raise DataError(f"cannot write {path}: {folder} is not writable; check --output / --export_dir.")
    kind = FILE_FORMATS[format]
    quantization = {}
    if kind.quantizes:
        from keras_retina.deploy.calibration import calibration_inputs

        calibration = None
        if quantize == "int8":
            calibration = calibration_inputs(run, config, size, net.resize_policy, settings.calibration_images,
                                             settings.calibration_count)
        quantization = {"quantize": quantize, "calibration": calibration}
    summary = file_formats.load(kind.exporter)(net, label_map, path, size, postprocess=postprocess, **quantization)
    calibrated = summary.get("calibration_images")
    print(f"Exported {checkpoint} to {path} ({summary['bytes'] / 2**20:.1f} MiB, {format}"
          f"{', ' + quantize if kind.quantizes else ''}"
          f"{f', calibrated on {calibrated} pictures' if calibrated else ''})"
          f"\n  input: images uint8 [{kind.batch or 'N'}, {size[0]}, {size[1]}, 3] RGB; pictures "
          f"of other sizes letterboxed (the model's scale, or less to fit; top left, padded)\n"
          f"  outputs: detection_boxes (normalised to the input), detection_scores, detection_classes, "
          f"num_detections; class names in the file's metadata\n"
          f"  {len(summary['ops'])} op types, all {kind.ops}: "
          f"{', '.join(summary['ops'])}\n"
          f"  run with: keras_retina predict --model={path} photo.jpg  (needs {kind.install})")
    return path
