"""The real tfds.load path for COCO, offline: tfds.testing.mock_data serves the records."""

import dataclasses
import io

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from keras_retina.data import pipeline
from keras_retina.data.data_config import DataConfig
from keras_retina.data.readers import tfds_coco
from keras_retina.data.splits import open_sources
from keras_retina.errors import DataError
from keras_retina.modeling.label_encoder import LabelEncoder
from keras_retina.modeling.transform import ResizePolicy

from conftest import tfds_records
from dirty_data import DIRTY_RECORDS_COUNTS, dirty_records

SQUARE_64 = ResizePolicy(64, policy="square")


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
        source = tfds_coco.tfds_source("coco/2017", "train", data_dir=str(tmp_path))
        label_map, items = source.label_map, list(source.examples())
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


def test_tfds_source_feeds_the_training_pipeline(tmp_path):
    with tfds.testing.mock_data(as_dataset_fn=tfds_records(_random_coco(4)), data_dir=str(tmp_path)):
        source = tfds_coco.tfds_source("coco/2017", "train", data_dir=str(tmp_path)).checked()
        images, targets = next(iter(pipeline.train_dataset(source, LabelEncoder(64), SQUARE_64, 2,
                                                           repeat=False, seed=0)))
    assert images.shape == (2, 64, 64, 3) and targets["cls_targets"].shape[0] == 2


def test_tfds_bad_boxes_and_images(tmp_path):
    """The real tfds.load path (tfds.testing.mock_data serving our records as the split's
    contents, as a custom TFDS dataset with plain tensor boxes could hold them)."""
    records = [(image_id, encoded, boxes, [c - 1 if c == 1 else 99 for c in classes])  # 99: not a label
               for image_id, encoded, boxes, classes in dirty_records()]
    data = DataConfig(tfds_name="coco/2017", tfds_train_split="train", tfds_data_dir=str(tmp_path))
    with tfds.testing.mock_data(as_dataset_fn=tfds_records(records), data_dir=str(tmp_path)):
        with pytest.raises(DataError, match=r"coco/2017 train example 0 \(image id 1\): box \[nan"):
            open_sources(data)
        sources = open_sources(dataclasses.replace(data, skip_bad_examples=True))
        train, label_map = sources.train, sources.label_map
        assert len(label_map) == 80
        assert dict(train.report.counts) == DIRTY_RECORDS_COUNTS
        assert train.report.offenders["unreadable_image"] == ["coco/2017 train example 1 (image id 2)"]
        assert train.report.offenders["unknown_category"] == ["coco/2017 train example 2 (image id 3): category 99"]
        assert sorted(int(e["image_id"]) for e in train.examples()) == [1, 3, 4, 5]  # undecodable, shared ids: out
        dataset = pipeline.train_dataset(train, LabelEncoder(input_size=64), SQUARE_64, batch_size=4,
                                         seed=0, repeat=False, shuffle=False)
        images, targets = next(iter(dataset))
        assert np.all(np.isfinite(images.numpy())) and np.all(np.isfinite(targets["box_targets"].numpy()))

        # --deterministic: the stream numbers the 4 good examples; batches from any resume step
        # equal an uninterrupted run's, and each epoch has its own order.
        assert train.num_examples == 4 and sorted(train.exclude) == [
            "coco/2017 train example 1 (image id 2)", "coco/2017 train example 5 (image id 6)",
            "coco/2017 train example 6 (image id 6)"]

        def batches(start_step, count):
            ds = pipeline.deterministic_train_dataset(train, LabelEncoder(input_size=64), SQUARE_64, 2, seed=3,
                                                      start_step=start_step, scale_range=(0.8, 1.2))
            return [images.numpy() for (images, _), _ in zip(ds, range(count))]

        straight = batches(0, 8)
        for start_step in (1, 2, 5):
            assert all(np.array_equal(a, b) for a, b in zip(straight[start_step:], batches(start_step, 3)))
        # Each epoch (2 batches) holds every kept picture once, in its own order.
        ds = pipeline.deterministic_train_dataset(train, LabelEncoder(input_size=64), SQUARE_64, 4, seed=3)
        epochs = [[round(float(image[:32, :32].mean())) for image in images.numpy()]
                  for (images, _), _ in zip(ds, range(4))]
        assert all(sorted(epoch) == [30, 90, 120, 150] for epoch in epochs), epochs
        assert len({tuple(epoch) for epoch in epochs}) > 1, epochs
