"""ATSS (modeling/atss.py) against a plain per-box loop of the paper's rule, on hand-built and random
boxes, and through the LabelEncoder and the model config."""

import numpy as np
import pytest
import tensorflow as tf

from keras_retina.modeling import atss
from keras_retina.modeling.anchors import AnchorGenerator
from keras_retina.modeling.label_encoder import BACKGROUND, IGNORE, LabelEncoder
from keras_retina.modeling.model_config import ModelConfig
from keras_retina.ops import box_coder

from conftest import TINY

SIZE = (96, 128)


def _iou(a, b):
    """[A, N] IoU of yxyx boxes, float64."""
    y0, x0 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    y1, x1 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def reference(anchors, counts, per_location, boxes, valid, top_k):
    """The ATSS rule written out box by box, location by location (float64): on each level the
    `top_k` locations nearest the box's centre, all anchors of each."""
    anchors, boxes = anchors.astype(np.float64), boxes.astype(np.float64)
    iou = _iou(anchors, boxes)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    best, matched = np.full(len(anchors), -1.0), np.zeros(len(anchors), int)
    for g, box in enumerate(boxes):
        if not valid[g]:
            continue
        candidates, start = [], 0
        for count in counts:
            locations = centers[start:start + count:per_location]  # anchor order is location-major
            distance = np.linalg.norm(locations - (box[:2] + box[2:]) / 2, axis=1)
            for location in np.argsort(distance, kind="stable")[:top_k]:
                candidates += list(range(start + location * per_location, start + (location + 1) * per_location))
            start += count
        values = iou[candidates, g]
        threshold = values.mean() + values.std(ddof=1)
        for a in candidates:
            inside = min(centers[a, 0] - box[0], centers[a, 1] - box[1], box[2] - centers[a, 0],
                         box[3] - centers[a, 1]) > atss.INSIDE_MARGIN
            if iou[a, g] >= threshold and inside and iou[a, g] > best[a]:
                best[a], matched[a] = iou[a, g], g
    return best, matched


def _random_boxes(rng, count):
    centers = rng.uniform([0, 0], SIZE, (count, 2))
    sides = rng.uniform(4, 60, (count, 2))
    return np.concatenate([centers - sides / 2, centers + sides / 2], axis=1).astype(np.float32)


@pytest.mark.parametrize("top_k", [9, 4])
def test_equal_to_the_rule_written_out_on_random_boxes(top_k):
    generator = AnchorGenerator(min_level=3, max_level=5)
    anchors, counts = generator.anchors(SIZE), generator.level_counts(SIZE)
    rng = np.random.default_rng(top_k)
    boxes = np.stack([_random_boxes(rng, 12) for _ in range(3)])
    valid = np.ones((3, 12), bool)
    valid[1, 8:] = False  # padding
    best, matched = atss.atss_match(anchors, counts, 9, tf.constant(boxes), tf.constant(valid), top_k=top_k, chunk=5)
    for b in range(3):
        expected_best, expected_matched = reference(anchors, counts, 9, boxes[b], valid[b], top_k)
        assert np.array_equal(best[b].numpy() >= 0, expected_best >= 0), b
        positive = expected_best >= 0
        assert positive.sum() >= valid[b].sum()  # every box trains at least one anchor here
        assert np.array_equal(matched[b].numpy()[positive], expected_matched[positive])
        np.testing.assert_allclose(best[b].numpy()[positive], expected_best[positive], atol=1e-6)


def test_hand_built_boxes():
    """One anchor a location on a 32 x 32 input: level 4 (stride 16) has 4 locations, centres
    (8, 8), (8, 24), (24, 8), (24, 24), and level 5 one, centre (16, 16); 2 candidate locations a
    level. Worked out by hand: box 0, equal to anchor 0, takes it (IoU 1; candidates' IoUs 1, 1/3
    and 1/4: threshold 0.94); box 1 takes anchor 3 (0.316 against a threshold of 0.314, its centre
    inside); box 2 would take anchor 0 (0.25 against 0.24), which box 0 overlaps more; anchors 1,
    2 and 4 reach no box's threshold."""
    generator = AnchorGenerator(min_level=4, max_level=5, num_scales=1, aspect_ratios=(1.0,), anchor_size=2)
    anchors, counts = generator.anchors((32, 32)), generator.level_counts((32, 32))
    assert counts == [4, 1] and anchors[0].tolist() == [-8, -8, 24, 24] and anchors[4].tolist() == [-16, -16, 48, 48]
    boxes = tf.constant([[anchors[0], [12, 12, 30, 30], [0, 0, 16, 16]]], tf.float32)
    best, matched = atss.atss_match(anchors, counts, 1, boxes, tf.ones([1, 3], tf.bool), top_k=2)
    assert (best[0].numpy() >= 0).tolist() == [True, False, False, True, False]
    assert (matched[0, 0], matched[0, 3]) == (0, 1)
    assert float(best[0, 0]) == pytest.approx(1.0) and float(best[0, 3]) == pytest.approx(324 / 1024)
    # without box 0, anchor 0 goes to box 2
    best, matched = atss.atss_match(anchors, counts, 1, boxes, tf.constant([[False, True, True]]), top_k=2)
    assert (best[0].numpy() >= 0).tolist() == [True, False, False, True, False] and matched[0, 0] == 2
    assert float(best[0, 0]) == pytest.approx(0.25)


def test_the_label_encoder_with_atss_ignores_no_anchor_and_keeps_its_format():
    generator = AnchorGenerator(min_level=3, max_level=5)
    paper = LabelEncoder(SIZE, generator)
    adaptive = LabelEncoder(SIZE, generator, assigner="atss")
    rng = np.random.default_rng(3)
    boxes, classes = _random_boxes(rng, 6), np.array([0, 1, 2, 0, 1, -1])
    out = adaptive(boxes, classes)
    assert out["cls_targets"].shape == paper(boxes, classes)["cls_targets"].shape
    targets = out["cls_targets"].numpy()
    assert IGNORE not in targets and set(np.unique(targets)) <= {BACKGROUND, 0, 1, 2}
    best, matched = reference(generator.anchors(SIZE), generator.level_counts(SIZE), 9, boxes, classes >= 0, 9)
    assert np.array_equal(targets, np.where(best >= 0, classes[matched], BACKGROUND))
    foreground = best >= 0
    deltas = box_coder.encode(boxes[matched[foreground]], generator.anchors(SIZE)[foreground])
    np.testing.assert_allclose(out["box_targets"].numpy()[foreground], deltas, atol=1e-5)
    # an input of unknown size (buckets in tf.data) gives the same targets
    dynamic = tf.function(lambda b, c, s: adaptive(b, c, input_size=s),
                          input_signature=[tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int32),
                                           tf.TensorSpec([2], tf.int32)])
    assert np.array_equal(dynamic(boxes, classes, tf.constant(SIZE))["cls_targets"].numpy(), targets)
    clone = LabelEncoder.from_config(adaptive.get_config())
    assert (clone.assigner, clone.atss_top_k) == ("atss", 9)
    with pytest.raises(ValueError, match="assigner='nearest'"):
        LabelEncoder(SIZE, generator, assigner="nearest")


def test_the_model_config_chooses_it():
    from keras_retina.modeling.retinanet import RetinaNet

    assert ModelConfig(**TINY).anchor_assigner == "max_iou"  # the paper's rule stays the default
    model = RetinaNet(config=ModelConfig(**TINY, num_classes=2, anchor_assigner="atss", atss_top_k=5))
    assert (model.label_encoder.assigner, model.label_encoder.atss_top_k) == ("atss", 5)
