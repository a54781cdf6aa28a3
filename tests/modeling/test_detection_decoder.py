import numpy as np
import pytest

from keras_retina.errors import SettingsError
from keras_retina.modeling.anchors import AnchorGenerator
from keras_retina.modeling.detection_decoder import DetectionDecoder, PostprocessSettings, postprocess_settings
from keras_retina.ops import box_coder
from keras_retina.ops import boxes as box_lib

from conftest import assert_close, layer_round_trip

K = 3


def _logit(p):
    return float(np.log(p / (1 - p)))


def _empty(decoder, batch=1):
    count = decoder_anchor_count(decoder)
    return np.full((batch, count, K), -12.0, np.float32), np.zeros((batch, count, 4), np.float32)


def decoder_anchor_count(decoder):
    return sum(a.shape[0] for a in decoder.anchor_generator.by_level(decoder.input_size).values())


def _anchors(decoder):
    return np.concatenate([decoder.anchor_generator.by_level(decoder.input_size)[f"P{lv}"] for lv in range(3, 8)])


def test_threshold_classwise_nms_and_order():
    decoder = DetectionDecoder(128)
    anchors = _anchors(decoder)
    logits, deltas = _empty(decoder)
    # Location (5, 5) of P3: anchors 9*(5*16+5) + a. a=1 and a=4 are concentric 1:1 anchors with
    # sides 32 and 40.3: IoU 0.63 > 0.5.
    base = 9 * (5 * 16 + 5)
    a, b = base + 1, base + 4
    assert np.asarray(box_lib.pairwise_iou(anchors[[a]], anchors[[b]]))[0, 0] > 0.5
    far = 9 * (13 * 16 + 2) + 1  # another location, no overlap
    logits[0, a, 1] = _logit(0.95)
    logits[0, b, 1] = _logit(0.80)  # same class, overlaps a: suppressed
    logits[0, b, 2] = _logit(0.70)  # other class at the same box: kept
    logits[0, far, 0] = _logit(0.50)
    logits[0, far, 2] = _logit(0.049)  # under the 0.05 threshold: dropped
    deltas[0, far] = [0.1, -0.2, 0.3, 0.0]
    out = decoder({"classification": logits, "box": deltas})
    n = int(out["num_detections"][0])
    assert n == 3
    assert_close(out["scores"][0, :3], [0.95, 0.70, 0.50], atol=1e-5)
    assert list(np.asarray(out["classes"][0, :3])) == [1, 2, 0]
    expected_far = box_lib.clip_to_image(box_coder.decode(deltas[0, far], anchors[far]), 128, 128)
    assert_close(out["boxes"][0, 0], box_lib.clip_to_image(anchors[a], 128, 128), atol=1e-4)
    assert_close(out["boxes"][0, 1], box_lib.clip_to_image(anchors[b], 128, 128), atol=1e-4)
    assert_close(out["boxes"][0, 2], expected_far, atol=1e-4)
    # Padding rows.
    assert np.all(np.asarray(out["classes"][0, n:]) == -1)
    assert np.all(np.asarray(out["scores"][0, n:]) == 0)
    assert np.all(np.asarray(out["boxes"][0, n:]) == 0)


def test_boxes_are_clipped_to_the_image():
    decoder = DetectionDecoder(128)
    logits, deltas = _empty(decoder)
    logits[0, 0, 0] = 5.0  # the first P3 anchor pokes out of the top-left corner
    box = np.asarray(decoder({"classification": logits, "box": deltas})["boxes"])[0, 0]
    assert box.min() >= 0 and box.max() <= 128 and box[2] > box[0] and box[3] > box[1]


def test_boxes_are_clipped_to_each_picture_inside_its_input():
    """With `picture_sizes` (each picture's extent in its padded input) boxes are clipped to the
    picture before NMS, not to the canvas."""
    decoder = DetectionDecoder(128)
    anchors = _anchors(decoder)
    logits, deltas = _empty(decoder, batch=2)
    # P3 location (4, 4), centre 36 px: its 1:1 anchor of scale 2^(2/3) spans 10.6..61.4 px.
    a = 9 * (4 * 16 + 4) + 7
    assert np.allclose(anchors[a], [10.6, 10.6, 61.4, 61.4], atol=0.1)
    logits[:, a, 0] = _logit(0.9)
    deltas[:, a] = [0.0, 0.0, 0.0, np.log(3.0)]  # as tall, three times as wide: x -40.2 .. 112.2
    out = decoder({"classification": logits, "box": deltas}, picture_sizes=np.array([[40, 50], [128, 128]]))
    assert_close(out["boxes"][0, 0], [10.6, 0.0, 40.0, 50.0], atol=0.1)  # clipped to the 40 x 50 picture
    assert_close(out["boxes"][1, 0], [10.6, 0.0, 61.4, 112.2], atol=0.1)  # to the whole 128 x 128 input


