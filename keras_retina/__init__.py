"""keras-retina: RetinaNet ("Focal Loss for Dense Object Detection", Lin et al.) in Keras 3."""

__version__ = "0.1.0"

import os as _os
import sys as _sys

if _sys.argv and _os.path.basename(_sys.argv[0]) in ("keras_retina", "cli.py"):
    # The command line keeps TensorFlow's start-up chatter out of the user's way.
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_retina.anchors import generate_anchors, num_anchors
from keras_retina.backbone import BACKBONES, build_backbone
from keras_retina.fpn import FeaturePyramid
from keras_retina.heads import PredictionHead
from keras_retina.label_encoder import BACKGROUND, IGNORE, LabelEncoder
from keras_retina.losses import FocalLoss, FocalStarLoss, SmoothL1Loss
from keras_retina.model import RetinaNet
from keras_retina.postprocess import DetectionDecoder

__all__ = [
    "BACKBONES", "BACKGROUND", "IGNORE", "DetectionDecoder", "FeaturePyramid", "FocalLoss",
    "FocalStarLoss", "LabelEncoder", "PredictionHead", "RetinaNet", "SmoothL1Loss",
    "build_backbone", "generate_anchors", "num_anchors",
]
