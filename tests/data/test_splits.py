"""Data flags -> sources (`data.sources`), and the source interface (`data.source`)."""

import json

import pytest
import tensorflow as tf

from keras_retina.data.data_config import DataConfig
from keras_retina.data.source import DatasetSource, as_source
from keras_retina.data.splits import open_sources
from keras_retina.errors import DataError, UsageError


def test_coco_json_train_and_val(tiny_coco):
    sources = open_sources(DataConfig(train_annotations=tiny_coco["train"][0], train_images=tiny_coco["train"][1],
                                      val_annotations=tiny_coco["val"][0], val_images=tiny_coco["val"][1]))
    assert sources.train.num_examples == 16 and sources.val.num_examples == 8
    assert [e["id"] for e in sources.label_map] == [1, 3, 5]
    assert set(sources.reports()) == {"train", "val"}


def test_exactly_one_training_source(tiny_coco, tmp_path):
    with pytest.raises(UsageError, match="exactly one training source.*got none"):
        open_sources(DataConfig())
    both = DataConfig(train_annotations=tiny_coco["train"][0], train_images=tiny_coco["train"][1],
                      train_tfrecord="x-*.tfrecord")
    with pytest.raises(UsageError, match=r"--train_annotations=.* and --train_tfrecord=x-\*.tfrecord name different"):
        open_sources(both)
    with pytest.raises(UsageError, match="--train_annotations=.* needs --train_images"):
        open_sources(DataConfig(train_annotations=tiny_coco["train"][0]))
    with pytest.raises(UsageError, match="No data"):
        open_sources(DataConfig(), need_train=False)


def test_validation_categories_must_match(tiny_coco, tmp_path):
    coco = json.loads(open(tiny_coco["val"][0]).read())
    coco["categories"] = coco["categories"][:2]
    coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] in (1, 3)]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(coco))
    with pytest.raises(DataError, match="other.json has other categories"):
        open_sources(DataConfig(train_annotations=tiny_coco["train"][0], train_images=tiny_coco["train"][1],
                                val_annotations=str(other), val_images=tiny_coco["val"][1]))


def test_a_users_dataset_is_a_source_without_a_deterministic_order():
    examples = tf.data.Dataset.range(5).map(lambda i: {"image_id": i})
    source = as_source(examples)
    assert isinstance(source, DatasetSource) and source.num_examples is None
    assert [int(e["image_id"]) for e in source.examples()] == [0, 1, 2, 3, 4]
    assert sorted(int(e["image_id"]) for e in source.examples(shuffle=True, seed=1)) == [0, 1, 2, 3, 4]
    with pytest.raises(UsageError, match="--deterministic needs a source whose examples can be numbered"):
        source.ordered_examples(0, 0)
    assert as_source(source) is source


def test_two_kinds_of_source_are_refused_naming_both(tiny_coco, tmp_path):
    """The demo flagfile's --demo_data and a user's --train_annotations: never one of them silently."""
    mixed = DataConfig(demo_data=str(tmp_path / "demo"), train_annotations=tiny_coco["train"][0],
                       train_images=tiny_coco["train"][1])
    with pytest.raises(UsageError, match=r"--demo_data=.*demo and --train_annotations=.*train.json name different "
                                         r"data sources.*--demo_data="):
        open_sources(mixed)
    assert not (tmp_path / "demo").exists()
    with pytest.raises(UsageError, match="--tfds_name=coco/2017 and --val_tfrecord=v.tfrecord"):
        open_sources(DataConfig(tfds_name="coco/2017", val_tfrecord="v.tfrecord"))