def _boxes_at(decoder, logits, deltas, anchor, box, score, cls=0, image=0):
    """Makes `anchor` decode to `box` (yxyx pixels) with `score` for class `cls`."""
    logits[image, anchor, cls] = _logit(score)
    deltas[image, anchor] = np.asarray(box_coder.encode(np.float32([box]), _anchors(decoder)[[anchor]]))[0]


def test_no_box_without_area_unless_the_library_keeps_them():
    """A box lying wholly in the padding is empty once clipped to the picture: never one of our
    detections (nor detectron2's); torchvision keeps it (drop_empty_boxes=False)."""
    logits, deltas = _empty(DetectionDecoder(128))
    decoder = DetectionDecoder(128)
    _boxes_at(decoder, logits, deltas, 9 * (2 * 16 + 2) + 1, [10, 10, 30, 30], 0.9)
    _boxes_at(decoder, logits, deltas, 9 * (10 * 16 + 2) + 1, [70, 10, 100, 30], 0.8)  # below the 40-row picture
    outputs, picture = {"classification": logits, "box": deltas}, np.array([[40, 128]])
    ours = decoder(outputs, picture_sizes=picture)
    assert int(ours["num_detections"][0]) == 1
    assert_close(ours["boxes"][0, 0], [10, 10, 30, 30], atol=1e-3)
    kept = DetectionDecoder(128, drop_empty_boxes=False)(outputs, picture_sizes=picture)
    assert int(kept["num_detections"][0]) == 2
    assert_close(kept["boxes"][0, 1], [40, 10, 40, 30], atol=1e-3)  # no height: torchvision returns it


def test_clipping_after_nms_follows_detectron2():
    """detectron2 runs NMS on the decoded boxes, keeps the best `max_detections`, then clips them
    to the picture and drops the empty ones. Two boxes that overlap by IoU 0.46 as decoded but are
    the same box once clipped: NMS after clipping (ours) keeps one, before clipping both."""
    decoder = DetectionDecoder(128, clip_boxes="after_nms", max_detections=3)
    logits, deltas = _empty(decoder, batch=2)
    for image in (0, 1):
        _boxes_at(decoder, logits, deltas, 9 * (1 * 16 + 3) + 1, [-70, 10, 60, 50], 0.9, image=image)
        _boxes_at(decoder, logits, deltas, 9 * (3 * 16 + 3) + 1, [0, 10, 60, 50], 0.8, image=image)
        _boxes_at(decoder, logits, deltas, 9 * (12 * 16 + 3) + 1, [100, 10, 120, 50], 0.7, image=image)
        _boxes_at(decoder, logits, deltas, 9 * (5 * 16 + 12) + 1, [30, 90, 60, 120], 0.6, image=image)
    outputs = {"classification": logits, "box": deltas}
    after = decoder(outputs, picture_sizes=np.array([[128, 128], [90, 128]]))
    # image 0: the best 3 of 4 (IoU 0.46 < 0.5 as decoded), the first clipped to the picture
    assert list(np.asarray(after["num_detections"])) == [3, 2]
    assert_close(after["scores"][0, :3], [0.9, 0.8, 0.7], atol=1e-5)
    assert_close(after["boxes"][0, :3], [[0, 10, 60, 50], [0, 10, 60, 50], [100, 10, 120, 50]], atol=1e-3)
    # image 1 (90 rows): the third box is empty after the cut and dropped; the fourth was cut already
    assert_close(after["scores"][1, :2], [0.9, 0.8], atol=1e-5)
    assert np.all(np.asarray(after["classes"][1, 2:]) == -1) and np.all(np.asarray(after["boxes"][1, 2:]) == 0)
    before = DetectionDecoder(128, max_detections=3)(outputs, picture_sizes=np.array([[128, 128], [90, 128]]))
    assert list(np.asarray(before["num_detections"])) == [3, 2]  # the 0.8 box suppressed by the clipped 0.9
    assert_close(before["scores"][0, :3], [0.9, 0.7, 0.6], atol=1e-5)
    assert_close(before["scores"][1, :2], [0.9, 0.6], atol=1e-5)
    single = decoder({k: v[1:] for k, v in outputs.items()}, picture_sizes=np.array([[90, 128]]))
    assert int(single["num_detections"][0]) == 2  # a batch of one (LiteRT's graph, no loop) alike
    assert_close(single["boxes"][0], after["boxes"][1], atol=1e-4)


