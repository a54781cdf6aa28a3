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
