"""Augmentations (`data.augment`): each exact for boxes on hand-built pictures."""

import numpy as np
import pytest
import tensorflow as tf

from keras_retina.data import augment, pipeline
from keras_retina.modeling.transform import ResizePolicy
from keras_retina.training.train_config import TrainConfig


def _picture():
    """A 40 x 60 black picture with the box [5, 10, 15, 30] (yxyx) painted white."""
    image = np.zeros((40, 60, 3), np.uint8)
    image[5:15, 10:30] = 255
    return tf.constant(image), tf.constant([[5.0, 10.0, 15.0, 30.0]])


def _painted(image):
    """The yxyx extent of the picture's white pixels."""
    rows, cols = np.nonzero(np.asarray(image)[..., 0] > 127)
    return [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]


def _fixed(values):
    """A `uniform` that returns values[which] (scaled into [low, high]) for each stream."""
    def uniform(shape, low=0.0, high=1.0, which=0):
        return tf.fill(shape, tf.constant(low + (high - low) * values.get(which, 0.0), tf.float32))

    return uniform


ONLY = dict.fromkeys(augment.AUGMENTATIONS, 0.0)


@pytest.mark.parametrize("draw, turns", [(0.1, 1), (0.4, 2), (0.7, 3), (0.9, 0)])
def test_quarter_turns_carry_the_boxes(draw, turns):
    image, boxes = _picture()
    out, moved = augment.augment(image, boxes, {**ONLY, "rotate90": 0.75}, _fixed({0: draw}))
    assert out.shape[:2] == ((40, 60) if turns % 2 == 0 else (60, 40))
    assert np.allclose(moved.numpy()[0], _painted(out)), (turns, moved.numpy(), _painted(out))
    np.testing.assert_array_equal(out.numpy(), np.rot90(image.numpy(), turns).astype(np.float32))


def test_a_vertical_flip_carries_the_boxes():
    image, boxes = _picture()
    out, moved = augment.augment(image, boxes, {**ONLY, "vertical_flip": 0.5}, _fixed({1: 0.2}))
    assert moved.numpy()[0].tolist() == [25.0, 10.0, 35.0, 30.0] == _painted(out)
    same, kept = augment.augment(image, boxes, {**ONLY, "vertical_flip": 0.5}, _fixed({1: 0.7}))
    assert kept.numpy()[0].tolist() == [5.0, 10.0, 15.0, 30.0]


def test_a_crop_shifts_boxes_and_the_pipeline_clips_or_drops_the_cut_ones():
    image = np.zeros((40, 60, 3), np.uint8)
    boxes = tf.constant([[5.0, 10.0, 15.0, 30.0], [30.0, 50.0, 38.0, 58.0], [18.0, 26.0, 24.0, 40.0]])
    # a window of half of each side (20 x 30) at the middle of the room left (offset 10, 15)
    out, moved = augment.augment(tf.constant(image), boxes, {**ONLY, "crop": 1.0},
                                 _fixed({2: 0.5, 9: 0.0, 10: 0.5}))
    assert out.shape[:2] == (20, 30)
    np.testing.assert_allclose(moved.numpy(), [[-5, -5, 5, 15], [20, 35, 28, 43], [8, 11, 14, 25]])
    # the pipeline's box rule: the cut box is clipped to the window, the one outside it dropped
    clipped, classes = pipeline._clip_and_keep(moved, tf.constant([0, 1, 2]), tf.constant([20, 30]))
    assert classes.numpy().tolist() == [0, -1, 2]
    np.testing.assert_allclose(clipped.numpy()[[0, 2]], [[0, 0, 5, 15], [8, 11, 14, 25]])


def test_a_zoom_out_places_the_picture_on_a_larger_canvas():
    image, boxes = _picture()
    out, moved = augment.augment(image, boxes, {**ONLY, "zoom_out": 1.0}, _fixed({2: 0.0, 7: 1.0, 8: 0.5}))
    assert out.shape[:2] == (80, 120)  # twice each side
    assert moved.numpy()[0].tolist() == [25.0, 40.0, 35.0, 60.0] == _painted(out)


def test_colour_jitter_keeps_boxes_and_pixel_range():
    image, boxes = _picture()
    out, moved = augment.augment(image, boxes, {**ONLY, "color": 0.5}, _fixed({3: 1.0, 4: 0.0, 5: 1.0, 6: 1.0}))
    assert moved.numpy().tolist() == boxes.numpy().tolist()
    assert 0 <= out.numpy().min() and out.numpy().max() <= 255 and not np.allclose(out.numpy(), image.numpy())


def test_presets_flags_and_the_deterministic_path():
    assert augment.settings("none") == augment.PRESETS["none"]
    overhead = TrainConfig(augment="overhead", rotate90=0.0).augmentation()
    assert overhead["vertical_flip"] == 0.5 and overhead["rotate90"] == 0.0  # a flag overrides the preset
    assert not augment.active(TrainConfig().augmentation())  # the paper's recipe by default
    image, boxes = _picture()
    example = {"image": image, "boxes": boxes, "classes": tf.constant([0]), "is_crowd": tf.constant([False])}
    policy = ResizePolicy(64, 96)
    runs = [pipeline.preprocess_for_training(example, policy, seed=tf.constant([7, 9]),
                                             augmentation=augment.PRESETS["overhead"]) for _ in range(2)]
    for first, second in zip(*runs):  # a function of the seed: --deterministic resumes see the same pictures
        np.testing.assert_array_equal(first.numpy(), second.numpy())
