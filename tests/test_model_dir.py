"""The run folder (`ModelDir`): its files and the one restore path."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_retina import RetinaNet
from keras_retina.errors import DataError, UsageError
from keras_retina.files import exclusive, write_json
from keras_retina.model_dir import ModelDir

from conftest import REPO, TINY


def _saved_run(path, **settings):
    model = RetinaNet(num_classes=2, **{**TINY, **settings})
    run = ModelDir(path)
    run.write_config({"model": model.config.to_json(), "train": {}, "data": {}})
    run.write_label_map([{"id": 3, "name": "a"}, {"id": 5, "name": "b"}])
    run.checkpoint_manager(tf.train.Checkpoint(model=model)).save(checkpoint_number=4)
    return model, run


def test_files_and_the_model_loaded_back(tmp_path):
    model, run = _saved_run(tmp_path / "run")
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoints", "config.json", "label_map.json"]  # no .tmp left
    assert run.metrics_path(4) == str(tmp_path / "run" / "eval" / "metrics-4.json")
    loaded, label_map, config, checkpoint = run.load_model()
    assert checkpoint.endswith("ckpt-4") and label_map[1]["name"] == "b" and loaded.config == model.config
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_checkpoint_without_every_weight_is_refused_by_name(tmp_path):
    _, run = _saved_run(tmp_path / "run", head_convs=1)
    config = run.read_config()
    config["model"]["head_convs"] = 2  # config.json edited: the checkpoint lacks the second conv
    run.write_config(config)
    with pytest.raises(DataError, match=r"ckpt-4 does not hold every weight of the model in .*config.json"):
        run.load_model()


def test_not_a_model_dir(tmp_path):
    with pytest.raises(DataError, match="no config.json"):
        ModelDir(tmp_path).load_model()
    with pytest.raises(UsageError, match="--model_dir is required"):
        ModelDir(None)
    # The layout of model dirs before config.json had its three sections: refused by name.
    ModelDir(tmp_path).write_config({"model": {"num_classes": 2}, "train": {"data": {}}})
    with pytest.raises(DataError, match="config.json was not written by this version of keras_retina"):
        ModelDir(tmp_path).load_model()
    with pytest.raises(DataError, match="no checkpoint"):
        ModelDir(tmp_path).restore(tf.train.Checkpoint())


def test_json_is_standard_and_written_atomically(tmp_path):
    write_json({"AP": float("nan"), "per_class_AP": {"a": float("inf"), "b": 0.5}}, str(tmp_path / "m.json"))
    assert json.loads((tmp_path / "m.json").read_text()) == {"AP": None, "per_class_AP": {"a": None, "b": 0.5}}
    assert os.listdir(tmp_path) == ["m.json"]  # no temporary file left


HOLD = """
import sys, time
from keras_retina.files import exclusive
with exclusive(sys.argv[1], "a test holder"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_folder_has_one_writer(tmp_path):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match=r"run is in use by a test holder \(pid \d+ on "):
            with exclusive(str(tmp_path / "run"), "this test"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with exclusive(str(tmp_path / "run"), "this test"):  # released when its holder died (SIGKILL)
        assert "this test" in (tmp_path / "run" / ".lock").read_text()


def test_partial_checkpoints_of_a_dead_save_are_removed(tmp_path):
    _, run = _saved_run(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "ckpt-9_temp").mkdir()
    (tmp_path / "run" / "checkpoints" / "ckpt-9_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
    run.remove_partial_checkpoints()
    assert not (tmp_path / "run" / "checkpoints" / "ckpt-9_temp").exists()
    assert run.latest_checkpoint().endswith("ckpt-4")
