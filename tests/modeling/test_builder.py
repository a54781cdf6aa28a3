"""The paper's parts from a ModelConfig (`keras_retina.modeling.builder`)."""

import pytest

from keras_retina.errors import UsageError
from keras_retina.modeling import builder, losses
from keras_retina.modeling.anchors import AnchorGenerator
from keras_retina.modeling.model_config import ModelConfig


def _config(**settings):
    return ModelConfig(num_classes=5, backbone="tiny", image_size=64, fpn_filters=8, head_filters=8, head_convs=1,
                       **settings).resolved()


def test_parts_from_the_config():
    parts = builder.build_parts(_config(num_scales=2, aspect_ratios=(1.0, 3.0), anchor_size=3.0,
                                        focal_alpha=0.3, smooth_l1_beta=0.2, score_threshold=0.2))
    assert set(parts) == set(builder.PART_NAMES)
    generator = parts["anchor_generator"]
    assert (generator.num_scales, generator.aspect_ratios, generator.anchor_size) == (2, (1.0, 3.0), 3.0)
    assert parts["classification_head"].num_anchors == 4 and parts["classification_head"].values_per_anchor == 5
    assert parts["box_head"].num_anchors == 4 and parts["box_head"].prior_probability is None
    assert parts["label_encoder"].anchor_generator is generator and parts["decoder"].anchor_generator is generator
    assert parts["decoder"].score_threshold == 0.2 and parts["feature_pyramid"].max_level == 7
    assert isinstance(parts["classification_loss"], losses.FocalLoss) and parts["classification_loss"].alpha == 0.3
    assert parts["box_loss"].beta == 0.2 and parts["box_loss"].reduction == "sum"


def test_a_given_generator_reaches_every_part_that_needs_it():
    generator = AnchorGenerator(min_level=3, max_level=6, num_scales=1, aspect_ratios=(1.0,))
    parts = builder.build_parts(_config(), anchor_generator=generator)
    assert parts["feature_pyramid"].max_level == 6 and parts["box_head"].num_anchors == 1
    assert parts["label_encoder"].anchor_generator is generator and parts["decoder"].anchor_generator is generator


def test_given_losses_must_sum():
    with pytest.raises(UsageError, match="classification_loss=focal_loss: give a loss with reduction='sum'"):
        builder.build_parts(_config(), classification_loss=losses.FocalLoss())
    with pytest.raises(TypeError, match="unknown RetinaNet part"):
        builder.build_parts(_config(), head=None)