def test_top_k_per_level_and_max_detections():
    rng = np.random.default_rng(0)
    decoder = DetectionDecoder(128, pre_nms_top_k=2, nms_iou_threshold=1.0)
    logits = rng.normal(4, 1, (2, decoder_anchor_count(decoder), K)).astype(np.float32)
    deltas = np.zeros_like(logits[..., :1].repeat(4, -1))
    out = decoder({"classification": logits, "box": deltas})
    # Two candidates per level and five levels; NMS at IoU 1.0 keeps every distinct one.
    assert list(np.asarray(out["num_detections"])) == [10, 10]
    capped = DetectionDecoder(128, max_detections=7)({"classification": logits, "box": deltas})
    assert capped["boxes"].shape == (2, 7, 4) and list(np.asarray(capped["num_detections"])) == [7, 7]
    scores = np.asarray(capped["scores"])
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_nothing_above_threshold_gives_zero_detections():
    decoder = DetectionDecoder(128)
    logits, deltas = _empty(decoder, batch=2)
    out = decoder({"classification": logits, "box": deltas})
    assert list(np.asarray(out["num_detections"])) == [0, 0]
    assert np.all(np.asarray(out["classes"]) == -1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="score_threshold"):
        DetectionDecoder(128, score_threshold=1.5)
    with pytest.raises(ValueError, match="max_detections"):
        DetectionDecoder(128, max_detections=0)
    with pytest.raises(ValueError, match="clip_boxes"):
        DetectionDecoder(128, clip_boxes="never")
    with pytest.raises(ValueError, match="box_voting_sigma=-0.1 must be 0 \\(off\\) or positive"):
        DetectionDecoder(128, box_voting_sigma=-0.1)


def test_round_trip(tmp_path):
    generator = AnchorGenerator(num_scales=2, aspect_ratios=(1.0, 2.0), anchor_size=3.0)
    decoder = DetectionDecoder(128, generator,
                               box_coder_weights=(10.0, 10.0, 5.0, 5.0), score_threshold=0.1,
                               pre_nms_top_k=50, nms_iou_threshold=0.6, max_detections=20,
                               clip_boxes="after_nms", drop_empty_boxes=False, box_voting_sigma=0.05,
                               name="decoder_x")
    rng = np.random.default_rng(1)
    count = decoder_anchor_count(decoder)
    layer_round_trip(decoder, {"classification": rng.normal(0, 2, (1, count, K)).astype(np.float32),
                               "box": rng.normal(0, 0.2, (1, count, 4)).astype(np.float32)}, tmp_path)


def test_postprocess_settings_are_checked_when_made_and_change_only_what_they_give():
    with pytest.raises(SettingsError, match="^score_threshold: 1.5 must be in \\[0, 1\\)") as refused:
        PostprocessSettings(score_threshold=1.5)
    assert refused.value.settings == ("score_threshold",)
    with pytest.raises(SettingsError, match="^max_detections: 0 must be positive"):
        PostprocessSettings(max_detections=0)
    with pytest.raises(TypeError):
        PostprocessSettings(0.3)  # keyword-only
    decoder = DetectionDecoder(128, score_threshold=0.1, pre_nms_top_k=50, nms_iou_threshold=0.6, max_detections=20)
    changed = PostprocessSettings(score_threshold=0.4, max_detections=5).apply(decoder)
    assert (changed.score_threshold, changed.pre_nms_top_k, changed.nms_iou_threshold, changed.max_detections) == (
        0.4, 50, 0.6, 5)
    assert decoder.score_threshold == 0.1 and decoder.max_detections == 20  # a copy: the model's own is kept
    assert PostprocessSettings().apply(decoder).get_config() == decoder.get_config()


