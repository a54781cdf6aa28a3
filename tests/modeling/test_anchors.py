import math

import numpy as np
import pytest
import tensorflow as tf

from keras_retina.modeling import anchors

from conftest import assert_close


def test_count_for_640_is_76725():
    # (80^2 + 40^2 + 20^2 + 10^2 + 5^2) locations x 9 anchors.
    assert anchors.num_anchors(640) == 76725
    assert anchors.concat_anchors(anchors.generate_anchors(640)).shape == (76725, 4)


def test_hand_computed_first_location_of_p3():
    by_level = anchors.generate_anchors(128)
    assert list(by_level) == ["P3", "P4", "P5", "P6", "P7"]
    p3 = by_level["P3"]
    assert p3.shape == (16 * 16 * 9, 4)
    # Location (0, 0) of P3: centre (4, 4); base side 4 * 8 = 32.
    expected = []
    for scale in (1.0, 2 ** (1 / 3), 2 ** (2 / 3)):  # scale outer
        for ratio in (0.5, 1.0, 2.0):  # ratio inner, ratio = w / h
            h = 32 * scale / math.sqrt(ratio)
            w = 32 * scale * math.sqrt(ratio)
            expected.append([4 - h / 2, 4 - w / 2, 4 + h / 2, 4 + w / 2])
    assert_close(p3[:9], expected, atol=1e-4)
    # The next location in order is (y=0, x=1): centre (4, 12).
    assert_close(p3[9], [4 - 32 / math.sqrt(0.5) / 2, 12 - 32 * math.sqrt(0.5) / 2,
                         4 + 32 / math.sqrt(0.5) / 2, 12 + 32 * math.sqrt(0.5) / 2], atol=1e-4)
    # Row y=1 starts after the 16 columns of row 0: centre (12, 4).
    assert_close(p3[16 * 9 + 1], [12 - 16, 4 - 16, 12 + 16, 4 + 16], atol=1e-4)  # scale 0, ratio 1:1


def test_areas_are_32_to_512_squared():
    by_level = anchors.generate_anchors(640)
    for level, side in zip(("P3", "P4", "P5", "P6", "P7"), (32, 64, 128, 256, 512)):
        a = by_level[level][0]
        # The first anchor of a location has scale 2^0 and ratio 1:2; area = side^2.
        assert (a[2] - a[0]) * (a[3] - a[1]) == pytest.approx(side**2, rel=1e-5)


def test_rejects_sizes_not_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        anchors.generate_anchors(600)


def test_800_rounds_p6_p7_up():
    by_level = anchors.generate_anchors(800)
    sides = {k: int(round((v.shape[0] / 9) ** 0.5)) for k, v in by_level.items()}
    assert sides == {"P3": 100, "P4": 50, "P5": 25, "P6": 13, "P7": 7}
    assert anchors.num_anchors(800) == (100**2 + 50**2 + 25**2 + 13**2 + 7**2) * 9
    last_p7 = by_level["P7"][-9:]
    assert_close((last_p7[:, 0] + last_p7[:, 2]) / 2, np.full(9, 6.5 * 128), atol=1e-3)


def test_head_layout_matches_anchor_order():
    """A head output [B, H, W, A*4] flattened by flatten_levels lines up with generate_anchors."""
    by_level = anchors.generate_anchors(256)
    head_outputs = {}
    for level in range(3, 8):
        stride = 2**level
        side = 256 // stride
        out = np.zeros((1, side, side, 9 * 4), np.float32)
        for y in range(side):
            for x in range(side):
                for a in range(9):
                    scale = 2 ** ((a // 3) / 3)
                    ratio = (0.5, 1.0, 2.0)[a % 3]
                    h = 4 * stride * scale / math.sqrt(ratio)
                    w = 4 * stride * scale * math.sqrt(ratio)
                    cy, cx = (y + 0.5) * stride, (x + 0.5) * stride
                    out[0, y, x, a * 4:(a + 1) * 4] = [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]
        head_outputs[f"P{level}"] = out
    flat = np.asarray(anchors.flatten_levels(head_outputs, 4))[0]
    assert_close(flat, anchors.concat_anchors(by_level), atol=1e-3)


def test_equal_to_model_garden_anchors():
    mg_anchor = pytest.importorskip("official.vision.ops.anchor")
    ours = anchors.generate_anchors(640)
    theirs = mg_anchor.Anchor(min_level=3, max_level=7, num_scales=3, aspect_ratios=[0.5, 1.0, 2.0],
                              anchor_size=4.0, image_size=[640, 640]).multilevel_boxes
    for level in range(3, 8):
        # Theirs: [H, W, A*4] in the same (y, x, scale, ratio) order; flatten to [H*W*A, 4].
        assert_close(ours[f"P{level}"], np.reshape(theirs[str(level)], (-1, 4)), atol=1e-3)


@pytest.mark.parametrize("shape", [(512, 768), (768, 512), (640, 896), (384, 1280)])
def test_non_square_anchors_equal_model_garden_anchors(shape):
    """At non-square sizes that are multiples of 128 (both definitions then put level l's
    locations every 2^l pixels) ours equal the Model Garden's `Anchor` exactly."""
    mg_anchor = pytest.importorskip("official.vision.ops.anchor")
    ours = anchors.generate_anchors(shape)
    theirs = mg_anchor.Anchor(min_level=3, max_level=7, num_scales=3, aspect_ratios=[0.5, 1.0, 2.0],
                              anchor_size=4.0, image_size=list(shape)).multilevel_boxes
    for level in range(3, 8):
        assert ours[f"P{level}"].shape[0] == anchors.feature_size(shape[0], level) * anchors.feature_size(
            shape[1], level) * 9
        assert_close(ours[f"P{level}"], np.reshape(theirs[str(level)], (-1, 4)), atol=1e-3)


@pytest.mark.parametrize("shape", [(64, 96), (800, 1216), (608, 928), (1344, 800)])
def test_anchors_computed_in_the_graph_equal_the_cached_ones(shape):
    """A shape known only when the graph runs (SavedModel, tf.data) gets the same anchors, bit
    for bit, as the numpy ones cached for a static shape."""
    generator = anchors.AnchorGenerator()
    traced = tf.function(lambda hw: generator.anchors(hw), input_signature=[tf.TensorSpec([2], tf.int32)])
    static = generator.anchors(shape)
    assert generator.by_level(shape) is generator.by_level(shape)  # cached per shape
    assert np.array_equal(traced(tf.constant(shape)).numpy(), static)
    counts = tf.function(lambda hw: tf.add_n(generator.level_counts(hw)))(tf.constant(shape))
    assert int(counts) == generator.num_anchors(shape) == static.shape[0]
