import numpy as np
import pytest
import tensorflow as tf

from keras_retina.data import coverage
from keras_retina.modeling.transform import ResizePolicy


def _examples(boxes):
    return tf.data.Dataset.from_tensors({
        "image": tf.zeros((256, 256, 3), tf.uint8), "boxes": tf.constant(boxes, tf.float32),
        "classes": tf.zeros((len(boxes),), tf.int32), "is_crowd": tf.zeros((len(boxes),), tf.bool)})


def test_small_objects_uncovered_get_a_suggestion():
    # 256 px images at image_size 128: 12 px boxes become 6 px, far below the 32 px anchors.
    report = coverage.anchor_coverage(_examples([[10, 10, 22, 22], [100, 100, 112, 112],
                                                 [0, 0, 200, 200]]), ResizePolicy(128, policy="square"))
    # Each 6x6 box lies inside a 32x32 P3 anchor (or a 2:1 one of the same area): IoU 36 / 1024.
    assert report["small"]["boxes"] == 2 and report["small"]["covered"] == 0
    assert report["small"]["mean_best_iou"] == pytest.approx(36 / 1024, rel=1e-3)
    assert report["large"]["covered"] == 1
    text = coverage.format_coverage(report)
    assert "WARNING: only 0% of small boxes are covered" in text
    assert "Measured on these pictures: --image_size=256 --anchor_size=2 covers 67% of all boxes (33% now)" in text


@pytest.mark.parametrize("resize", ["square", "shorter_side"])
def test_the_suggestion_names_a_setting_that_covers_what_it_says(resize):
    from keras_retina.modeling.anchors import AnchorGenerator

    boxes = [[10, 10, 22, 22], [100, 100, 112, 112], [40, 150, 70, 170], [0, 0, 200, 200]]
    report = coverage.anchor_coverage(_examples(boxes), ResizePolicy(128, policy=resize))
    found = report["suggestion"]
    assert found["now"] == 0.25 and found["covered"] > found["now"] and found["anchor_size"] <= 4
    # the named setting, used, covers what the suggestion says
    side = found["image_size"] if isinstance(found["image_size"], int) else found["image_size"][0]
    again = coverage.anchor_coverage(_examples(boxes), ResizePolicy(side, policy=resize),
                                     AnchorGenerator(anchor_size=found["anchor_size"]))
    covered = sum(again[name]["covered"] for name in ("small", "medium", "large")) / len(boxes)
    assert covered == pytest.approx(found["covered"])
    assert ("suggestion" in again) == (covered < 0.9)
    text = coverage.format_coverage(report)
    assert f"Measured on these pictures: --image_size={side} --anchor_size={found['anchor_size']:g} covers" in text


def test_a_longer_side_limit_of_ones_own_grows_with_the_size_and_is_named():
    boxes = [[10, 10, 22, 22], [100, 100, 112, 112], [40, 150, 70, 170], [0, 0, 200, 200]]
    found = coverage.anchor_coverage(_examples(boxes), ResizePolicy(128, 150))["suggestion"]
    assert found["max_image_size"] > 150 and found["max_image_size"] % 32 == 0
    text = coverage.format_coverage(coverage.anchor_coverage(_examples(boxes), ResizePolicy(128, 150)))
    assert f"--image_size={found['image_size']} --max_image_size={found['max_image_size']} --anchor_size=" in text
    assert "max_image_size" not in coverage.anchor_coverage(_examples(boxes), ResizePolicy(128))["suggestion"]


def test_well_covered_data_has_no_warning():
    report = coverage.anchor_coverage(_examples([[0, 0, 128, 128], [64, 64, 192, 192]]), ResizePolicy(256))
    assert report["large"]["covered"] == 2
    assert "WARNING" not in coverage.format_coverage(report)


@pytest.mark.parametrize("geometry", ["centered", "detectron2", "torchvision"])
def test_the_best_anchor_found_near_the_centre_is_the_best_of_all(geometry):
    """best_ious (3 x 3 cells around each box's centre per level) equals the IoU with every anchor,
    for each anchor geometry, on boxes of every size, at the edges and beyond them."""
    import numpy as np

    from keras_retina.modeling import builder
    from keras_retina.modeling.model_config import ModelConfig
    from keras_retina.ops import boxes as box_lib

    generator = builder.anchor_generator(ModelConfig(num_classes=1, anchor_geometry=geometry))
    rng = np.random.default_rng(3)
    size = (320, 448)
    centres = rng.uniform(-20, 470, (600, 2))
    sides = np.exp(rng.uniform(np.log(2), np.log(600), (600, 2)))
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], axis=1)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], -30, size[0] + 30)
    everything = np.asarray(box_lib.pairwise_iou(boxes.astype(np.float32), generator.anchors(size))).max(axis=1)
    near = coverage.best_ious(boxes.astype(np.float32), generator.by_level(size), generator.anchors_per_location,
                              chunk=97)
    assert np.abs(near - everything).max() < 1e-5 and (everything >= 0.5).sum() >= 30 and (everything == 0).mean() < 0.5


def test_pictures_of_different_canvases_keep_their_own_boxes_in_order():
    """Boxes are matched a canvas at a time; each box keeps its own picture's scale and anchors,
    in the pictures' order (a box is matched alone against its picture's canvas here)."""
    from keras_retina.modeling.anchors import AnchorGenerator
    from keras_retina.modeling.transform import resized_size

    policy, generator = ResizePolicy(96, 128), AnchorGenerator()
    pictures = [(192, 256, np.array([[10, 20, 60, 90]], np.float32)), (300, 200, np.zeros((0, 4), np.float32)),
                (256, 192, np.array([[5, 5, 40, 30], [100, 50, 200, 180]], np.float32)),
                (192, 256, np.array([[0, 0, 150, 250]], np.float32))]
    best, areas = coverage._match(pictures, policy, generator)
    expected_best, expected_areas = [], []
    for height, width, boxes in pictures:
        resized = resized_size(height, width, float(policy.scale(height, width)), policy.rounding)
        canvas = tuple(int(s) for s in policy.canvas(*resized))
        scaled = boxes * np.tile(np.asarray(resized, np.float64) / [height, width], 2)
        expected_best += list(coverage.best_ious(scaled, generator.by_level(canvas), generator.anchors_per_location))
        expected_areas += list((scaled[:, 2] - scaled[:, 0]) * (scaled[:, 3] - scaled[:, 1]))
    assert len({tuple(int(s) for s in policy.canvas(*resized_size(h, w, float(policy.scale(h, w)), policy.rounding)))
                for h, w, _ in pictures}) == 2  # landscape, portrait, portrait, landscape
    np.testing.assert_allclose(best, expected_best, rtol=1e-6)
    np.testing.assert_allclose(areas, expected_areas, rtol=1e-5)
    assert len(set(np.round(best, 4))) == 4  # four different boxes, four different matches
