import json
import os

import numpy as np

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
