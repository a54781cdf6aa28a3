"""The real tfds.load path for COCO, offline: tfds.testing.mock_data serves the records."""

import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from conftest import tfds_records
from keras_retina.data import pipeline, tfds_coco


def _random_coco(count, seed=0):
    """COCO-like records: random PNG pictures with 1-4 random boxes and labels."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(count):
        height, width = rng.integers(24, 80, 2)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
        corners = np.sort(rng.uniform(0, 1, (rng.integers(1, 5), 2, 2)), axis=1)  # [N, min/max, y/x]
        records.append((100 + i, buffer.getvalue(), corners.reshape(-1, 4), rng.integers(0, 80, len(corners))))
    return records


def test_coco_2017_through_tfds_load(tmp_path):
    records = _random_coco(3)
    with tfds.testing.mock_data(as_dataset_fn=tfds_records(records), data_dir=str(tmp_path)):
        examples, label_map = tfds_coco.tfds_examples("coco/2017", "train", data_dir=str(tmp_path))
        items = list(examples)
    # Original COCO category ids, not TFDS's 0..79 (names come from the dataset's label file,
    # which mock_data replaces by numbers).
    assert len(label_map) == 80 and label_map[0]["id"] == 1 and label_map[-1]["id"] == 90
    assert [e["id"] for e in label_map] == list(tfds_coco.COCO_CATEGORY_IDS)
    assert [int(e["image_id"]) for e in items] == [100, 101, 102]
    for example, (_, encoded, boxes, labels) in zip(items, records):
        picture = np.asarray(Image.open(io.BytesIO(encoded)))
        assert np.array_equal(example["image"].numpy(), picture)
        height, width = picture.shape[:2]
        np.testing.assert_allclose(example["boxes"].numpy(), boxes * [height, width, height, width], rtol=1e-5)
        assert example["classes"].numpy().tolist() == labels.tolist()
        assert not example["is_crowd"].numpy().any() and len(example["area"].numpy()) == len(boxes)


def test_tfds_examples_feed_the_training_pipeline(tmp_path):
    from keras_retina.label_encoder import LabelEncoder

    with tfds.testing.mock_data(as_dataset_fn=tfds_records(_random_coco(4)), data_dir=str(tmp_path)):
        examples, _ = tfds_coco.tfds_examples("coco/2017", "train", data_dir=str(tmp_path))
        images, targets = next(iter(pipeline.train_dataset(examples, LabelEncoder(64), 64, 2,
                                                           repeat=False, seed=0)))
    assert images.shape == (2, 64, 64, 3) and targets["cls_targets"].shape[0] == 2
