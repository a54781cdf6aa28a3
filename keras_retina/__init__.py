"""keras-retina: RetinaNet ("Focal Loss for Dense Object Detection", Lin et al.) in Keras 3.

The public names below are imported on first use, so `import keras_retina` (and the
`keras_retina` command before it has read its flags) does not start TensorFlow.
"""

__version__ = "0.1.0"

_PUBLIC = {
    "AnchorGenerator": "anchors", "generate_anchors": "anchors", "num_anchors": "anchors",
    "BACKBONES": "backbone", "build_backbone": "backbone",
    "FeaturePyramid": "fpn", "PredictionHead": "heads",
    "BACKGROUND": "label_encoder", "IGNORE": "label_encoder", "LabelEncoder": "label_encoder",
    "FocalLoss": "losses", "FocalStarLoss": "losses", "SmoothL1Loss": "losses",
    "ModelConfig": "model_config", "RetinaNet": "model", "build_parts": "builder",
    "DetectionDecoder": "postprocess", "DataError": "errors", "UsageError": "errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'keras_retina' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"keras_retina.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value
