"""A LiteRT (.tflite) or ONNX (.onnx) file exported by keras_retina, run with its own runtime.

`load(path, num_threads=None)` -> `DeployedModel` by extension (`deploy.file_formats`): .tflite in
ai-edge-litert's `Interpreter` (`LiteRTModel`), .onnx in an onnxruntime `InferenceSession` on the CPU
(`OnnxModel`); optional extras, a missing one is a UsageError with its install line. DataError: no
such file, unloadable, graph unlike its metadata.

`DeployedModel`:
- `metadata`: the file's `deploy.metadata` document; `input_size`: (H, W); `label_map`; `policy`;
- `run(images)`: uint8 `[B, H, W, 3]` -> {output name: numpy array} (B must be 1 for LiteRT); a
  wrong shape or dtype is a ValueError naming both;
- `detect_picture(pixels)`: a uint8 `[h, w, 3]` picture of any size -> (boxes `[n, 4]` yxyx
  normalised to the picture, scores `[n]`, category ids `[n]`, class names), letterboxed in and
  mapped back as `modeling.transform` does (boxes left with no area in the picture dropped when
  the model drops empty boxes).
"""

import os

import numpy as np

from keras_retina.deploy import file_formats, fixed_size_detector
from keras_retina.deploy import metadata as metadata_lib
from keras_retina.errors import DataError, UsageError
from keras_retina.modeling import transform


def load(path: str, num_threads: int | None = None) -> "DeployedModel":
    """The DeployedModel of a file of one of `file_formats.FILE_FORMATS` (`num_threads`: the runtime's,
    None = its default)."""
    return file_formats.load(check_file(path).runtime)(path, num_threads)


def check_file(path: str):
    """The file format of `path`, or a UsageError / DataError naming --model (`load` without loading)."""
    suffixes = " or ".join(f.suffix for f in file_formats.FILE_FORMATS.values())
    if os.path.isdir(path):
        raise UsageError(f"--model={path} is a folder; give a {suffixes} file (an exported SavedModel "
                         f"version folder goes in --saved_model).")
    if not os.path.isfile(path):
        raise DataError(f"--model={path}: no such file.")
    found = file_formats.by_suffix(path)
    if found is None:
        raise UsageError(f"--model={path}: give a {suffixes} file exported by keras_retina export "
                         f"(a SavedModel goes in --saved_model).")
    return found


class DeployedModel:
    """The runtime-independent half (see module docstring)."""

    def __init__(self, path, metadata):
        self.path = path
        self.metadata = metadata_lib.parse(metadata, path)
        size = self.metadata["input"]
        self.input_size = (size["height"], size["width"])
        self.policy = metadata_lib.resize_policy(self.metadata)
        self.label_map = self.metadata["label_map"]
        self.drop_empty_boxes = self.metadata["postprocess"].get("drop_empty_boxes", True)
        self._names = {entry["id"]: entry["name"] for entry in self.label_map}

    def _expected_shape(self):
        """[B, H, W, 3] of the input (B None: any batch)."""
        return [self.metadata["input"]["batch"], *self.input_size, 3]

    def _check_graph(self, name, shape, dtype, outputs):
        """DataError naming the file when its graph's input or outputs are not what its metadata says."""
        expected = self._expected_shape()
        shape = [s if isinstance(s, int) and s > 0 else None for s in shape]
        if (name, shape, dtype) != (fixed_size_detector.INPUT_NAME, expected, "uint8") or set(outputs) != set(
                metadata_lib.OUTPUTS):
            raise DataError(f"{self.path}: its graph ({name} {dtype} {shape} -> {sorted(outputs)}) is not what its "
                            f"metadata says ({fixed_size_detector.INPUT_NAME} uint8 {expected} -> "
                            f"{sorted(metadata_lib.OUTPUTS)}).")

    def run(self, images):
        """uint8 `[B, H, W, 3]` -> outputs (B = 1 for LiteRT); another shape or dtype is a ValueError
        naming both (LiteRT's signature runner would resize its input and fail inside its delegate)."""
        expected = self._expected_shape()
        shape = tuple(getattr(images, "shape", ()))
        if getattr(images, "dtype", None) != np.uint8 or len(shape) != 4 or any(
                e is not None and e != s for e, s in zip(expected, shape)):
            raise ValueError(f"{self.path}: input images must be uint8 [{expected[0] or 'N'}, {self.input_size[0]}, "
                             f"{self.input_size[1]}, 3] (RGB, letterboxed: transform.letterbox); got "
                             f"{getattr(images, 'dtype', type(images).__name__)} {list(shape)}.")
        return self._run(images)

    def _run(self, images):
        raise NotImplementedError

    def detect_picture(self, pixels):
        image, scale = transform.letterbox(pixels, self.input_size, self.policy)
        out = self.run(image[None])
        n = int(out["num_detections"][0])
        boxes = transform.to_picture(out["detection_boxes"][0, :n], scale, self.input_size,
                                               pixels.shape[:2], self.policy.rounding)
        scores, classes = out["detection_scores"][0, :n], out["detection_classes"][0, :n].astype(np.int64)
        if self.drop_empty_boxes:  # the file clipped to its input; a box in the padding is empty in the picture
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        return boxes, scores, classes, [self._names.get(int(c), str(c)) for c in classes]


def _missing_runtime(name):
    """The UsageError for a file whose runtime is not installed."""
    return UsageError(f"running a .{name} file needs {file_formats.FILE_FORMATS[name].install}.")


class LiteRTModel(DeployedModel):
    def __init__(self, path, num_threads):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise _missing_runtime("tflite") from None
        from keras_retina.deploy.litert import read_metadata

        super().__init__(path, read_metadata(path))
        try:
            self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
            self._runner = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as error:
            raise DataError(f"{path}: LiteRT cannot load it ({error}).") from None
        inputs, outputs = self._runner.get_input_details(), self._runner.get_output_details()
        name, detail = next(iter(inputs.items())) if len(inputs) == 1 else (None, {"shape": [], "dtype": None})
        self._check_graph(name, [int(s) for s in detail["shape"]], getattr(detail["dtype"], "__name__", None),
                          outputs)

    def _run(self, images):
        return self._runner(**{fixed_size_detector.INPUT_NAME: images})


class OnnxModel(DeployedModel):
    def __init__(self, path, num_threads):
        try:
            import onnxruntime
        except ImportError:
            raise _missing_runtime("onnx") from None
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types (Fail, InvalidGraph...)
            raise DataError(f"{path}: onnxruntime cannot load it ({type(error).__name__}: "
                            f"{str(error)[:300]}).") from None
        metadata = self.session.get_modelmeta().custom_metadata_map.get(metadata_lib.KEY)
        if metadata is None:
            raise DataError(f"{path}: has no {metadata_lib.KEY} metadata; export it with "
                            f"keras_retina export --format=onnx.")
        super().__init__(path, metadata)
        self._outputs = [o.name for o in self.session.get_outputs()]
        inputs = self.session.get_inputs()
        name, shape, kind = (inputs[0].name, inputs[0].shape, inputs[0].type) if len(inputs) == 1 else (None, [], None)
        self._check_graph(name, shape, "uint8" if kind == "tensor(uint8)" else kind, self._outputs)

    def _run(self, images):
        values = self.session.run(self._outputs, {fixed_size_detector.INPUT_NAME: images})
        return dict(zip(self._outputs, values))
