import keras
import numpy as np
import pytest

from keras_retina.modeling.fpn import FeaturePyramid

from conftest import assert_close, layer_round_trip


def _features(batch=2, side=128):
    rng = np.random.default_rng(0)
    return {f"C{lv}": rng.normal(size=(batch, side // 2**lv, side // 2**lv, ch)).astype(np.float32)
            for lv, ch in ((3, 8), (4, 12), (5, 16))}


def test_levels_and_shapes():
    out = FeaturePyramid(filters=24)(_features())
    assert sorted(out) == ["P3", "P4", "P5", "P6", "P7"]
    for lv in range(3, 8):
        assert tuple(out[f"P{lv}"].shape) == (2, 128 // 2**lv, 128 // 2**lv, 24)


def test_p6_from_c5_and_p7_from_relu_p6():
    features = _features()
    fpn = FeaturePyramid(filters=24)
    out = fpn(features)
    assert fpn.extra["P6"].kernel.shape == (3, 3, 16, 24)  # reads C5 (16 channels), not P5
    assert_close(out["P6"], fpn.extra["P6"](features["C5"]), atol=1e-5)
    assert_close(out["P7"], fpn.extra["P7"](keras.ops.relu(out["P6"])), atol=1e-5)
    variant = FeaturePyramid(filters=24, p6_input="P5")
    variant_out = variant(features)
    assert variant.extra["P6"].kernel.shape == (3, 3, 24, 24)
    assert_close(variant_out["P6"], variant.extra["P6"](variant_out["P5"]), atol=1e-5)


def test_top_down_pathway():
    features = _features()
    fpn = FeaturePyramid(filters=24)
    out = fpn(features)
    p5_lateral = fpn.lateral["C5"](features["C5"])
    p4_merged = fpn.lateral["C4"](features["C4"]) + np.repeat(np.repeat(p5_lateral, 2, 1), 2, 2)
    assert_close(out["P4"], fpn.output_convs["P4"](p4_merged), atol=1e-4)


def test_bad_arguments():
    with pytest.raises(ValueError, match="p6_input"):
        FeaturePyramid(p6_input="C4")


def test_round_trip(tmp_path):
    layer_round_trip(FeaturePyramid(filters=20, max_level=6, p6_input="P5", name="fpn_x"),
                     _features(batch=1, side=64), tmp_path)
