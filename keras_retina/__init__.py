"""keras-retina: RetinaNet ("Focal Loss for Dense Object Detection", Lin et al.) in Keras 3.

Everything a user calls is importable from here, so code does not depend on module paths
(docs/python-api.md). Importing the package registers every layer, loss and schedule with Keras,
so `keras.saving.load_model("model.keras")` works after `import keras_retina`; the data, training,
deployment and conversion functions are imported when first used.
"""

import importlib

from keras_retina.errors import DataError, UsageError
from keras_retina.modeling.anchors import AnchorGenerator, generate_anchors, num_anchors
from keras_retina.modeling.backbone import BACKBONES, build_backbone
from keras_retina.modeling.builder import build_parts
from keras_retina.modeling.detection_decoder import DetectionDecoder, PostprocessSettings
from keras_retina.modeling.fpn import FeaturePyramid
from keras_retina.modeling.heads import PredictionHead
from keras_retina.modeling.label_encoder import BACKGROUND, IGNORE, LabelEncoder
from keras_retina.modeling.losses import FocalLoss, FocalStarLoss, SmoothL1Loss
from keras_retina.modeling.model_config import ModelConfig
from keras_retina.modeling.retinanet import RetinaNet
from keras_retina.modeling.transform import ResizePolicy, letterbox, to_model_input, to_original, to_picture
from keras_retina.training.optimizer import WarmupPiecewiseSchedule
from keras_retina.version import __version__


def _from_pretrained(cls, name):
    """`RetinaNet.from_pretrained(NAME)`: a registered detector (downloaded and converted once into
    the cache: `keras_retina models`) or a model_dir, with its label map as `model.label_map`."""
    from keras_retina.pretrained.registry import from_pretrained

    return from_pretrained(name)


# Defined here, not in modeling/, which sits below the pretrained weights it would reach.
RetinaNet.from_pretrained = classmethod(_from_pretrained)

# name -> "module:attribute", imported on first use (`__getattr__`)
_LAZY = {
    "DataConfig": "keras_retina.data.data_config:DataConfig",
    "TrainConfig": "keras_retina.training.train_config:TrainConfig",
    "ModelDir": "keras_retina.model_dir:ModelDir",
    "open_sources": "keras_retina.data.splits:open_sources",
    "read_coco_json": "keras_retina.data.readers.coco_json:read_coco_json",
    "tfrecord_source": "keras_retina.data.readers.tfrecord:tfrecord_source",
    "tfds_source": "keras_retina.data.readers.tfds_coco:tfds_source",
    "DatasetSource": "keras_retina.data.source:DatasetSource",
    "train_dataset": "keras_retina.data.pipeline:train_dataset",
    "eval_dataset": "keras_retina.data.pipeline:eval_dataset",
    "check_data": "keras_retina.data.check:check_data",
    "train": "keras_retina.training.trainer:train",
    "evaluate_coco": "keras_retina.evaluation.coco_metrics:evaluate_coco",
    "evaluate_model_dir": "keras_retina.evaluation.evaluate:evaluate_model_dir",
    "evaluate_file": "keras_retina.evaluation.evaluate:evaluate_file",
    "export": "keras_retina.deploy.export:export",
    "ExportSettings": "keras_retina.deploy.export:ExportSettings",
    "export_saved_model": "keras_retina.deploy.saved_model:export_saved_model",
    "load_deployed": "keras_retina.deploy.runtime:load",
    "convert": "keras_retina.pretrained.convert:convert",
    "build_converted": "keras_retina.pretrained.convert:build_converted",
    "picture_detector": "keras_retina.inference.detector:picture_detector",
    "predict_pictures": "keras_retina.inference.pictures:predict_pictures",
    "batch_detector": "keras_retina.inference.detector:batch_detector",
    "detect_video": "keras_retina.inference.video:detect_video",
    "VideoSettings": "keras_retina.inference.video:VideoSettings",
    "detect_tiled": "keras_retina.inference.tiling:detect_tiled",
    "TileSettings": "keras_retina.inference.tiling:TileSettings",
    "open_large_picture": "keras_retina.ops.large_picture:open_large_picture",
    "tile_dataset": "keras_retina.data.tile_dataset:tile_dataset",
    "write_report": "keras_retina.evaluation.report:write_report",
    "build_report": "keras_retina.evaluation.report:build_report",
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_retina' has no attribute {name!r}")
    module, attribute = _LAZY[name].split(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [  # noqa: RUF022 - grouped: the eagerly imported names, then the lazy ones
    "__version__",
    "AnchorGenerator", "BACKBONES", "BACKGROUND", "DataError", "DetectionDecoder", "FeaturePyramid", "FocalLoss",
    "FocalStarLoss", "IGNORE", "LabelEncoder", "ModelConfig", "PostprocessSettings", "PredictionHead",
    "ResizePolicy", "RetinaNet", "SmoothL1Loss", "UsageError", "WarmupPiecewiseSchedule", "build_backbone",
    "build_parts", "generate_anchors", "letterbox", "num_anchors", "to_model_input", "to_original", "to_picture",
    "DataConfig", "TrainConfig", "ModelDir", "open_sources", "read_coco_json", "tfrecord_source", "tfds_source",
    "DatasetSource", "train_dataset", "eval_dataset", "check_data", "train", "evaluate_coco", "evaluate_model_dir",
    "evaluate_file", "export", "ExportSettings", "export_saved_model", "load_deployed", "convert", "build_converted",
    "picture_detector", "predict_pictures", "batch_detector", "detect_video", "VideoSettings", "detect_tiled",
    "TileSettings", "open_large_picture", "tile_dataset", "write_report", "build_report",
]
