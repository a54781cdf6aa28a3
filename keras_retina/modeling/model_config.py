"""ModelConfig: every setting of the paper's RetinaNet, declared once with its default.

`RetinaNet(num_classes, backbone, image_size, **settings)` makes a ModelConfig from its
arguments and `builder.build_parts` makes the network's parts from it. The command line's
model flags, `config.json["model"]` and the resume check derive from these fields. Defaults
are the paper's (section and table in each help text).
"""

import dataclasses

from keras_retina.config_fields import NOT_NEGATIVE, POSITIVE, UNIT, as_tuples, check_fields, setting
from keras_retina.errors import DataError, UsageError
from keras_retina.modeling import anchors as anchor_lib
from keras_retina.modeling import atss, detection_decoder, transform
from keras_retina.modeling import backbone as backbone_lib
from keras_retina.modeling import losses as loss_lib
from keras_retina.modeling.backbone import BACKBONES, DEFAULT_BACKBONE, FREEZE_AT_CHECK, default_freeze_at
from keras_retina.modeling.fpn import EXTRA_PADDINGS, P6_INPUTS
from keras_retina.modeling.heads import NORMS, PRIOR_PROBABILITY
from keras_retina.modeling.label_encoder import ASSIGNERS, BACKGROUND_IOU, FOREGROUND_IOU
from keras_retina.ops import box_coder

