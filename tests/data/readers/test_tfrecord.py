import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_retina.data import cleaning
from keras_retina.data.data_config import DataConfig
from keras_retina.data.label_map import read_label_map
from keras_retina.data.readers import tfrecord
from keras_retina.data.splits import open_sources
from keras_retina.errors import DataError

from conftest import assert_close
from conftest import tf_feature as _feature
from dirty_data import DIRTY_RECORDS_COUNTS, dirty_records, jpeg, write_tfrecord


def _write_records(path):
    """Two tf.Examples in the TF Object Detection API layout, written as a test would get them."""
    rng = np.random.default_rng(0)
    records = []
    for source_id, (h, w), boxes, labels, crowd in (
            ("42", (40, 80), [[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0]], [3, 1], [0, 1]),
            ("photo_a.jpg", (30, 30), [], [], [])):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buffer, "JPEG")
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        feature = {
            "image/encoded": _feature([buffer.getvalue()], "bytes"),
            "image/source_id": _feature([source_id.encode()], "bytes"),
            "image/height": _feature([h], "int"), "image/width": _feature([w], "int"),
            "image/object/bbox/ymin": _feature(boxes[:, 0], "float"),
            "image/object/bbox/xmin": _feature(boxes[:, 1], "float"),
            "image/object/bbox/ymax": _feature(boxes[:, 2], "float"),
            "image/object/bbox/xmax": _feature(boxes[:, 3], "float"),
            "image/object/class/label": _feature(labels, "int"),
            "image/object/is_crowd": _feature(crowd, "int"),
        }
        records.append(tf.train.Example(features=tf.train.Features(feature=feature)))
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record.SerializeToString())


@pytest.mark.parametrize("use_official", [True, False])
def test_reads_model_garden_layout(tmp_path, use_official):
    if use_official:
        pytest.importorskip("official.vision.dataloaders.tf_example_decoder")
    path = tmp_path / "train.tfrecord"
    _write_records(path)
    label_map = tfrecord.scan_label_map(str(path))
    assert label_map == [{"id": 1, "name": "1"}, {"id": 3, "name": "3"}]
    first, second = list(tfrecord.tfrecord_source(str(path), label_map, use_official).examples())
    assert int(first["image_id"]) == 42 and first["image"].shape == (40, 80, 3)
    assert_close(first["boxes"], [[4, 16, 20, 48], [0, 0, 40, 80]], atol=1e-4)
    assert first["classes"].numpy().tolist() == [1, 0]
    assert first["is_crowd"].numpy().tolist() == [False, True]
    assert_close(first["area"], [16 * 32, 40 * 80], atol=1e-2)
    assert int(second["image_id"]) > 0 and second["boxes"].shape == (0, 4)  # hashed source id


def test_label_map_files(tmp_path):
    pbtxt = tmp_path / "labels.pbtxt"
    # As in the TF OD API's mscoco_label_map.pbtxt: `name` is an id string, `display_name` the name.
    pbtxt.write_text('item {\n  id: 3\n  name: "cat"\n}\nitem { id: 1 display_name: "dog" }\n'
                     'item {\n  name: "/m/01g317"\n  id: 7\n  display_name: "person"\n}\n')
    assert read_label_map(str(pbtxt)) == [{"id": 1, "name": "dog"}, {"id": 3, "name": "cat"},
                                          {"id": 7, "name": "person"}]
    with pytest.raises(DataError, match="no TFRecord files match"):
        tfrecord.tfrecord_source(str(tmp_path / "none-*.tfrecord"), [])
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DataError, match="broken.json: not valid JSON"):
        read_label_map(str(tmp_path / "broken.json"))


def test_dirty_records_are_named_counted_and_left_out(tmp_path):
    path = str(tmp_path / "dirty.tfrecord")
    write_tfrecord(path, dirty_records())
    label_map = [{"id": 1, "name": "a"}]
    source = tfrecord.tfrecord_source(path, label_map)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        list(source.examples())
    with pytest.raises(DataError, match=r"dirty.tfrecord record 0 \(source_id 1\): box \[nan") as error:
        source.checked()
    assert "--skip_bad_examples" in str(error.value)
    checked = source.checked(skip_bad_examples=True)
    assert checked is not source and source.num_examples is None  # the pass returns a new source
    assert dict(checked.report.counts) == DIRTY_RECORDS_COUNTS and checked.num_examples == 4
    assert cleaning.count_examples(checked.examples()) == 4  # undecodable and shared ids left out
    assert checked.exclude == tuple(f"{path} record {n} (source_id 6)" for n in (5, 6)) + (
        f"{path} record 1 (source_id 2)",)
    assert source.find_undecodable() == [f"{path} record 1 (source_id 2)"]


