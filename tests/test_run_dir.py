"""The run folder (`RunDir`): its files and the one restore path."""

import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY
from keras_retina import RetinaNet
from keras_retina.errors import DataError, UsageError
from keras_retina.run_dir import RunDir


def _saved_run(path, **settings):
    model = RetinaNet(num_classes=2, **{**TINY, **settings})
    run = RunDir(path)
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
        RunDir(tmp_path).load_model()
    with pytest.raises(UsageError, match="--model_dir is required"):
        RunDir(None)
    # The layout of model dirs before config.json had its three sections: refused by name.
    RunDir(tmp_path).write_config({"model": {"num_classes": 2}, "train": {"data": {}}})
    with pytest.raises(DataError, match="config.json was not written by this version of keras_retina"):
        RunDir(tmp_path).load_model()
    with pytest.raises(DataError, match="no checkpoint"):
        RunDir(tmp_path).restore(tf.train.Checkpoint())