_POSITIVE, _UNIT, _NOT_NEGATIVE = POSITIVE, UNIT, NOT_NEGATIVE


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The RetinaNet's settings (see each field's help); `num_classes` comes from the data.
    `resize_policy`: the `transform.ResizePolicy` of these settings, built once when the config is made."""

    num_classes: int = setting(None, "K, object classes (from the data's label map).", _POSITIVE, flag=False)
    backbone: str = setting(DEFAULT_BACKBONE, "Backbone network (paper 4.1: ResNet-50/101; torchvision_/detectron2_ "
                                 "ones "
                                 "take weights converted from those libraries).", choices=BACKBONES)
    image_size: object = setting(
        800, "Image scale S: the shorter side in pixels (paper 5.1, Table 1e: 600 or 800); with --resize=square "
        "the side of the square input, a multiple of 32 (an int, or (height, width)).",
        (lambda v: isinstance(v, int) and v > 0 or isinstance(v, tuple) and len(v) == 2,
         "must be a positive int (or (height, width) with resize=square)."))
    max_image_size: int = setting(
        None, "L: the longer side is capped at this (Detectron: 1000 at S=600, 1333 at S=800). Default: "
        "round(5/3 S). Not used with --resize=square.", _POSITIVE)
    pad_color: tuple = setting(
        (0.0, 0.0, 0.0), "RGB 0-255 colour pictures are padded with to their canvas: black, or the mean colour "
        "torchvision and detectron2 pad with (they pad after normalising; converted models: "
        "123.675,116.28,103.53).", (lambda v: len(v) == 3 and all(0 <= c <= 255 for c in v),
                                    "must be three numbers in 0..255 (R, G, B)."))
    resize_rounding: str = setting(
        "round", "Resized sides rounded half up (round: ours, detectron2's int(x + 0.5)) or floored (floor: "
        "torchvision's).", choices=transform.ROUNDINGS)
    resize_method: str = setting(
        "bilinear", "How pictures are resized: bilinear (TensorFlow's and torchvision's: no antialiasing, float "
        "result) or pil_bilinear (PIL's bilinear, as detectron2 resizes: antialiased when shrinking, rounded to "
        "uint8).", choices=transform.METHODS)
    canvas: str = setting(
        "buckets", "What pictures are padded to: buckets (a few fixed shapes per aspect ratio) or tight (each "
        "side up to a multiple of 32, as torchvision and detectron2 pad; more input shapes). --resize=square "
        "has one canvas either way.",
        choices=transform.CANVASES)
    resize: str = setting(
        "shorter_side", "How pictures become inputs: shorter_side (the paper's: shorter side S, longer side at "
        "most L, aspect kept, batches grouped by aspect ratio) or square (longer side fitted into an S x S "
        "square: one static shape, for TPUs and XLA).", choices=transform.POLICIES)
    backbone_weights: str = setting(None, "'imagenet' (keras.applications' download), a weights file, a registered "
                                    "name (keras_retina models: torchvision/resnet50_imagenet_v2 with "
                                    "--backbone=torchvision_resnet50), or empty for random init.")
    backbone_bn_epsilon: float = setting(
        None, "BatchNorm epsilon of the torchvision_/detectron2_ ResNets (default 1e-5, FrozenBatchNorm2d's; "
        "converted torchvision v1 models: 0, as torchvision evaluates its published v1 file).", _NOT_NEGATIVE,
        flag=False)
    freeze_backbone_batchnorm: bool = setting(True, "Keep ResNet BatchNorm statistics frozen (paper, Detectron).",
                                              flag=False)
    freeze_backbone_at: int = setting(
        None, "Freeze the ResNet stem and stages conv2..convK (Detectron's FREEZE_AT; 0: train everything). "
        "Default: 2 with --backbone_weights, 0 without.",
        FREEZE_AT_CHECK)
    num_scales: int = setting(anchor_lib.NUM_SCALES, "Anchor scales per octave (paper 4: 3).", _POSITIVE)
    aspect_ratios: tuple = setting(anchor_lib.ASPECT_RATIOS, "Anchor width/height ratios (paper 4: 0.5,1,2).",
                                   (lambda v: len(v) > 0 and all(r > 0 for r in v), "must be positive numbers."))
    anchor_size: float = setting(anchor_lib.ANCHOR_SIZE, "Anchor side in strides (4: areas 32^2..512^2).", _POSITIVE)
    anchor_geometry: str = setting(
        "centered", "Where anchors sit: centered (ours: cell centres, stride 2^l), detectron2 (cell corners) or "
        "torchvision (cell corners, integer sizes, stride side // grid, ratio-major order); see anchors.py and "
        "torchvision_anchors.py.", choices=anchor_lib.GEOMETRIES)
    fpn_filters: int = setting(256, "FPN channels (paper: 256).", _POSITIVE)
    p6_input: str = setting("C5", "P6 from C5 (paper) or P5 (Model Garden, torchvision v1).", choices=P6_INPUTS)
    fpn_extra_padding: str = setting("same", "Padding of the stride-2 P6/P7 convs: same (TensorFlow's) or "
                                     "symmetric (PyTorch's, for converted weights).", choices=EXTRA_PADDINGS)
    head_filters: int = setting(256, "Subnet channels (paper: 256).", _POSITIVE)
    head_convs: int = setting(4, "Hidden convs per subnet (paper: 4).", _NOT_NEGATIVE)
    head_norm: str = setting("none", "Normalisation in the subnets: none (paper) or group_norm (torchvision v2).",
                             choices=NORMS)
    prior_probability: float = setting(PRIOR_PROBABILITY, "pi of the classification bias init (paper 4.1: 0.01).",
                                       (lambda v: 0 < v < 1, "must be in (0, 1)."), flag=False)
    classification_loss: str = setting(
        "focal", "focal (paper), focal_star (FL*), balanced_ce (CE_alpha), or the quality-aware quality_focal "
        "(GFL) or varifocal (VarifocalNet), whose targets are the IoUs of the predicted boxes "
        "(modeling/quality_losses.py).", choices=loss_lib.CLASSIFICATION_LOSSES)
    focal_alpha: float = setting(None, "Focal loss alpha (default: 0.25, the paper's; 0.75 for varifocal; "
                                 "quality_focal has none).", _UNIT)
    focal_gamma: float = setting(None, "Focal loss gamma (default: 2 for FL, 4 for FL*; quality_focal's beta, "
                                 "varifocal's gamma: 2).", _NOT_NEGATIVE)
    focal_star_beta: float = setting(loss_lib.FOCAL_STAR_BETA, "beta of FL* (appendix A: 0).", flag=False)
    box_loss_type: str = setting(
        "smooth_l1", "Box regression loss: smooth_l1 (paper 4.1, on anchor offsets), l1 (on offsets), giou, diou "
        "or ciou (on the decoded boxes; modeling/box_losses.py).", choices=loss_lib.BOX_LOSS_TYPES)
    box_loss_weight: float = setting(1.0, "Weight of the box loss beside the classification loss (1: the paper's, "
                                     "and torchvision's and detectron2's for every box loss).", _NOT_NEGATIVE)
    smooth_l1_beta: float = setting(loss_lib.SMOOTH_L1_BETA, "Smooth-L1 transition point (Detectron: 1/9).",
                                    _NOT_NEGATIVE, flag=False)
    foreground_iou: float = setting(FOREGROUND_IOU, "IoU at or above which an anchor is foreground (paper 4).",
                                    _UNIT, flag=False)
    background_iou: float = setting(BACKGROUND_IOU, "IoU below which an anchor is background (paper 4).",
                                    _UNIT, flag=False)
    allow_low_quality_matches: bool = setting(True, "Give each box its best anchor(s) (the RPN rule).",
                                              flag=False)
    anchor_assigner: str = setting(
        "max_iou", "Which anchors train on a box: max_iou (paper 4: IoU >= 0.5 foreground, < 0.4 background) or "
        "atss (adaptive thresholds per box, Zhang et al. 2020; modeling/atss.py).", choices=ASSIGNERS)
    atss_top_k: int = setting(atss.TOP_K, "ATSS candidate locations per level and box.", _POSITIVE, flag=False)
    box_coder_weights: tuple = setting(box_coder.DEFAULT_WEIGHTS, "(wy, wx, wh, ww) of the box coder.",
                                       (lambda v: len(v) == 4 and all(w > 0 for w in v),
                                        "must be four positive numbers."), flag=False)
    score_threshold: float = setting(detection_decoder.SCORE_THRESHOLD, "Detection score threshold (paper 4.1: 0.05).",
                                     detection_decoder.CHECKS["score_threshold"], flag=False)
    pre_nms_top_k: int = setting(detection_decoder.PRE_NMS_TOP_K, "Candidates per level (paper 4.1: 1000).",
                                 detection_decoder.CHECKS["pre_nms_top_k"], flag=False)
    nms_iou_threshold: float = setting(detection_decoder.NMS_IOU_THRESHOLD, "NMS IoU (paper 4.1: 0.5).",
                                       detection_decoder.CHECKS["nms_iou_threshold"], flag=False)
    max_detections: int = setting(detection_decoder.MAX_DETECTIONS, "Detections per image (COCO: 100).",
                                  detection_decoder.CHECKS["max_detections"], flag=False)
    box_voting_sigma: float = setting(detection_decoder.BOX_VOTING_SIGMA, "Score voting after NMS: 0 (off, the "
                                      "paper's) or its sigma (PAA: 0.025).",
                                      detection_decoder.CHECKS["box_voting_sigma"], flag=False)
    clip_boxes: str = setting(
        "before_nms", "Boxes clipped to the picture before NMS (ours, torchvision's) or after it (detectron2's).",
        choices=detection_decoder.CLIPPING, flag=False)
    drop_empty_boxes: bool = setting(
        True, "Drop boxes with no area once clipped (ours, detectron2's); torchvision keeps them.", flag=False)

    def __post_init__(self):
        for field in dataclasses.fields(self):  # lists from JSON or callers -> tuples
            object.__setattr__(self, field.name, as_tuples(getattr(self, field.name)))
        if self.focal_gamma is None:
            object.__setattr__(self, "focal_gamma", loss_lib.default_gamma(self.classification_loss))
        if self.focal_alpha is None:
            object.__setattr__(self, "focal_alpha", loss_lib.default_alpha(self.classification_loss))
        check_fields(self)
        try:  # built once here: the model, training, check-data and export read `config.resize_policy`
            object.__setattr__(self, "resize_policy", transform.policy_from_config(self))
        except ValueError as error:
            raise UsageError(str(error)) from None
        if self.background_iou > self.foreground_iou:
            raise UsageError(f"background_iou={self.background_iou} is above foreground_iou={self.foreground_iou}.")
        if self.classification_loss == "focal_star" and self.focal_gamma <= 0:
            raise UsageError(f"focal_gamma={self.focal_gamma}: FL* needs a gamma above 0.")
        backbone_lib.check_settings(self.backbone, self.backbone_weights, self.freeze_backbone_at,
                                    self.backbone_bn_epsilon)

    def resolved(self):
        """This config with `freeze_backbone_at` decided (`backbone.default_freeze_at` if unset)."""
        if self.freeze_backbone_at is not None:
            return self
        return dataclasses.replace(self, freeze_backbone_at=default_freeze_at(self.backbone, self.backbone_weights))

    def to_json(self):
        """A JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def upgrade_settings(values, converted_from=None):
    """Model settings as a config.json holds them -> settings whose model loads and runs as it was
    saved: no "resize" key -> resize="square"; no "drop_empty_boxes" -> False for torchvision_
    backbones (they keep empty boxes, as torchvision does), else True. `converted_from`: the weight
    file a converted model_dir names; a torchvision v1 conversion without `backbone_bn_epsilon` (its
    BatchNorm computed with 1e-5, not torchvision's 0) is refused (DataError) with the command that
    converts it again."""
    if not isinstance(values, dict) or "image_size" not in values:
        return values
    values = dict(values)
    if "resize" not in values:
        values["resize"] = "square"
    if "drop_empty_boxes" not in values:
        values["drop_empty_boxes"] = not str(values.get("backbone", "")).startswith("torchvision_")
    if (converted_from and "backbone_bn_epsilon" not in values and values.get("p6_input") == "P5"
            and str(values.get("backbone", "")).startswith("torchvision_")):
        raise DataError(f"this model_dir was converted from torchvision's v1 RetinaNet ({converted_from}) by an "
                        f"earlier keras_retina, with BatchNorm epsilon 1e-5 where torchvision uses 0: its detections "
                        f"are not torchvision's. Convert it again: keras_retina convert --source=torchvision "
                        f"--weights={converted_from} --model_dir=NEW_FOLDER")
    return values
