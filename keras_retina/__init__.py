"""keras-retina: RetinaNet ("Focal Loss for Dense Object Detection", Lin et al.) in Keras 3.

Importing the package registers every layer, loss and schedule it defines with Keras, so
`keras.saving.load_model("model.keras")` works after `import keras_retina`.
"""

__version__ = "0.1.0"

from keras_retina.anchors import AnchorGenerator, generate_anchors, num_anchors
from keras_retina.backbone import BACKBONES, build_backbone
from keras_retina.builder import build_parts
from keras_retina.errors import DataError, UsageError
from keras_retina.fpn import FeaturePyramid
from keras_retina.heads import PredictionHead
from keras_retina.label_encoder import BACKGROUND, IGNORE, LabelEncoder
from keras_retina.losses import FocalLoss, FocalStarLoss, SmoothL1Loss
from keras_retina.model import RetinaNet
from keras_retina.model_config import ModelConfig
from keras_retina.optimization import WarmupPiecewiseSchedule
from keras_retina.postprocess import DetectionDecoder

__all__ = [
    "AnchorGenerator", "BACKBONES", "BACKGROUND", "DataError", "DetectionDecoder", "FeaturePyramid", "FocalLoss",
    "FocalStarLoss", "IGNORE", "LabelEncoder", "ModelConfig", "PredictionHead", "RetinaNet", "SmoothL1Loss",
    "UsageError", "WarmupPiecewiseSchedule", "build_backbone", "build_parts", "generate_anchors", "num_anchors",
]
