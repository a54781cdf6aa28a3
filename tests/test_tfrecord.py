import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import assert_close
from conftest import tf_feature as _feature
from keras_retina.data import tfrecord


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
    first, second = list(tfrecord.tfrecord_examples(str(path), label_map, use_official))
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
    assert tfrecord.read_label_map(str(pbtxt)) == [{"id": 1, "name": "dog"}, {"id": 3, "name": "cat"},
                                                   {"id": 7, "name": "person"}]
    with pytest.raises(FileNotFoundError, match="no TFRecord files match"):
        tfrecord.tfrecord_examples(str(tmp_path / "none-*.tfrecord"), [])
