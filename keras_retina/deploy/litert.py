"""LiteRT (TFLite) export: the whole detector in one flatbuffer of builtin ops, optionally quantised.

`export_litert(model, label_map, path, input_size, quantize="none", calibration=None,
postprocess=PostprocessSettings())` converts `deploy.fixed_size_detector.detection_function` (batch 1,
uint8 input, decoding, per-level top-k and class-wise NMS inside) with builtin ops only (checked
on the result, `op_names`), stores the `deploy.metadata` document in the flatbuffer's metadata,
writes `path` and returns a summary dict. UsageError: an unknown `quantize`, int8 without
`calibration`, an existing `path`.

`quantize`: "none" (float32), "float16" (weights stored as float16), "dynamic" (weights int8,
activations quantised on the fly) or "int8" (the network's weights and activations, calibrated on
`calibration`: uint8 `[H, W, 3]` letterboxed inputs; the postprocessing stays float32). Input uint8
and outputs float32 in every mode. `read_metadata(path)` -> the stored document's text (DataError
when the file has none).
"""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.python import convert as lite_convert
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from keras_retina.deploy import fixed_size_detector, metadata
from keras_retina.errors import DataError, UsageError
from keras_retina.modeling import detection_decoder

QUANTIZE = metadata.QUANTIZE
# Op types of the postprocessing that the network does not use: never quantised (see _convert).
POSTPROCESS_OPS = ("TOPK_V2", "GATHER", "GATHER_ND", "LOGISTIC", "STRIDED_SLICE", "SELECT_V2", "EXP", "UNPACK", "PACK",
                   "MINIMUM", "MAXIMUM", "DIV", "FLOOR_DIV", "FLOOR_MOD", "NON_MAX_SUPPRESSION_V5")


def export_litert(model, label_map, path, input_size, quantize="none", calibration=None, *, postprocess=None,
                  **renamed_keywords):
    """Writes the .tflite file at `path` (refused when it exists); returns a summary dict
    (path, bytes, ops, quantize, input_size, calibration_images). `postprocess`: PostprocessSettings
    fixed in the file."""
    postprocess = detection_decoder.postprocess_settings(postprocess, renamed_keywords, "export_litert")
    if quantize not in QUANTIZE:
        raise UsageError(f"--quantize={quantize}: choose one of {', '.join(QUANTIZE)}.")
    if quantize == "int8" and calibration is None:
        raise UsageError("int8 quantisation needs calibration images (the model_dir's data or --calibration_images).")
    if os.path.exists(path):
        raise UsageError(f"{path} exists already; remove it or export elsewhere.")
    decoder = postprocess.apply(model.decoder)
    detect = fixed_size_detector.detection_function(model, label_map, input_size, batch=1, decoder=decoder)
    calibration = None if calibration is None else [np.asarray(x, np.uint8)[None] for x in calibration]
    # Converted from a SavedModel: converting the tf.function directly leaves Keras 3 variables unfrozen (NaN outputs).
    with tempfile.TemporaryDirectory() as saved_model:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", detect)
        archive.write_out(saved_model, verbose=False)
        flatbuffer = _convert(saved_model, quantize, calibration)
    document = metadata.describe(label_map, input_size, 1, model.resize_policy, decoder, quantize)
    flatbuffer = with_metadata(flatbuffer, metadata.KEY, metadata.dumps(document).encode())
    ops = op_names(flatbuffer)
    outside = sorted(op for op in ops if op in ("CUSTOM", "DELEGATE") or op.startswith("Flex"))
    if outside:  # the converter was told builtins only; this guards the promise the file makes
        raise RuntimeError(f"the LiteRT graph needs non-builtin ops {outside}")
    partial = path + ".partial"
    with open(partial, "wb") as f:
        f.write(flatbuffer)
    os.replace(partial, path)
    return {"path": path, "bytes": len(flatbuffer), "ops": sorted(ops), "quantize": quantize,
            "input_size": list(input_size), "calibration_images": len(calibration or ())}


def _converter(saved_model):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _convert(saved_model, quantize, calibration):
    converter = _converter(saved_model)
    if quantize == "none":
        return converter.convert()
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
    if quantize == "dynamic":
        return converter.convert()
    # int8: calibrate (a float model with each tensor's observed range), then quantise with the
    # postprocessing kept float three ways, each needed: its tensors' ranges dropped, its tensors
    # denied by name and its op types denied (top-k, gather and slices pass their input's
    # quantisation on, and LOGISTIC has a fixed int8 range, so a range alone does not decide).
    converter.representative_dataset = lambda: ([x] for x in calibration)
    converter._experimental_calibrate_only = True  # as tf.lite.experimental.QuantizationDebugger does
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(converter.convert()))
    graph = model.subgraphs[0]
    keep_float = _postprocess_tensors(graph)
    for index in keep_float:
        graph.tensors[index].quantization = None
    return lite_convert.mlir_quantize(bytes(flatbuffer_utils.convert_object_to_bytearray(model)),
                                      denylisted_ops=list(POSTPROCESS_OPS),
                                      denylisted_nodes=sorted({graph.tensors[i].name.decode() for i in keep_float}))


def _postprocess_tensors(graph):
    """Indices of the tensors the postprocessing makes (named under POSTPROCESS_SCOPE, also when the
    converter fused names as "a;b") and the graph's outputs."""
    scope = fixed_size_detector.POSTPROCESS_SCOPE + "/"
    named = {i for i, tensor in enumerate(graph.tensors)
             if any(part.startswith(scope) for part in tensor.name.decode().split(";"))}
    return named | set(graph.outputs)


def op_names(flatbuffer):
    """The set of op names a flatbuffer uses (builtin names; "CUSTOM" / "Flex..." for others)."""
    builtin = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    names = set()
    for code in model.operatorCodes:
        value = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = builtin.get(value, f"BUILTIN_{value}")
        if name == "CUSTOM" and code.customCode:
            custom = code.customCode.decode()
            name = custom if custom.startswith("Flex") else "CUSTOM"
        names.add(name)
    return names


def with_metadata(flatbuffer, key, payload):
    """The flatbuffer with a metadata entry `key` holding `payload` bytes (replacing one of that name)."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(payload, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = key, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != key] + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_metadata(path, key=metadata.KEY):
    """The text stored under `key` in a .tflite file's metadata (DataError when it has none)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        model = schema.Model.GetRootAs(data, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name().decode() == key:
                return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode()
    except (OSError, UnicodeDecodeError, IndexError, TypeError) as error:
        raise DataError(f"{path}: cannot read it as a LiteRT flatbuffer ({type(error).__name__}: {error}).") from None
    except Exception as error:  # flatbuffers raises plain errors on a file that is not one
        raise DataError(f"{path}: not a LiteRT flatbuffer ({type(error).__name__}).") from None
    raise DataError(f"{path}: has no {key} metadata; export it with keras_retina export --format=tflite.")
