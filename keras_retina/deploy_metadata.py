"""What a LiteRT or ONNX file says about itself: one JSON document stored inside the file.

LiteRT: the flatbuffer's `metadata` entry named KEY (its buffer holds the UTF-8 JSON).
ONNX: the model's `metadata_props` entry KEY (onnxruntime: `session.get_modelmeta().custom_metadata_map`).

    {"format": FORMAT, "version": keras_retina version,
     "input": {"name": "images", "height": H, "width": W, "dtype": "uint8", "channels": "RGB",
               "batch": 1 or null, "pad_color": [r, g, b] (0-255), "resize_rounding": "round"|"floor"},
     "outputs": {name: meaning},
     "label_map": [{"id": category id, "name": str}, ...] (index = the model's class),
     "postprocess": {"score_threshold", "pre_nms_top_k", "nms_iou_threshold", "max_detections"},
     "quantize": "none"|"float16"|"dynamic"|"int8"}

The document of a file someone hands us is untrusted: `parse` only reads JSON and checks the
fields it uses, naming the file when one is missing or malformed.
"""

import json

from keras_retina import __version__
from keras_retina.errors import DataError

KEY = "keras_retina"
FORMAT = "keras_retina.detector/1"
EXPORT_FORMATS = ("saved_model", "tflite", "onnx")  # `keras_retina export --format`
QUANTIZE = ("none", "float16", "dynamic", "int8")  # LiteRT's modes (`litert_export`); ONNX files are "none"
OUTPUTS = {
    "detection_boxes": "float32 [B, D, 4] ymin, xmin, ymax, xmax normalised to the input (0..1)",
    "detection_scores": "float32 [B, D] descending",
    "detection_classes": "float32 [B, D] category id (label_map[i].id), 0 on padding rows",
    "num_detections": "float32 [B] valid rows",
}


def describe(label_map, input_size, batch, policy, decoder, quantize):
    """The document for a file exported from a model with this label map, resize policy and decoder."""
    config = decoder.get_config()
    return {
        "format": FORMAT, "version": __version__,
        "input": {"name": "images", "height": int(input_size[0]), "width": int(input_size[1]), "dtype": "uint8",
                  "channels": "RGB", "batch": batch, "pad_color": [float(c) for c in policy.pad_color],
                  "resize_rounding": policy.rounding},
        "outputs": dict(OUTPUTS),
        "label_map": [{"id": int(e["id"]), "name": str(e["name"])} for e in label_map],
        "postprocess": {k: config[k] for k in ("score_threshold", "pre_nms_top_k", "nms_iou_threshold",
                                               "max_detections")},
        "quantize": quantize,
    }


def dumps(document):
    return json.dumps(document, separators=(",", ":"))


def parse(text, path):
    """The checked document from a file's metadata text (bytes or str)."""
    try:
        document = json.loads(text)
        if document.get("format") != FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT!r}")
        size = document["input"]
        if not all(isinstance(size[k], int) and size[k] > 0 for k in ("height", "width")):
            raise ValueError("input height and width must be positive integers")
        if len(size["pad_color"]) != 3 or size["resize_rounding"] not in ("round", "floor"):
            raise ValueError("input pad_color needs 3 values and resize_rounding round or floor")
        if document["quantize"] not in QUANTIZE:
            raise ValueError(f"quantize {document['quantize']!r} is none of {QUANTIZE}")
        for entry in document["label_map"]:
            if not isinstance(entry["id"], int) or not isinstance(entry["name"], str):
                raise ValueError(f"label_map entry {entry!r} needs an integer id and a name")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise DataError(f"{path}: its {KEY} metadata is not a keras_retina detector's "
                        f"({type(error).__name__}: {error}).") from None
    return document
