"""Weighted box fusion (`ops.box_fusion`): worked by hand, cut boxes, and the grid against every pair."""

import numpy as np
import pytest

from keras_retina.ops.box_fusion import fuse_boxes


def test_copies_become_their_score_weighted_average_with_the_best_score():
    boxes = [[10, 10, 30, 30], [12, 10, 32, 30], [10, 10, 30, 30], [100, 100, 120, 120], [11, 11, 31, 31]]
    scores = [0.9, 0.6, 0.8, 0.5, 0.3]
    classes = [1, 1, 2, 1, 1]  # the third is another class at the same place: its own
    fused, best, kept, members = fuse_boxes(boxes, scores, classes, threshold=0.55)
    assert kept.tolist() == [1, 2, 1] and best.tolist() == [0.9, 0.8, 0.5] and members.tolist() == [3, 1, 1]
    expected = (0.9 * np.array([10, 10, 30, 30]) + 0.6 * np.array([12, 10, 32, 30])
                + 0.3 * np.array([11, 11, 31, 31])) / 1.8
    np.testing.assert_allclose(fused[0], expected)
    np.testing.assert_allclose(fused[1:], [[10, 10, 30, 30], [100, 100, 120, 120]])


def test_a_box_joins_the_cluster_it_overlaps_most_and_low_overlap_stays_apart():
    # IoU of [0, 0, 10, 10] and [0, 4, 10, 14]: 60 / 140 = 0.43 < 0.55: two objects
    fused, _, _, members = fuse_boxes([[0, 0, 10, 10], [0, 4, 10, 14]], [0.9, 0.8], [0, 0], threshold=0.55)
    assert members.tolist() == [1, 1] and fused.tolist() == [[0, 0, 10, 10], [0, 4, 10, 14]]
    fused, _, _, members = fuse_boxes([[0, 0, 10, 10], [0, 4, 10, 14]], [0.9, 0.8], [0, 0], threshold=0.4)
    assert members.tolist() == [2]


def test_cut_parts_join_by_the_smaller_box_and_never_move_a_whole_view():
    whole, part = [0, 0, 20, 40], [0, 25, 20, 40]  # the part's IoU with the whole is 0.375
    fused, best, _, members = fuse_boxes([whole, part], [0.7, 0.9], [3, 3], threshold=0.55, cut=[False, True])
    assert members.tolist() == [2] and fused.tolist() == [whole] and best.tolist() == [0.9]
    # an object no tile holds whole: the box around its parts (each overlaps the next by half of itself)
    fused, _, _, members = fuse_boxes([[0, 0, 20, 30], [0, 15, 20, 45], [0, 30, 20, 60]], [0.8, 0.9, 0.7], [3] * 3,
                                      threshold=0.5, cut=[True, True, True])
    assert fused.tolist() == [[0, 0, 20, 60]] and members.tolist() == [3]
    # the same parts uncut are three objects (IoU 1/3)
    assert len(fuse_boxes([[0, 0, 20, 30], [0, 15, 20, 45], [0, 30, 20, 60]], [0.8, 0.9, 0.7], [3] * 3, 0.5)[0]) == 3


@pytest.mark.parametrize("seed", [0, 1])
def test_the_grid_finds_what_checking_every_cluster_finds(seed):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 2000, (300, 2))
    sides = rng.uniform(10, 300, (300, 2))
    objects = np.concatenate([centres - sides / 2, centres + sides / 2], axis=1)
    copies = np.repeat(objects, 3, axis=0) + rng.normal(0, 3, (900, 4))  # three views of each
    scores, classes, cut = rng.uniform(0.05, 1, 900), rng.integers(0, 3, 900), rng.uniform(size=900) < 0.2
    with_grid = fuse_boxes(copies, scores, classes, 0.55, cut, cell=64.0)
    everything = fuse_boxes(copies, scores, classes, 0.55, cut, cell=1e9)  # one cell: every cluster checked
    for a, b in zip(with_grid, everything):
        np.testing.assert_array_equal(a, b)
    assert len(with_grid[0]) < 700  # copies were fused


def test_nothing_in_nothing_out():
    fused, best, kept, members = fuse_boxes(np.zeros((0, 4)), [], np.zeros(0, np.int64))
    assert fused.shape == (0, 4) and best.shape == kept.shape == members.shape == (0,)


def test_a_small_whole_box_inside_a_large_cut_part_is_another_object():
    fused, best, _, members = fuse_boxes([[0, 0, 200, 300], [50, 50, 80, 80]], [0.8, 0.6], [1, 1], 0.5,
                                         cut=[True, False])
    assert fused.tolist() == [[0, 0, 200, 300], [50, 50, 80, 80]] and members.tolist() == [1, 1]
    assert best.tolist() == [0.8, 0.6]