def test_postprocess_keywords_from_before_the_settings_object():
    with pytest.warns(DeprecationWarning, match="in the next release"):
        assert postprocess_settings(None, {"max_detections": 5}, "f") == PostprocessSettings(max_detections=5)
    assert postprocess_settings(None, {}, "f") == PostprocessSettings()
    given = PostprocessSettings(pre_nms_top_k=9)
    assert postprocess_settings(given, {}, "f") is given
    with pytest.raises(TypeError, match="^f: give postprocess=PostprocessSettings"):
        postprocess_settings(given, {"max_detections": 5}, "f")
    with pytest.raises(TypeError, match="unexpected keyword argument\\(s\\) \\['max_detection'\\]"):
        postprocess_settings(None, {"max_detection": 5}, "f")


@pytest.mark.parametrize("clip_boxes", ["before_nms", "after_nms"])
def test_score_voting_averages_the_overlapping_candidates_of_the_class(clip_boxes):
    """PAA's score voting worked by hand: the detection at anchor a (0.9) becomes the average of a and
    the concentric anchor b of its class (0.6, suppressed by NMS), weighted by score x exp(-(1 - IoU)^2
    / sigma); b's other class (0.7) and a far box of a's class (0.5) vote only for themselves; scores,
    classes and count are NMS's; sigma 0 is the decoder without voting; a batch of two, each picture
    alone."""
    sigma = 0.5
    plain = DetectionDecoder(128, clip_boxes=clip_boxes)
    voting = DetectionDecoder(128, clip_boxes=clip_boxes, box_voting_sigma=sigma)
    anchors = _anchors(plain)
    logits, deltas = _empty(plain, batch=2)
    base = 9 * (5 * 16 + 5)
    a, b = base + 1, base + 4  # concentric 1:1 anchors of sides 32 and 40.3 at P3 location (5, 5)
    far = 9 * (13 * 16 + 2) + 1
    logits[:, a, 1] = _logit(0.9)
    logits[:, b, 1] = _logit(0.6)
    logits[:, b, 2] = _logit(0.7)
    logits[:, far, 1] = _logit(0.5)
    deltas[:, a] = [0.2, -0.1, 0.1, 0.05]  # a's box moves off b's centre: the average is not a's or b's
    box_a = box_coder.decode(deltas[0, a], anchors[a]).numpy()
    box_b = anchors[b]
    iou = float(np.asarray(box_lib.pairwise_iou(box_a[None], box_b[None]))[0, 0])
    assert 0.5 < iou < 0.9
    weight_b = 0.6 * np.exp(-((1 - iou) ** 2) / sigma)
    expected = (0.9 * box_a + weight_b * box_b) / (0.9 + weight_b)
    outputs = {"classification": logits, "box": deltas}
    before, after = plain(outputs), voting(outputs)
    assert int(after["num_detections"][0]) == int(before["num_detections"][0]) == 3
    for key in ("scores", "classes", "num_detections"):
        np.testing.assert_array_equal(after[key], before[key])
    assert list(np.asarray(after["classes"][0, :3])) == [1, 2, 1]
    assert_close(after["boxes"][0, 0], box_lib.clip_to_image(expected, 128, 128), atol=1e-4)
    assert np.abs(np.asarray(after["boxes"][0, 0]) - np.asarray(before["boxes"][0, 0])).max() > 1.0
    assert_close(after["boxes"][0, 1:], before["boxes"][0, 1:], atol=1e-5)  # b's class 2, the far box
    assert_close(after["boxes"][1], after["boxes"][0], atol=1e-6)
    alone = voting({"classification": logits[:1], "box": deltas[:1]})
    assert_close(alone["boxes"][0], after["boxes"][0], atol=1e-6)
    off = DetectionDecoder(128, clip_boxes=clip_boxes, box_voting_sigma=0.0)(outputs)
    np.testing.assert_array_equal(off["boxes"], before["boxes"])
    changed = PostprocessSettings(box_voting_sigma=0.025).apply(plain)
    assert changed.box_voting_sigma == 0.025 and plain.box_voting_sigma == 0.0
