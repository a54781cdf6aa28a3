import numpy as np
import pytest

from keras_retina.resize_policy import ResizePolicy, default_max_size


def test_paper_scales_and_their_buckets():
    """600/1000 and 800/1333 (paper Table 1e, Detectron's caps): seven canvases each, multiples of 32."""
    assert default_max_size(600) == 1000 and default_max_size(800) == 1333
    assert ResizePolicy(800).buckets == ((800, 800), (800, 1088), (1088, 800), (800, 1216), (1216, 800),
                                         (800, 1344), (1344, 800))
    assert ResizePolicy(600).buckets == ((608, 608), (608, 800), (800, 608), (608, 928), (928, 608),
                                         (608, 1024), (1024, 608))
    assert ResizePolicy(800).mixed_canvas == (1344, 1344)
    assert ResizePolicy(640, policy="square").buckets == ((640, 640),)
    assert ResizePolicy((512, 640), policy="square").buckets == ((512, 640),)
    assert ResizePolicy(96, 96).buckets == ((96, 96),)  # L = S: only squares


@pytest.mark.parametrize("picture, scale, canvas", [
    ((480, 640), 800 / 480, (800, 1088)),   # COCO's most common shape: 800 x 1067
    ((640, 480), 800 / 480, (1088, 800)),   # its portrait
    ((427, 640), 800 / 427, (800, 1216)),   # 3:2: 800 x 1199
    ((375, 500), 800 / 375, (800, 1088)),   # 4:3
    ((500, 500), 1.6, (800, 800)),
    ((400, 1000), 1333 / 1000, (800, 1344)),  # 5:2: the longer side capped at 1333, shorter 533
    ((1, 4000), 1333 / 4000, (800, 1344)),
    ((4000, 1), 1333 / 4000, (1344, 800)),
    ((1, 1), 800.0, (800, 800)),
])
def test_shorter_side_scale_and_canvas(picture, scale, canvas):
    policy = ResizePolicy(800)
    got = float(policy.scale(*picture))
    np.testing.assert_allclose(got, scale, rtol=1e-6)
    resized = [max(round(side * got), 1) for side in picture]
    assert min(resized) <= 800 and max(resized) <= 1333
    assert tuple(int(s) for s in policy.canvas(*resized)) == canvas
    assert resized[0] <= canvas[0] and resized[1] <= canvas[1]


def test_square_policy_fits_the_longer_side():
    policy = ResizePolicy(640, policy="square")
    np.testing.assert_allclose(float(policy.scale(480, 1280)), 0.5)
    assert tuple(int(s) for s in policy.canvas(240, 640)) == (640, 640)


def test_bucket_index_smallest_fit_and_mixed():
    policy = ResizePolicy(800)
    assert int(policy.bucket_index(800, 1067)) == 1
    assert int(policy.bucket_index(800, 800)) == 0
    assert int(policy.bucket_index(1344, 1344)) == len(policy.buckets)  # landscape + portrait in one batch
    assert tuple(int(s) for s in policy.canvas(1088, 1088)) == (1344, 1344)


def test_jitter_draws_the_shorter_side_and_keeps_the_cap():
    policy = ResizePolicy(800)
    np.testing.assert_allclose(float(policy.scale(480, 640, jitter=0.8)), 640 / 480, rtol=1e-6)
    np.testing.assert_allclose(float(policy.scale(400, 1000, jitter=1.2)), 1333 / 1000, rtol=1e-6)
    assert [int(s) for s in policy.largest_canvas(480, 640)] == [800, 1344]
    assert [int(s) for s in policy.largest_canvas(640, 480)] == [1344, 800]


@pytest.mark.parametrize("args, message", [
    ((800, 600), "below image_size"),
    ((0,), "positive int"),
    ((100, None, "square"), "multiple of 32"),
    ((640, None, "letterbox"), "choose one of"),
])
def test_bad_settings_are_explained(args, message):
    with pytest.raises(ValueError, match=message):
        ResizePolicy(*args)


def test_torchvision_resizing_floors_and_pads_tight():
    """Converted torchvision models: sides floored (F.interpolate with recompute_scale_factor) and
    each side padded only up to a multiple of 32; batches are still grouped by bucket."""
    import tensorflow as tf

    from keras_retina.input_mapping import resized_size, to_model_input, to_original

    tight = ResizePolicy(800, 1333, rounding="floor", canvas="tight")
    for (h, w), resized, canvas in [((480, 640), (800, 1066), (800, 1088)), ((453, 640), (800, 1130), (800, 1152)),
                                    ((360, 640), (749, 1333), (768, 1344))]:
        scale = tight.scale(h, w)
        assert tuple(resized_size(h, w, scale, "floor").numpy()) == resized
        assert tuple(tight.canvas(*resized).numpy()) == canvas
        padded, _ = to_model_input(tf.zeros((h, w, 3), tf.uint8), tight)
        assert tuple(padded.shape[:2]) == canvas
        # a box over the whole resized picture maps back onto the whole photo (per-axis ratios)
        back = to_original([[0.0, 0.0, float(resized[0]), float(resized[1])]], scale, [h, w], rounding="floor")
        np.testing.assert_allclose(back, [[0, 0, h, w]], atol=1e-3)
    assert tuple(ResizePolicy(800, 1333).canvas(800, 1130).numpy()) == (800, 1216)  # the bucket
    assert ResizePolicy(800, 1333, canvas="tight").bucket_index(800, 1130) == \
        ResizePolicy(800, 1333).bucket_index(800, 1130)
