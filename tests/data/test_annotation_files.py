"""One dataset in every format: COCO JSON, Pascal VOC, YOLO and CSV read as the same examples."""

import json

import keras
import numpy as np
import pytest

from keras_retina import RetinaNet
from keras_retina.data import pipeline, synthetic
from keras_retina.data.coco_writer import write_coco_json
from keras_retina.data.data_config import DataConfig
from keras_retina.data.label_map import read_class_names
from keras_retina.data.readers.annotation_files import detect_format, read_annotations
from keras_retina.data.splits import held_out, open_sources
from keras_retina.errors import DataError, UsageError

from conftest import TINY


@pytest.fixture(scope="module")
def formats(tmp_path_factory):
    """The same synthetic pictures and boxes as COCO JSON, Pascal VOC, YOLO and CSV."""
    root = tmp_path_factory.mktemp("formats")
    coco = synthetic.write_coco_dataset(str(root / "coco"), num_train=12, num_val=4, num_classes=3,
                                        sizes=((64, 96), (96, 64), (64, 64)), max_objects=3)
    other = synthetic.write_other_formats(coco, str(root / "other"))
    classes = read_class_names(str(root / "other" / "classes.csv"))
    return {"coco": coco["train"], "voc": other["voc"]["train"], "yolo": other["yolo"]["train"],
            "csv": other["csv"]["train"]}, classes


def _read(formats, kind):
    paths, classes = formats
    annotations, images = paths[kind]
    return read_annotations(annotations, images, classes=classes if kind in ("voc", "csv") else None)


def _examples(source):
    names = [e["name"] for e in source.label_map]
    return [(e["image"].numpy(), e["boxes"].numpy(), [names[c] for c in e["classes"].numpy()])
            for e in source.examples()]


def test_every_format_gives_the_same_examples(formats):
    paths, _ = formats
    assert {kind: detect_format(path) for kind, (path, _) in paths.items()} == {
        "coco": "coco", "voc": "voc", "yolo": "yolo", "csv": "csv"}
    reference = _examples(_read(formats, "coco"))
    assert len(reference) == 12 and sum(len(b) for _, b, _ in reference) > 12
    for kind in ("voc", "yolo", "csv"):
        examples = _examples(_read(formats, kind))
        assert len(examples) == len(reference), kind
        for (image, boxes, names), (their_image, their_boxes, their_names) in zip(examples, reference):
            np.testing.assert_array_equal(image, their_image, err_msg=kind)
            np.testing.assert_allclose(boxes, their_boxes, atol=2e-3, err_msg=kind)
            assert names == their_names, kind


def test_the_first_training_step_has_the_same_loss_from_every_format(formats):
    losses = {}
    for kind in ("coco", "voc", "yolo", "csv"):
        source = _read(formats, kind)
        keras.utils.set_random_seed(7)
        model = RetinaNet(num_classes=len(source.label_map), **{**TINY, "image_size": 64})
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        batches = pipeline.train_dataset(source, model.label_encoder, model.resize_policy, 4, flip=False,
                                         shuffle=False, seed=0, repeat=False)
        images, targets = next(iter(batches))
        losses[kind] = float(model.train_on_batch(images, targets, return_dict=True)["loss"])
    assert all(abs(loss - losses["coco"]) < 1e-4 for loss in losses.values()), losses


def test_any_format_written_as_coco_json_reads_back_the_same(formats, tmp_path):
    source = _read(formats, "voc")
    folder = write_coco_json(source, str(tmp_path / "voc.json"))
    again = read_annotations(str(tmp_path / "voc.json"), folder)
    assert again.label_map == source.label_map
    for (image, boxes, names), (their_image, their_boxes, their_names) in zip(_examples(again), _examples(source)):
        np.testing.assert_array_equal(image, their_image)
        np.testing.assert_allclose(boxes, their_boxes, atol=1e-3)
        assert names == their_names
    written = json.loads((tmp_path / "voc.json").read_text())
    assert {"images", "annotations", "categories"} <= set(written) and written["annotations"][0]["iscrowd"] == 0


def test_a_validation_split_by_file_name_hash(formats):
    paths, classes = formats
    config = DataConfig(train_annotations=paths["voc"][0], classes=None, val_fraction=0.3)
    sources = open_sources(config)
    val_files = sorted(image["file"] for image in sources.val.images)
    assert val_files and sources.train.num_examples + sources.val.num_examples == 12
    assert all(held_out(f, 0.3) for f in val_files)
    assert not any(held_out(image["file"], 0.3) for image in sources.train.images)
    again = open_sources(config)
    assert sorted(image["file"] for image in again.val.images) == val_files  # the same split on every run
    # a picture's side of the split depends only on its own name: adding pictures moves none
    assert held_out("000003.jpg", 0.3) == held_out("/elsewhere/000003.jpg", 0.3)
    with pytest.raises(UsageError, match="validation data is given too"):
        open_sources(DataConfig(train_annotations=paths["voc"][0], val_annotations=paths["voc"][0],
                                val_fraction=0.3))


def test_a_path_that_is_no_format_is_one_error(tmp_path):
    (tmp_path / "notes.md").write_text("hello")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="notes.md: a .md file is none of the annotation formats"):
        detect_format(str(tmp_path / "notes.md"))
    with pytest.raises(DataError, match="a folder without .xml .* or .txt"):
        detect_format(str(tmp_path / "empty"))
