import math

import numpy as np

from keras_retina.modeling.heads import PredictionHead

from conftest import assert_close, layer_round_trip


def _pyramid(batch=2, channels=16):
    rng = np.random.default_rng(0)
    return {f"P{lv}": rng.normal(size=(batch, 256 // 2**lv, 256 // 2**lv, channels)).astype(np.float32)
            for lv in range(3, 8)}


def test_paper_initialisation():
    """Section 4.1: N(0, 0.01) weights, zero bias, classification bias -log((1 - pi) / pi)."""
    cls_head = PredictionHead(80, 9, filters=256, num_convs=4, prior_probability=0.01)
    box_head = PredictionHead(4, 9, filters=256, num_convs=4)
    cls_head.build({"P3": (None, 8, 8, 256)})
    box_head.build({"P3": (None, 8, 8, 256)})
    assert len(cls_head.hidden) == 4 and cls_head.output_conv.kernel.shape == (3, 3, 256, 720)
    assert box_head.output_conv.kernel.shape == (3, 3, 256, 36)
    assert_close(cls_head.output_conv.bias, np.full(720, -math.log(99.0)), atol=1e-6)
    assert np.all(np.asarray(box_head.output_conv.bias) == 0)
    for conv in cls_head.hidden + [cls_head.output_conv, box_head.output_conv]:
        kernel = np.asarray(conv.kernel)
        assert abs(kernel.std() - 0.01) < 0.001 and abs(kernel.mean()) < 0.001
    for conv in cls_head.hidden:
        assert np.all(np.asarray(conv.bias) == 0)
    # At initialisation every anchor's foreground probability is ~pi.
    logits = cls_head(_pyramid(channels=256))["P5"]
    assert abs(float(np.mean(1 / (1 + np.exp(-np.asarray(logits))))) - 0.01) < 0.002


def test_shared_across_levels_and_shapes():
    head = PredictionHead(3, 9, filters=16, num_convs=2, prior_probability=0.01)
    pyramid = _pyramid()
    out = head(pyramid)
    for lv in range(3, 8):
        assert tuple(out[f"P{lv}"].shape) == (2, 256 // 2**lv, 256 // 2**lv, 27)
        # Same weights on every level: running a level alone gives the same answer.
        assert_close(head({"P": pyramid[f"P{lv}"]})["P"], out[f"P{lv}"], atol=1e-5)
    assert len(head.weights) == 2 * 3  # 2 hidden convs + output, kernel and bias each


def test_round_trip(tmp_path):
    head = PredictionHead(5, 6, filters=12, num_convs=3, prior_probability=0.05, name="head_x")
    layer_round_trip(head, {k: v[:1] for k, v in _pyramid().items()}, tmp_path)
