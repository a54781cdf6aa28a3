"""The file formats `keras_retina export --format` writes beside SavedModels, and what runs them:
one `FileFormat` per format in FILE_FORMATS, the one place a format is added (CONTRIBUTING.md).

A FileFormat names its exporter and its runtime as "module:attribute", imported when used
(`load`; the object itself also does), so reading this table imports neither TensorFlow's
converters nor any runtime:

- `exporter(model, label_map, path, input_size, *, postprocess, **quantization) -> summary dict`
  (path, bytes, ops, input_size; calibration_images when calibrated) writes one file of a fixed
  input size from `deploy.fixed_size_detector.detection_function`, its `deploy.metadata` document
  inside; `quantization` (quantize=, calibration=) is given only to a format that `quantizes`;
- `runtime(path, num_threads)` -> a `deploy.runtime.DeployedModel` running the file;
- `requires` (or None): called when the export settings are made, a UsageError with the install
  line when the converter is missing.

The file's name ends in `.<name>`; `by_suffix(path)` finds a file's format (None: none of them).
"""

import dataclasses
import importlib
import os


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileFormat:
    """One exportable file format (module docstring).

    name: the --format value and the file's suffix (without the dot).
    title: how people call it.
    exporter, runtime, requires: "module:attribute" or the object (module docstring); requires may be None.
    batch: the file's fixed batch size (None: any).
    ops: what the export checks every op of the graph is ("builtin", "standard ONNX").
    quantizes: it takes --quantize (and int8 calibration).
    install: the pip line of its runtime, for messages.
    """

    name: str
    title: str
    exporter: str
    runtime: str
    requires: str | None
    batch: int | None
    ops: str
    quantizes: bool
    install: str

    @property
    def suffix(self):
        return f".{self.name}"


FILE_FORMATS = {f.name: f for f in (
    FileFormat(name="tflite", title="LiteRT", exporter="keras_retina.deploy.litert:export_litert",
               runtime="keras_retina.deploy.runtime:LiteRTModel", requires=None, batch=1, ops="builtin",
               quantizes=True, install='pip install "keras-retina[litert]" (ai-edge-litert)'),
    FileFormat(name="onnx", title="ONNX", exporter="keras_retina.deploy.onnx:export_onnx",
               runtime="keras_retina.deploy.runtime:OnnxModel", requires="keras_retina.deploy.onnx:require_converter",
               batch=None, ops="standard ONNX", quantizes=False,
               install='pip install "keras-retina[onnx]" (onnxruntime)'),
)}


def export_formats():
    """Every `--format`: "saved_model" (a folder of versions for TF Serving), then the file formats."""
    return ("saved_model", *FILE_FORMATS)


def load(reference):
    """The object a "module:attribute" reference names (an object given instead: itself)."""
    if not isinstance(reference, str):
        return reference
    module, attribute = reference.split(":")
    return getattr(importlib.import_module(module), attribute)


def by_suffix(path):
    """The FileFormat of a file named `path` (by its suffix, any case), or None."""
    suffix = os.path.splitext(path)[1].lower()
    return next((f for f in FILE_FORMATS.values() if f.suffix == suffix), None)
