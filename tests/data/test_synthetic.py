import json
import os

import numpy as np
import pytest

from keras_retina.data import synthetic


def test_examples_have_exact_boxes():
    image, boxes, classes = synthetic.make_example(np.random.default_rng(0), (96, 64), num_classes=3)
    assert image.shape == (96, 64, 3) and image.dtype == np.uint8
    assert len(boxes) == len(classes) >= 1 and np.all(classes < 3)
    for (y0, x0, y1, x1), cls in zip(boxes, classes):
        assert 0 <= y0 < y1 <= 96 and 0 <= x0 < x1 <= 64
        colour = synthetic.CLASSES[cls][1]
        patch = image[int(y0) + 1:int(y1) - 1, int(x0) + 1:int(x1) - 1]
        assert np.any(np.all(patch == colour, axis=-1))  # the shape is drawn inside its box


def test_coco_dataset_written_once(tmp_path):
    paths = synthetic.write_coco_dataset(str(tmp_path), num_train=4, num_val=2, num_classes=2)
    coco = json.loads(open(paths["train"][0]).read())
    assert [c["id"] for c in coco["categories"]] == [1, 3]  # non-contiguous, like COCO
    assert len(coco["images"]) == 4 and os.path.isfile(os.path.join(paths["train"][1], "000000.jpg"))
    stamp = os.path.getmtime(paths["train"][0])
    assert synthetic.write_coco_dataset(str(tmp_path), num_train=4, num_val=2, num_classes=2) == paths
    assert os.path.getmtime(paths["train"][0]) == stamp


def test_the_demo_data_is_never_written_over_other_files(tmp_path):
    import pytest

    from keras_retina.errors import UsageError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "train.json").write_text("my own annotations")
    with pytest.raises(UsageError, match="--demo_data=.*mine: the folder holds other files"):
        synthetic.write_coco_dataset(str(tmp_path / "mine"), num_train=2, num_val=1)
    assert (tmp_path / "mine" / "train.json").read_text() == "my own annotations"
    assert os.listdir(tmp_path / "mine") == ["train.json"]
    paths = synthetic.write_coco_dataset(str(tmp_path / "demo"), num_train=2, num_val=1)  # new folder: written
    assert os.path.isfile(paths["train"][0]) and sorted(os.listdir(tmp_path)) == ["demo", "mine"]  # no partial left
    assert synthetic.write_coco_dataset(str(tmp_path / "demo"), num_train=2, num_val=1) == paths  # reused
    with pytest.raises(UsageError, match="or a demo dataset of other settings"):
        synthetic.write_coco_dataset(str(tmp_path / "demo"), num_train=3, num_val=1)


def test_soft_blobs_are_centred_in_boxes_of_two_standard_deviations():
    rng = np.random.default_rng(3)  # a blob away from the borders: its box is not clipped
    image, boxes, classes = synthetic.make_soft_example(rng, 128, objects=(1, 1), sigmas=(4.0, 4.0))
    (y0, x0, y1, x1), = boxes
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8 and len(classes) == 1
    assert 0 < y0 and 0 < x0 and y1 < 128 and x1 < 128
    assert (y1 - y0, x1 - x0) == pytest.approx((16.0, 16.0))  # 2 sigma either side of the centre
    # the blob's centre is tinted towards its class's colour, far more than the box's corners
    colour = np.asarray(synthetic.SOFT_CLASSES[classes[0]][1], np.float64)
    centre = image[int((y0 + y1) / 2), int((x0 + x1) / 2)].astype(np.float64)
    corner = image[int(y0), int(x0)].astype(np.float64)  # boxes are clipped to the picture
    assert np.abs(centre - colour).sum() < np.abs(corner - colour).sum()


def test_benchmarks_are_coco_json_the_readers_take(tmp_path):
    from keras_retina.data.readers import coco_json

    for write, classes in ((synthetic.write_soft_extent_benchmark, 2), (synthetic.write_small_data_benchmark, 6)):
        paths = write(str(tmp_path / write.__name__), num_train=3, num_val=2, size=64)
        source = coco_json.read_coco_json(*paths["val"])
        assert len(source.label_map) == classes and len(source.images) == 2
        boxes = [e["boxes"].numpy() for e in source.examples()]
        assert all(b.shape[1] == 4 and np.all(b[:, 2:] > b[:, :2]) for b in boxes) and sum(map(len, boxes)) > 0
        stamp = os.path.getmtime(paths["train"][0])
        assert write(str(tmp_path / write.__name__), num_train=3, num_val=2, size=64) == paths  # written once
        assert os.path.getmtime(paths["train"][0]) == stamp
