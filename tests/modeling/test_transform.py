"""A picture's way into the model and back (`modeling.transform`): the resize policy, the input mapping."""

import numpy as np
import pytest
import tensorflow as tf

from keras_retina.modeling import transform
from keras_retina.modeling.transform import ResizePolicy, default_max_size

from conftest import assert_close


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

    from keras_retina.modeling.transform import resized_size, to_model_input, to_original

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


# --------------------------------------------------------------------------- the input mapping
def test_to_model_input_keeps_the_aspect_and_pads_below_and_right():
    image = tf.constant(np.full((100, 200, 3), 77, np.uint8))
    padded, scale = transform.to_model_input(image, ResizePolicy(128, policy="square"))
    assert padded.shape == (128, 128, 3) and abs(float(scale) - 0.64) < 1e-7
    assert np.all(padded.numpy()[:64] == 77) and np.all(padded.numpy()[64:] == 0)
    tall, scale = transform.to_model_input(tf.zeros((300, 60, 3), tf.uint8),
                                               ResizePolicy((128, 96), policy="square"))
    assert tall.shape == (128, 96, 3) and abs(float(scale) - 128 / 300) < 1e-7


def test_shorter_side_input_is_padded_to_its_bucket():
    image = tf.constant(np.full((100, 200, 3), 77, np.uint8))
    padded, scale = transform.to_model_input(image, ResizePolicy(128, 256))  # shorter side 100 -> 128
    assert padded.shape == (128, 256, 3) and abs(float(scale) - 1.28) < 1e-7
    assert np.all(padded.numpy() == 77)  # 2:1 fills the 128 x 256 bucket exactly
    padded, scale = transform.to_model_input(tf.zeros((300, 240, 3), tf.uint8), ResizePolicy(128, 256))
    assert padded.shape == (192, 128, 3)  # 160 x 128 in the 3:2 portrait bucket


def test_to_original_inverts_the_mapping_and_clips():
    original = np.array([[10.0, 20.0, 50.0, 120.0], [90.0, 150.0, 140.0, 260.0]], np.float32)
    in_input = original * 0.64
    back = transform.to_original(in_input, 0.64, [100, 200])
    assert_close(back, [[10, 20, 50, 120], [90, 150, 100, 200]], atol=1e-4)  # second box clipped
    normalised = transform.to_original(in_input, 0.64, [100, 200], normalised=True)
    assert_close(normalised, [[0.1, 0.1, 0.5, 0.6], [0.9, 0.75, 1.0, 1.0]], atol=1e-6)


def test_to_original_on_a_batch_of_pictures_of_different_sizes():
    boxes = np.array([[[0.0, 0.0, 64.0, 128.0]], [[0.0, 0.0, 128.0, 64.0]]], np.float32)
    scales = np.array([0.64, 128 / 300], np.float32)
    sizes = np.array([[100, 200], [300, 60]], np.float32)
    back = transform.to_original(boxes, scales, sizes)
    assert_close(back, [[[0, 0, 100, 200]], [[0, 0, 300, 60]]], atol=1e-3)
    assert_close(transform.to_original(boxes, scales, sizes, normalised=True), [[[0, 0, 1, 1]], [[0, 0, 1, 1]]],
                 atol=1e-6)


def test_padding_colour_leaves_the_picture_untouched():
    """Converted torchvision / detectron2 models pad with the mean colour (what those libraries'
    zero padding after normalising is in pixels); the picture's own pixels stay exact."""
    colour = (123.675, 116.28, 103.53)
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (100, 200, 3)).astype(np.float32))
    padded = transform.pad_to(image, (128, 224), colour).numpy()
    np.testing.assert_array_equal(padded[:100, :200], image.numpy())
    np.testing.assert_allclose(padded[100:], np.broadcast_to(np.float32(colour), (28, 224, 3)))
    np.testing.assert_allclose(padded[:, 200:], np.broadcast_to(np.float32(colour), (128, 24, 3)))
    batch = transform.pad_to(image[None], (128, 224), colour).numpy()
    np.testing.assert_array_equal(batch[0], padded)
    model_input, _ = transform.to_model_input(tf.cast(image, tf.uint8), ResizePolicy(100, 200, pad_color=colour))
    assert model_input.shape == (128, 224, 3) and np.allclose(model_input[120, 220], colour)


def _detailed_picture(height, width, seed=0):
    """uint8 RGB with detail at every scale (noise over stripes): shrinking it aliases visibly."""
    rng = np.random.default_rng(seed)
    stripes = (np.sin(np.arange(width) * 1.3)[None, :, None] * 80 + 128).repeat(height, 0).repeat(3, 2)
    return np.clip(stripes + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)


def test_pil_bilinear_resizes_as_detectron2_does():
    """detectron2 resizes uint8 pictures with PIL's bilinear (ResizeTransform), which antialiases
    when it shrinks and gives uint8: resize_method="pil_bilinear" gives PIL's pixels up to its
    fixed-point rounding; plain bilinear (ours, torchvision's) aliases far from them."""
    from PIL import Image

    picture = _detailed_picture(600, 800)
    for scale, new_hw in ((0.37, (222, 296)), (1.6, (960, 1280))):  # shrink (a phone photo to 800), enlarge
        pil = np.asarray(Image.fromarray(picture).resize(new_hw[::-1], Image.BILINEAR), np.float32)
        ours, _ = transform.resize(picture, tf.zeros([0, 4]), scale, method="pil_bilinear")
        plain, _ = transform.resize(picture, tf.zeros([0, 4]), scale, method="bilinear")
        assert ours.shape[:2] == plain.shape[:2] == new_hw
        ours, plain = ours.numpy(), plain.numpy()
        assert np.array_equal(ours, np.round(ours))  # whole pixel values, as PIL's uint8
        error = np.abs(ours - pil)
        print(f"scale {scale}: pil_bilinear vs PIL max {error.max():.0f}, mean {error.mean():.3f}; "
              f"bilinear vs PIL mean {np.abs(plain - pil).mean():.2f}")
        assert error.max() <= 2 and error.mean() < 0.3
        if scale < 1:
            assert np.abs(plain - pil).mean() > 10  # aliased: the difference the setting removes
    policy = ResizePolicy(222, 400, method="pil_bilinear")
    padded, scale = transform.to_model_input(tf.constant(picture), policy)
    assert padded.shape == (224, 320, 3)  # the policy passes its method on
    np.testing.assert_array_equal(padded[:222, :296], transform.resize(picture, tf.zeros([0, 4]), scale,
                                                                           method="pil_bilinear")[0])


def test_sides_round_half_up_as_detectron2():
    """detectron2's ResizeShortestEdge rounds with int(x + 0.5): a 600 x 1200 picture at 800/1333
    is 666.5 rows before rounding, 667 after (round half to even would give 666)."""
    scale = ResizePolicy(800, 1333).scale(600, 1200)  # float64, as every caller passes it
    assert list(transform.resized_size(600, 1200, scale).numpy()) == [667, 1333]
    assert list(transform.resized_size(100, 273, 0.5).numpy()) == [50, 137]
    assert list(transform.resized_size(600, 1200, scale, rounding="floor").numpy()) == [666, 1333]
    padded, _ = transform.to_model_input(tf.zeros((600, 1200, 3), tf.uint8), ResizePolicy(800, 1333, canvas="tight"))
    assert padded.shape == (672, 1344, 3)
