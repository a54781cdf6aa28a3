"""The paper's RetinaNet parts from a `ModelConfig` (compare torchvision's `retinanet_resnet50_fpn`).

`build_parts(config, **given)` -> dict of the parts `RetinaNet` is assembled from, each one the caller
did not give built from the config (whose settings for a given part are not used):

    backbone            keras.Model: images [B, H, W, 3] RGB 0-255 -> {"C3", "C4", "C5"}
    feature_pyramid     layer: {"C3".."C5"} -> {"P3".."P7"}
    classification_head layer: {"P3".."P7"} -> {level: [B, H_l, W_l, A * K]}
    box_head            layer: {"P3".."P7"} -> {level: [B, H_l, W_l, A * 4]}
    anchor_generator    anchors.AnchorGenerator; the heads, label_encoder and decoder use it
    label_encoder       ground truth -> per-anchor targets (decoder: raw outputs -> detections)
    classification_loss, box_loss   Keras losses with reduction "sum"

TypeError for an unknown part name; UsageError for a given loss whose reduction is not "sum".
"""

from keras_retina.errors import UsageError
from keras_retina.modeling import anchors as anchor_lib
from keras_retina.modeling import losses as loss_lib
from keras_retina.modeling.backbone import build_backbone
from keras_retina.modeling.detection_decoder import DetectionDecoder
from keras_retina.modeling.fpn import FeaturePyramid
from keras_retina.modeling.heads import PredictionHead
from keras_retina.modeling.label_encoder import LabelEncoder
from keras_retina.modeling.torchvision_anchors import TorchvisionAnchorGenerator

PART_NAMES = ("backbone", "feature_pyramid", "classification_head", "box_head", "anchor_generator",
              "label_encoder", "decoder", "classification_loss", "box_loss")


def anchor_generator(config):
    """The anchor generator of a ModelConfig: its geometry with its scales, ratios and size."""
    settings = dict(num_scales=config.num_scales, aspect_ratios=config.aspect_ratios,
                    anchor_size=config.anchor_size, name="anchor_generator")
    if config.anchor_geometry == "torchvision":
        return TorchvisionAnchorGenerator(**settings)
    return anchor_lib.AnchorGenerator(center_offset=0.0 if config.anchor_geometry == "detectron2" else 0.5,
                                      **settings)


def build_parts(config, **given):
    """dict part name -> part (module docstring); `config` a resolved `ModelConfig`."""
    unknown = sorted(set(given) - set(PART_NAMES))
    if unknown:
        raise TypeError(f"unknown RetinaNet part(s) {unknown}; parts are {PART_NAMES}.")
    parts = {name: part for name, part in given.items() if part is not None}
    if "anchor_generator" not in parts:
        parts["anchor_generator"] = anchor_generator(config)
    generator = parts["anchor_generator"]
    if "backbone" not in parts:
        parts["backbone"] = build_backbone(config.backbone, (None, None, 3), weights=config.backbone_weights,
                                           freeze_batchnorm=config.freeze_backbone_batchnorm,
                                           freeze_at=config.freeze_backbone_at, bn_epsilon=config.backbone_bn_epsilon)
    if "feature_pyramid" not in parts:
        parts["feature_pyramid"] = FeaturePyramid(filters=config.fpn_filters, max_level=generator.max_level,
                                                  p6_input=config.p6_input, extra_padding=config.fpn_extra_padding,
                                                  name="fpn")
    if "classification_head" not in parts:
        parts["classification_head"] = PredictionHead(
            config.num_classes, num_anchors=generator.anchors_per_location, filters=config.head_filters,
            num_convs=config.head_convs, prior_probability=config.prior_probability, norm=config.head_norm,
            name="classification_head")
    if "box_head" not in parts:
        parts["box_head"] = PredictionHead(4, num_anchors=generator.anchors_per_location, filters=config.head_filters,
                                           num_convs=config.head_convs, norm=config.head_norm, name="box_head")
    if "label_encoder" not in parts:
        parts["label_encoder"] = LabelEncoder(
            anchor_generator=generator, foreground_iou=config.foreground_iou, background_iou=config.background_iou,
            allow_low_quality_matches=config.allow_low_quality_matches, box_coder_weights=config.box_coder_weights,
            assigner=config.anchor_assigner, atss_top_k=config.atss_top_k, name="label_encoder")
    if "decoder" not in parts:
        parts["decoder"] = DetectionDecoder(
            anchor_generator=generator, box_coder_weights=config.box_coder_weights,
            score_threshold=config.score_threshold, pre_nms_top_k=config.pre_nms_top_k,
            nms_iou_threshold=config.nms_iou_threshold, max_detections=config.max_detections,
            box_voting_sigma=config.box_voting_sigma,
            clip_boxes=config.clip_boxes, drop_empty_boxes=config.drop_empty_boxes, name="detection_decoder")
    for name in ("classification_loss", "box_loss"):
        if name in parts and getattr(parts[name], "reduction", "sum") != "sum":
            raise UsageError(f"{name}={parts[name].name}: give a loss with reduction='sum'; RetinaNet divides the "
                             f"sum by the number of foreground anchors itself (paper 4.1).")
    if "classification_loss" not in parts:
        parts["classification_loss"] = loss_lib.classification_loss(
            config.classification_loss, config.focal_alpha, config.focal_gamma, config.focal_star_beta)
    if "box_loss" not in parts:
        parts["box_loss"] = loss_lib.box_loss(config.box_loss_type, config.smooth_l1_beta)
    return parts