def test_records_without_source_ids_and_unparseable_records(tmp_path):
    """No source_id: ids from the image bytes (as the Model Garden), never all one duplicate id.
    A record that is not a tf.Example: an error naming the file, not a TensorFlow traceback."""
    pictures = [jpeg(np.full((16, 16, 3), 40 * n, np.uint8)) for n in range(1, 4)]
    write_tfrecord(str(tmp_path / "anonymous.tfrecord"), [("", p, [(0.1, 0.1, 0.5, 0.5)], [1]) for p in pictures])
    train = open_sources(DataConfig(train_tfrecord=str(tmp_path / "anonymous.tfrecord"))).train
    assert dict(train.report.counts) == {} and train.num_examples == 3
    ids = [int(e["image_id"]) for e in train.examples()]
    assert len(set(ids)) == 3
    # The same picture twice without ids is one image id twice: named as such.
    write_tfrecord(str(tmp_path / "twice.tfrecord"), [("", pictures[0], [(0.1, 0.1, 0.5, 0.5)], [1])] * 2)
    with pytest.raises(DataError, match=r"duplicate image id: .*twice.tfrecord record 1 \(no source_id\)"):
        open_sources(DataConfig(train_tfrecord=str(tmp_path / "twice.tfrecord")))

    with tf.io.TFRecordWriter(str(tmp_path / "garbage.tfrecord")) as writer:
        writer.write(b"not a tf.Example")
    (tmp_path / "labels.json").write_text(json.dumps([{"id": 1, "name": "a"}]))
    for label_map in (None, str(tmp_path / "labels.json")):  # the label-map scan, the data check
        with pytest.raises(DataError, match=r"garbage.tfrecord: a record cannot be read"):
            open_sources(DataConfig(train_tfrecord=str(tmp_path / "garbage.tfrecord"), label_map=label_map))


def test_records_without_a_usable_image_are_an_error(tmp_path):
    write_tfrecord(str(tmp_path / "junk.tfrecord"), [(1, b"junk", [(0.1, 0.1, 0.5, 0.5)], [1])])
    data = DataConfig(train_tfrecord=str(tmp_path / "junk.tfrecord"), skip_bad_examples=True)
    with pytest.raises(DataError, match=r"junk.tfrecord: no usable images.\n(.|\n)*skipped\s+1 x cannot"):
        open_sources(data)


def test_pbtxt_is_parsed_as_protobuf_text(tmp_path):
    """Quotes inside names, comments, other fields: as protobuf reads them; duplicate ids refused."""
    pbtxt = tmp_path / "labels.pbtxt"
    pbtxt.write_text('# item { id: 99 name: "commented out" }\n'
                     'item {\n  id: 2  # id: 5 in a comment\n  display_name: "driver\'s license"\n'
                     '  frequency: FREQUENT\n}\nitem { name: "x" id: 1 keypoints { id: 0 label: "nose" } }\n')
    assert read_label_map(str(pbtxt)) == [{"id": 1, "name": "x"}, {"id": 2, "name": "driver's license"}]
    pbtxt.write_text('item { id: 1 name: "a" }\nitem { id: 1 name: "b" }\n')
    with pytest.raises(DataError, match=r"label map ids \[1\] appear more than once"):
        read_label_map(str(pbtxt))
    pbtxt.write_text('item { name: "no id" }\n')
    with pytest.raises(DataError, match="an item has no id"):
        read_label_map(str(pbtxt))
    pbtxt.write_text('item { id: "one" }\n')
    with pytest.raises(DataError, match="labels.pbtxt: not a TF OD API label map"):
        read_label_map(str(pbtxt))


def test_object_lists_of_different_lengths_are_a_named_error(tmp_path):
    path = str(tmp_path / "uneven.tfrecord")
    write_tfrecord(path, [(1, jpeg(np.zeros((16, 16, 3), np.uint8)), [(0.1, 0.1, 0.5, 0.5)], [1, 1])])
    with pytest.raises(DataError, match=r"uneven.tfrecord: a record cannot be read .*differ in length"):
        tfrecord.tfrecord_source(path, [{"id": 1, "name": "a"}]).checked()


def test_records_with_too_many_pixels_are_never_decoded(tmp_path, monkeypatch):
    """The pixel budget is read from each record's image header, as for COCO JSON files."""
    from keras_retina.ops import images

    path = str(tmp_path / "big.tfrecord")
    write_tfrecord(path, [(1, jpeg(np.zeros((40, 60, 3), np.uint8)), [(0.1, 0.1, 0.5, 0.5)], [1]),
                          (2, jpeg(np.zeros((16, 16, 3), np.uint8)), [(0.1, 0.1, 0.5, 0.5)], [1])])
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    source = tfrecord.tfrecord_source(path, [{"id": 1, "name": "a"}])
    with pytest.raises(DataError, match=r"ERROR +1 x more than .* pixels: .*record 0 \(source_id 1\): 2,400 pixels"):
        source.checked()
    checked = source.checked(skip_bad_examples=True)
    assert checked.report.counts["too_large"] == 1 and [int(e["image_id"]) for e in checked.examples()] == [2]


def test_a_jpeg_with_a_broken_header_is_a_counted_skip_not_a_failed_pass(tmp_path):
    path = str(tmp_path / "cut.tfrecord")
    whole = jpeg(np.zeros((16, 16, 3), np.uint8))
    write_tfrecord(path, [(1, whole[:30], [(0.1, 0.1, 0.5, 0.5)], [1]), (2, whole, [(0.1, 0.1, 0.5, 0.5)], [1])])
    checked = tfrecord.tfrecord_source(path, [{"id": 1, "name": "a"}]).checked(skip_bad_examples=True)
    assert checked.report.counts["unreadable_image"] == 1 and checked.num_examples == 1
