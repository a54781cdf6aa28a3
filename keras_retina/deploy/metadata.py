"""What a LiteRT or ONNX file says about itself: one JSON document stored inside the file.

LiteRT: the flatbuffer's `metadata` entry named KEY; ONNX: the model's `metadata_props` entry KEY.

    {"format": FORMAT, "version": keras_retina version,
     "input": {"name": "images", "height": H, "width": W, "dtype": "uint8", "channels": "RGB",
               "batch": 1 | null, "pad_color": [r, g, b], "resize_rounding", "resize_method",
               "resize": {"resize", "image_size", "max_image_size"}},
     "outputs": {name: meaning}, "label_map": [{"id", "name"}, ...] (index = the model's class),
     "postprocess": {decoder settings}, "quantize": one of QUANTIZE}

`describe(...)` builds it, `dumps` writes it; `resize_policy(document)` -> the model's `ResizePolicy`.
`parse(text, path)` reads a file's document, which is untrusted: only JSON, the fields it uses
checked, DataError naming the file when one is missing or malformed.
"""

import json

from keras_retina.deploy.file_formats import export_formats
from keras_retina.deploy.fixed_size_detector import INPUT_NAME, MAX_SIDE
from keras_retina.errors import DataError
from keras_retina.modeling import detection_decoder
from keras_retina.modeling.transform import ResizePolicy
from keras_retina.version import __version__

KEY = "keras_retina"
FORMAT = "keras_retina.detector/1"
EXPORT_FORMATS = export_formats()  # `keras_retina export --format`
QUANTIZE = ("none", "float16", "dynamic", "int8")  # LiteRT's modes (`deploy.litert`); ONNX files are "none"
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
        "input": {"name": INPUT_NAME, "height": int(input_size[0]), "width": int(input_size[1]), "dtype": "uint8",
                  "channels": "RGB", "batch": batch, "pad_color": [float(c) for c in policy.pad_color],
                  "resize_rounding": policy.rounding, "resize_method": policy.method, "resize": policy.to_json()},
        "outputs": dict(OUTPUTS),
        "label_map": [{"id": int(e["id"]), "name": str(e["name"])} for e in label_map],
        "postprocess": {key: config[key] for key in detection_decoder.SETTINGS + detection_decoder.CONVENTIONS},
        "quantize": quantize,
    }


def resize_policy(document):
    """The model's ResizePolicy from a (parsed) document."""
    size = document["input"]
    resize = size["resize"]
    image_size = resize["image_size"] if isinstance(resize["image_size"], int) else tuple(resize["image_size"])
    return ResizePolicy(image_size, resize["max_image_size"], resize["resize"], size["pad_color"],
                        size["resize_rounding"], method=size.get("resize_method", "bilinear"))


def dumps(document):
    return json.dumps(document, separators=(",", ":"))


def parse(text, path):
    """The checked document from a file's metadata text (bytes or str)."""
    try:
        document = json.loads(text)
        if document.get("format") != FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT!r}")
        size = document["input"]
        if not all(isinstance(size[k], int) and 0 < size[k] <= MAX_SIDE for k in ("height", "width")):
            raise ValueError(f"input height and width must be integers in 1..{MAX_SIDE}")
        if size["batch"] not in (1, None):
            raise ValueError("input batch must be 1 or null")
        if len(size["pad_color"]) != 3 or not all(isinstance(c, (int, float)) and 0 <= c <= 255
                                                  for c in size["pad_color"]):
            raise ValueError("input pad_color needs 3 numbers in 0..255")
        resize_policy(document)  # S, L, policy and rounding: ResizePolicy's own checks
        if not isinstance(document["postprocess"].get("drop_empty_boxes", True), bool):
            raise ValueError("postprocess drop_empty_boxes must be true or false")
        if document["quantize"] not in QUANTIZE:
            raise ValueError(f"quantize {document['quantize']!r} is none of {QUANTIZE}")
        for entry in document["label_map"]:
            if not isinstance(entry["id"], int) or not isinstance(entry["name"], str):
                raise ValueError(f"label_map entry {entry!r} needs an integer id and a name")
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as error:
        raise DataError(f"{path}: its {KEY} metadata is not a keras_retina detector's "
                        f"({type(error).__name__}: {error}).") from None
    return document
