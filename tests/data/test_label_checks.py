"""Labels that look wrong (`data.label_checks`): boxes on one object twice, sizes and shapes far
from their class's, found as placed, in pictures of thousands of boxes too."""

import time

import numpy as np

from keras_retina.data.label_checks import _duplicates, format_label_checks, label_checks

LABEL_MAP = [{"id": 1, "name": "tree"}, {"id": 2, "name": "car"}]


class _Source:
    label_map = LABEL_MAP

    def __init__(self, pictures):  # [(boxes, classes)]
        self.images = [{"id": k + 1, "file": f"p{k + 1}.jpg", "boxes": np.asarray(b, np.float64).reshape(-1, 4),
                        "classes": np.asarray(c, np.int64), "is_crowd": np.zeros(len(c), bool)}
                       for k, (b, c) in enumerate(pictures)]


def _grid_of_trees(rng, n=40):
    """`n` trees of 20-26 px on a grid 40 px apart (touching nothing), class 0."""
    sides = rng.uniform(20, 26, n)
    corners = np.stack([np.arange(n) // 8 * 40.0, np.arange(n) % 8 * 40.0], -1)
    return np.concatenate([corners, corners + sides[:, None]], 1), [0] * n


def test_duplicates_and_outliers_are_found_where_they_were_placed():
    rng = np.random.default_rng(0)
    trees, classes = _grid_of_trees(rng)
    doubled = np.vstack([trees, trees[5] + [1, 1, 1, 1]])  # tree 5 labelled twice, one pixel apart
    giant = np.vstack([trees, [[0, 0, 300, 300]]])  # a box around everything
    sliver = np.vstack([trees, [[100, 100, 108, 160]]])  # 8 x 60: a tree's area, not its shape
    car = [[10, 10, 30, 30], [11, 10, 31, 30]]  # a car twice: another class, found too
    source = _Source([(doubled, classes + [0]), (giant, classes + [0]), (sliver, classes + [0]),
                      (np.vstack([trees, car]), classes + [1, 1]), (trees[:10], [0] * 10)])
    report = label_checks(source)
    assert report["counts"] == {"duplicates": 2, "size_outliers": 1, "shape_outliers": 1}
    first, second = report["duplicates"]
    assert (first["picture"], first["class"], first["boxes"][0]) == ("p1.jpg", "tree", trees[5].tolist())
    assert first["iou"] > 0.8 and (second["picture"], second["class"]) == ("p4.jpg", "car")
    assert report["size_outliers"][0]["picture"] == "p2.jpg" and report["size_outliers"][0]["box"] == [0, 0, 300, 300]
    assert report["shape_outliers"][0]["picture"] == "p3.jpg"
    assert report["shape_outliers"][0]["robust_z"] < -4  # far wider than tall
    text = format_label_checks("train", report)
    assert text.startswith("[train] labels to look at: 2 pair(s) of boxes on one object (IoU >= 0.8), 1 box(es)")
    assert "duplicate tree in p1.jpg: IoU" in text and "size tree in p2.jpg: [0, 0, 300, 300]" in text
    clean = label_checks(_Source([_grid_of_trees(rng)]))
    assert clean["counts"] == {"duplicates": 0, "size_outliers": 0, "shape_outliers": 0}
    assert format_label_checks("val", clean).startswith("[val] labels: no duplicate boxes")


def test_thousands_of_boxes_without_comparing_every_pair():
    """20,000 touching boxes of mixed sizes with 7 doubles: exactly those found (against every pair,
    on a sample), in well under the time every pair would take."""
    rng = np.random.default_rng(1)
    side = rng.uniform(8, 40, 20000)
    corner = np.stack([np.arange(20000) // 150 * 45.0, np.arange(20000) % 150 * 45.0], -1)
    boxes = np.concatenate([corner, corner + side[:, None]], 1)
    doubles = rng.choice(20000, 7, replace=False)
    boxes = np.vstack([boxes, boxes[doubles] + rng.uniform(-0.5, 0.5, (7, 4))])
    start = time.process_time()
    found = _duplicates(boxes)
    assert time.process_time() - start < 20
    assert sorted((i, j) for i, j, _ in found) == sorted((int(d), 20000 + k) for k, d in enumerate(doubles))


def test_confident_detections_on_no_label_point_at_missing_labels():
    """A detection on its label, one of another class there, one on nothing above the threshold and one
    below it: the two confident ones on no label of their class are listed, the picture named."""
    import tensorflow as tf

    from keras_retina.data.label_checks import format_unlabelled, unlabelled_objects
    from keras_retina.data.source import DatasetSource

    examples = {"image_id": tf.constant([7], tf.int64), "image": tf.zeros((1, 100, 200, 3), tf.uint8),
                "boxes": tf.constant([[[10.0, 10.0, 50.0, 50.0]]]), "classes": tf.constant([[0]], tf.int32)}
    source = DatasetSource(tf.data.Dataset.from_tensor_slices(examples), LABEL_MAP)

    def detect(pixels):  # normalised boxes, scores, category ids
        return (np.array([[0.1, 0.05, 0.5, 0.25], [0.1, 0.05, 0.5, 0.25], [0.6, 0.6, 0.9, 0.9], [0.6, 0.1, 0.9, 0.3]]),
                np.array([0.9, 0.8, 0.7, 0.2]), np.array([1, 2, 1, 1]))

    found = unlabelled_objects(source, detect, {1: 0.5, 2: 0.5})
    assert (found["detections"], found["pictures_with_some"], found["pictures_checked"]) == (2, 1, 1)
    entry = found["pictures"][0]
    assert entry["picture"] == "image id 7" and entry["classes"] == ["car", "tree"]
    np.testing.assert_allclose(entry["boxes"], [[10, 10, 50, 50], [60, 120, 90, 180]])
    assert "2 in 1 of 1 pictures" in format_unlabelled("train", found, "score >= 0.5")


def test_a_class_of_one_size_has_no_outliers_for_a_pixel_more():
    boxes = np.array([[k * 30, 0, k * 30 + 20, 20] for k in range(30)] + [[0, 40, 21, 61]], np.float64)
    report = label_checks(_Source([(boxes, [0] * 31)]))
    assert report["counts"] == {"duplicates": 0, "size_outliers": 0, "shape_outliers": 0}
