"""`keras_retina write-records` (Apache Beam, the local runner): annotation files -> sharded TFRecords that
our TFRecord reader reads back as the same examples; a picture that does not decode is a dead letter;
a rerun skips the finished shards and writes the same bytes. The pipeline runs in the Beam
environment (tests/beam_env.py)."""

import json
import os
import shutil

import numpy as np

from keras_retina.data.data_config import DataConfig
from keras_retina.data.readers.tfrecord import tfrecord_source
from keras_retina.data.splits import open_sources

from beam_env import needs_beam, run_beam
from conftest import write_tiny_coco

pytestmark = needs_beam


def _flags(data):
    return [f"--train_annotations={data['train'][0]}", f"--train_images={data['train'][1]}",
            f"--val_annotations={data['val'][0]}", f"--val_images={data['val'][1]}"]


def _examples(source):
    return {int(e["image_id"]): e for e in source.examples().as_numpy_iterator()}


def test_annotations_become_records_read_back_as_the_same_examples(tmp_path):
    data = write_tiny_coco(tmp_path / "data")
    result = run_beam("write-records", *_flags(data), "--records_dir=records", "--shards=3", "--workers=1",
                       cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[train] 16 pictures -> records/train-*-of-00003.tfrecord, 3 shard(s)" in result.stdout
    assert "[train] 16 pictures (0 without boxes)" in result.stdout  # check-data's counts, as training reads them
    label_map = json.loads((tmp_path / "records" / "label_map.json").read_text())
    sources = open_sources(DataConfig(train_annotations=data["train"][0], train_images=data["train"][1],
                                      val_annotations=data["val"][0], val_images=data["val"][1]))
    assert label_map == sources.label_map and (tmp_path / "records" / "label_map.pbtxt").is_file()
    for split, source in (("train", sources.train), ("val", sources.val)):
        records = tfrecord_source(str(tmp_path / "records" / f"{split}-*.tfrecord"), label_map)
        ours, theirs = _examples(records), _examples(source)
        assert ours.keys() == theirs.keys() and len(ours) == (16 if split == "train" else 8)
        for image_id, example in theirs.items():
            np.testing.assert_array_equal(ours[image_id]["image"], example["image"])  # the file's own bytes
            np.testing.assert_allclose(ours[image_id]["boxes"], example["boxes"], atol=1e-3)
            np.testing.assert_array_equal(ours[image_id]["classes"], example["classes"])
            np.testing.assert_array_equal(ours[image_id]["is_crowd"], example["is_crowd"])
    assert (tmp_path / "records" / "failures.jsonl").read_text() == ""

    written = {name: (tmp_path / "records" / name).read_bytes() for name in os.listdir(tmp_path / "records")}
    os.remove(tmp_path / "records" / "train-00001-of-00003.tfrecord")
    again = run_beam("write-records", *_flags(data), "--records_dir=records", "--shards=3", "--workers=1",
                      cwd=tmp_path)
    assert again.returncode == 0 and "(2 finished before: skipped)" in again.stdout, again.stdout
    assert {name: (tmp_path / "records" / name).read_bytes() for name in os.listdir(tmp_path / "records")} == written
    other = run_beam("write-records", *_flags(data), "--records_dir=records", "--shards=2", "--workers=1",
                     cwd=tmp_path)  # other shards into the same folder would write every picture twice
    assert other.returncode == 2 and "--records_dir=records holds a batch run that asked other shards" in \
        other.stderr, other.stderr[-2000:]
    coco = json.loads(open(data["train"][0]).read())
    coco["annotations"][0]["bbox"][0] += 1  # a box edited since: the shards written would mix old and new
    with open(data["train"][0], "w") as f:
        json.dump(coco, f)
    edited = run_beam("write-records", *_flags(data), "--records_dir=records", "--shards=3", "--workers=1",
                      cwd=tmp_path)
    assert edited.returncode == 2 and "holds a batch run that asked other inputs_sha256" in edited.stderr, \
        edited.stderr[-2000:]


def test_records_written_to_an_object_store_are_the_local_files(tmp_path):
    """store:// is an object store as GCS and S3 are (tests/object_store.py): the run's objects hold the
    bytes a run into a local folder writes, and again after a rerun that writes a lost shard."""
    data = write_tiny_coco(tmp_path / "data")
    for where, store in (("--records_dir=records", None), ("--records_dir=store://bucket/records", tmp_path / "store")):
        result = run_beam("write-records", *_flags(data), where, "--shards=2", "--workers=1", cwd=tmp_path,
                          store=store)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "[train] 16 pictures -> " in result.stdout
    local, remote = tmp_path / "records", tmp_path / "store" / "bucket" / "records"
    names = sorted(os.listdir(local))
    assert names == sorted(path.name for path in remote.rglob("*") if path.is_file())  # no work or temporary file
    assert "train-00001-of-00002.tfrecord" in names and "records_run.json" in names
    for name in names:
        assert (remote / name).read_bytes() == (local / name).read_bytes(), name
    os.remove(remote / "train-00000-of-00002.tfrecord")  # a crash before that shard was written
    again = run_beam("write-records", *_flags(data), "--records_dir=store://bucket/records/", "--shards=2",
                     "--workers=1", cwd=tmp_path, store=tmp_path / "store")
    assert again.returncode == 0 and "(1 finished before: skipped)" in again.stdout, again.stdout
    assert "store://bucket/records/train-*" in again.stdout and "records//" not in again.stdout
    for name in names:
        assert (remote / name).read_bytes() == (local / name).read_bytes(), name


def test_a_picture_that_does_not_decode_is_a_dead_letter(tmp_path):
    data = write_tiny_coco(tmp_path / "data")
    broken = sorted(os.listdir(data["train"][1]))[0]
    path = os.path.join(data["train"][1], broken)
    whole = open(path, "rb").read()
    shutil.copy(path, tmp_path / "kept.jpg")
    with open(path, "wb") as f:  # its header reads; its pixels do not
        f.write(whole[:len(whole) // 3])
    result = run_beam("write-records", *_flags(data), "--records_dir=records", "--workers=1", cwd=tmp_path)
    assert result.returncode == 1 and broken in result.stderr, result.stderr[-3000:]
    (failure,) = [json.loads(line) for line in open(tmp_path / "records" / "failures.jsonl")]
    assert failure["input"] == path and failure["reason"]
    assert "[train] 15 pictures -> records/train-*-of-00001.tfrecord" in result.stdout
    label_map = json.loads((tmp_path / "records" / "label_map.json").read_text())
    assert len(_examples(tfrecord_source(str(tmp_path / "records" / "train-*.tfrecord"), label_map))) == 15
