import keras
import numpy as np
import pytest
import tensorflow as tf

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


@pytest.mark.parametrize("side", [32, 64])
def test_bfloat16_training_leaves_the_kernel_taps_that_only_see_padding_untouched(side):
    """Under mixed_bfloat16, P6 (on a 1x1 C5 at a 32 px canvas) and P7 (on a 1x1 P6 at 32-64 px)
    are stride-2 3x3 "same" convs over one pixel: only their centre tap sees data, so the kernel's
    gradient is exactly 0 on the other eight. TensorFlow 2.20's oneDNN bfloat16 filter gradient
    fills them with garbage there (NaN in about half the calls on an AVX512_BF16 CPU); the layer
    computes those convs in float32, so no bfloat16 training can write garbage into weights that
    a larger picture would use."""
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        fpn = FeaturePyramid(filters=16)
        fpn(_features(side=side))
    finally:
        keras.mixed_precision.set_global_policy(before)
    assert [fpn.extra[name].compute_dtype for name in ("P6", "P7")] == ["float32", "float32"]  # on any CPU
    assert fpn.output_convs["P5"].compute_dtype == "bfloat16"  # the rest of the pyramid stays bfloat16
    kernels = [fpn.extra[name].kernel for name in ("P6", "P7")]
    single = [name for name in ("P6", "P7") if -(-side // 2 ** (int(name[1]) - 1)) == 1]  # convs over one pixel
    assert single == (["P6", "P7"] if side == 32 else ["P7"])
    rng = np.random.default_rng(1)
    for _ in range(20):
        features = {k: v * rng.uniform(0.5, 2.0) for k, v in _features(side=side).items()}
        with tf.GradientTape() as tape:
            out = fpn(features)
            assert out["P7"].dtype == "bfloat16"  # the heads still run in bfloat16
            loss = sum(tf.reduce_sum(tf.cast(out[name], tf.float32) ** 2) for name in ("P6", "P7"))
        for name, gradient in zip(("P6", "P7"), tape.gradient(loss, kernels)):
            gradient = gradient.numpy()
            assert np.all(np.isfinite(gradient)), name
            if name in single:
                outside = np.ones((3, 3), bool)
                outside[1, 1] = False
                assert not np.any(gradient[outside]), (name, np.abs(gradient[outside]).max())
