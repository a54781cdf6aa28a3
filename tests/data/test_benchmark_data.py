import os

import numpy as np
import pytest

from keras_retina.data import benchmark_data


def test_soft_blobs_are_centred_in_boxes_of_two_standard_deviations():
    rng = np.random.default_rng(3)  # a blob away from the borders: its box is not clipped
    image, boxes, classes = benchmark_data.make_soft_example(rng, 128, objects=(1, 1), sigmas=(4.0, 4.0))
    (y0, x0, y1, x1), = boxes
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8 and len(classes) == 1
    assert 0 < y0 and 0 < x0 and y1 < 128 and x1 < 128
    assert (y1 - y0, x1 - x0) == pytest.approx((16.0, 16.0))  # 2 sigma either side of the centre
    # the blob's centre is tinted towards its class's colour, far more than the box's corners
    colour = np.asarray(benchmark_data.SOFT_CLASSES[classes[0]][1], np.float64)
    centre = image[int((y0 + y1) / 2), int((x0 + x1) / 2)].astype(np.float64)
    corner = image[int(y0), int(x0)].astype(np.float64)  # boxes are clipped to the picture
    assert np.abs(centre - colour).sum() < np.abs(corner - colour).sum()
    # the benchmark's boxes: each at its own multiple of sigma, 1.5-2.5 (sides of 12-20 px at sigma 4)
    sides = [float(b[2] - b[0]) for seed in range(40) for b in benchmark_data.make_soft_example(
        np.random.default_rng(seed), 128, objects=(1, 1), sigmas=(4.0, 4.0),
        extents=benchmark_data.AMBIGUOUS_EXTENTS)[1] if 0 < b[0] and b[2] < 128]
    assert len(sides) > 20 and 12.0 <= min(sides) < 14.0 and 18.0 < max(sides) <= 20.0


def test_benchmarks_are_coco_json_the_readers_take(tmp_path):
    from keras_retina.data.readers import coco_json

    for write, classes in ((benchmark_data.write_soft_extent_benchmark, 2),
                           (benchmark_data.write_small_data_benchmark, 6)):
        paths = write(str(tmp_path / write.__name__), num_train=3, num_val=2, size=64)
        source = coco_json.read_coco_json(*paths["val"])
        assert len(source.label_map) == classes and len(source.images) == 2
        boxes = [e["boxes"].numpy() for e in source.examples()]
        assert all(b.shape[1] == 4 and np.all(b[:, 2:] > b[:, :2]) for b in boxes) and sum(map(len, boxes)) > 0
        stamp = os.path.getmtime(paths["train"][0])
        assert write(str(tmp_path / write.__name__), num_train=3, num_val=2, size=64) == paths  # written once
        assert os.path.getmtime(paths["train"][0]) == stamp
