"""The real tfds.load path for COCO, offline: tfds.testing.mock_data fakes the records."""

import pytest

from keras_retina.data import pipeline, tfds_coco

tfds = pytest.importorskip("tensorflow_datasets")


def test_coco_2017_through_tfds_load(tmp_path):
    with tfds.testing.mock_data(num_examples=3, data_dir=str(tmp_path)):
        examples, label_map = tfds_coco.tfds_examples("coco/2017", "train", data_dir=str(tmp_path))
        items = list(examples)
    # Original COCO category ids, not TFDS's 0..79 (names come from the dataset's label file,
    # which mock_data replaces by numbers).
    assert len(label_map) == 80 and label_map[0]["id"] == 1 and label_map[-1]["id"] == 90
    assert [e["id"] for e in label_map] == list(tfds_coco.COCO_CATEGORY_IDS)
    assert len(items) == 3
    for example in items:
        height, width = example["image"].shape[:2]
        boxes = example["boxes"].numpy()
        assert example["image"].shape[-1] == 3 and boxes.shape[1] == 4
        assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= height + 1e-3).all()
        assert (boxes[:, [1, 3]] <= width + 1e-3).all()  # normalised boxes -> pixels
        assert ((example["classes"].numpy() >= 0) & (example["classes"].numpy() < 80)).all()
        assert len(example["is_crowd"].numpy()) == len(boxes) == len(example["area"].numpy())


def test_tfds_examples_feed_the_training_pipeline(tmp_path):
    from keras_retina.label_encoder import LabelEncoder

    with tfds.testing.mock_data(num_examples=4, data_dir=str(tmp_path)):
        examples, _ = tfds_coco.tfds_examples("coco/2017", "train", data_dir=str(tmp_path))
        images, targets = next(iter(pipeline.train_dataset(examples, LabelEncoder(64), 64, 2,
                                                           repeat=False, seed=0)))
    assert images.shape == (2, 64, 64, 3) and targets["cls_targets"].shape[0] == 2
