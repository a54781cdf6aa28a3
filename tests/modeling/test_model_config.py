"""ModelConfig and the way configs are declared (`model_config`, `config_fields`)."""

import dataclasses

import pytest

from keras_retina.config_fields import from_dict
from keras_retina.errors import DataError, UsageError
from keras_retina.modeling.model_config import ModelConfig


def test_defaults_are_the_papers():
    config = ModelConfig()
    assert (config.backbone, config.image_size, config.num_scales, config.aspect_ratios, config.anchor_size) == (
        "resnet50", 800, 3, (0.5, 1.0, 2.0), 4.0)
    assert (config.resize, config.max_image_size) == ("shorter_side", None)  # paper 5.1: 800, capped at 1333
    assert (config.fpn_filters, config.head_filters, config.head_convs, config.p6_input) == (256, 256, 4, "C5")
    assert (config.focal_alpha, config.focal_gamma, config.prior_probability) == (0.25, 2.0, 0.01)
    assert (config.foreground_iou, config.background_iou) == (0.5, 0.4)
    assert (config.score_threshold, config.pre_nms_top_k, config.nms_iou_threshold, config.max_detections) == (
        0.05, 1000, 0.5, 100)
    assert ModelConfig(classification_loss="focal_star").focal_gamma == 4.0  # FL*'s own default
    assert config.anchor_assigner == "max_iou"  # the paper's thresholds; ATSS is an option


def test_json_round_trip_and_unknown_settings():
    config = ModelConfig(num_classes=3, image_size=(128, 96), resize="square", aspect_ratios=[1.0, 2.0],
                         freeze_backbone_at=0)
    assert ModelConfig(**config.to_json()) == config  # lists from JSON come back as tuples
    # a config.json written before a setting existed reads as its default
    before = {k: v for k, v in config.to_json().items() if k not in ("anchor_assigner", "atss_top_k")}
    assert from_dict(ModelConfig, before, "config.json") == config
    with pytest.raises(DataError, match="config.json: unknown ModelConfig setting"):
        from_dict(ModelConfig, {**config.to_json(), "fpn_channels": 8}, "config.json")


@pytest.mark.parametrize("settings,message", [
    (dict(image_size=100, resize="square"), "image_size=100: with resize=square each side must be a positive "
     "multiple of 32"),
    (dict(image_size=(128, 90), resize="square"), "image_size=\\(128, 90\\)"),
    (dict(image_size=(128, 96)), "with resize=shorter_side it is the shorter side S, a positive int"),
    (dict(image_size=800, max_image_size=600), "max_image_size=600 is below image_size=800"),
    (dict(resize="stretch"), "resize='stretch': choose one of shorter_side, square"),
    (dict(backbone="vgg"), "backbone='vgg': choose one of resnet50, resnet101, torchvision_resnet50, .*, tiny"),
    (dict(anchor_geometry="caffe"), "anchor_geometry='caffe': choose one of centered, detectron2, torchvision"),
    (dict(head_norm="batch_norm"), "head_norm='batch_norm': choose one of none, group_norm"),
    (dict(focal_alpha=1.5), "focal_alpha=1.5: must be in \\[0, 1\\]"),
    (dict(backbone="tiny", freeze_backbone_at=2), "freeze_backbone_at=2: only ResNet backbones"),
    (dict(foreground_iou=0.3), "background_iou=0.4 is above foreground_iou=0.3"),
    (dict(anchor_assigner="nearest"), "anchor_assigner='nearest': choose one of max_iou, atss"),
    (dict(atss_top_k=0), "atss_top_k=0: must be positive"),
])
def test_bad_settings_name_the_setting(settings, message):
    with pytest.raises(UsageError, match=message):
        ModelConfig(**settings)


def test_resolved_decides_the_frozen_stages():
    assert ModelConfig(backbone_weights="imagenet").resolved().freeze_backbone_at == 2
    assert ModelConfig().resolved().freeze_backbone_at == 0
    given = dataclasses.replace(ModelConfig(backbone_weights="w.h5"), freeze_backbone_at=4)
    assert given.resolved().freeze_backbone_at == 4
