import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from keras_retina.data.data_config import DataConfig
from keras_retina.data.splits import open_sources
from keras_retina.errors import UsageError
from keras_retina.model_dir import ModelDir
from keras_retina.modeling.model_config import ModelConfig
from keras_retina.training import model_settings, trainer
from keras_retina.training.train_config import TrainConfig

from conftest import REPO, TINY


def _tensorboard_tags(log_dir):
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    tags = set()
    for path in tf.io.gfile.glob(str(log_dir / "*")):
        for raw in tf.data.TFRecordDataset(path):
            tags.update(value.tag for value in event_pb2.Event.FromString(raw.numpy()).summary.value)
    return tags


def _config(**overrides):
    values = dict(batch_size=4, reference_batch_size=4, optimizer="adamw", learning_rate=1e-3, train_steps=6,
                  lr_boundaries=[4], warmup_steps=2, checkpoint_every_steps=3, eval_every_steps=3,
                  strategy="one_device", verbose=0)
    values.update(overrides)
    return TrainConfig(**values)


def test_train_evaluate_resume_mirrored(tmp_path, tiny_coco, capsys):
    """In-process on two logical CPUs (MirroredStrategy, two replicas)."""
    data = DataConfig(train_annotations=tiny_coco["train"][0], train_images=tiny_coco["train"][1],
                      val_annotations=tiny_coco["val"][0], val_images=tiny_coco["val"][1])
    sources = open_sources(data)
    model_dir = tmp_path / "run"
    summary = trainer.train(model_dir, ModelConfig(**TINY), _config(strategy="mirrored"), sources, data)
    assert summary["steps"] == 6 and summary["checkpoint"].endswith("ckpt-6")
    assert set(summary["metrics"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
                                       "AR100", "ARs", "ARm", "ARl"}
    for name in ("config.json", "label_map.json", "model.keras", "summary.json",
                 "eval/metrics-3.json", "eval/metrics-6.json"):
        assert os.path.isfile(model_dir / name), name
    assert json.loads((model_dir / "label_map.json").read_text())[0]["id"] == 1
    assert "2 replica(s)" in capsys.readouterr().out
    assert {"learning_rate", "train/loss", "eval/AP", "eval/detections"} <= _tensorboard_tags(model_dir / "logs")
    # model.keras loads in a fresh process that only imported keras_retina (schedule included).
    load = ("import keras, keras_retina, sys; m = keras.saving.load_model(sys.argv[1]); "
            "print(type(m).__name__, type(m.optimizer.learning_rate).__name__, m.config.num_classes)")
    loaded = subprocess.run([sys.executable, "-c", load, str(model_dir / "model.keras")], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": REPO})
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split()[0] == "RetinaNet" and loaded.stdout.split()[-1] == "3"

    # config.json records the resolved settings and the data, for evaluate.
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["model"]["freeze_backbone_at"] == 0 and saved["model"]["num_classes"] == 3
    assert saved["data"]["val_annotations"] == tiny_coco["val"][0] and saved["train"]["train_steps"] == 6
    # The same run asked for more steps continues where it stopped, with the right rate.
    summary = trainer.train(model_dir, ModelConfig(**TINY), _config(train_steps=9, strategy="mirrored"), sources, data)
    out = capsys.readouterr().out
    # Step 6 is past the boundary at step 4: the restored schedule gives 1e-3 / 10.
    assert "Resuming from" in out and "at step 6 (learning rate 0.0001)" in out
    assert summary["steps"] == 9
    run = ModelDir(model_dir)
    model, _, _, checkpoint = run.load_model(which="latest")
    assert checkpoint.endswith("ckpt-9") and model.config.num_classes == 3
    assert run.load_model()[3] == run.best_checkpoint() == summary["best"]["checkpoint"]  # the default: the best

    with pytest.raises(UsageError, match="different settings \\(head_filters: 16 there, 8 asked\\)"):
        trainer.train(model_dir, ModelConfig(**{**TINY, "head_filters": 8}), _config(), sources, data)


def test_freeze_backbone_at_default_and_resume():
    resnet = dict(backbone="resnet50", image_size=64, backbone_weights="imagenet")

    def resolve(model, previous=None):
        return model_settings.resolve_model_settings(ModelConfig(**model), previous, "runs/x").freeze_backbone_at

    assert resolve(resnet) == 2 and resolve({**resnet, "backbone_weights": None}) == 0
    assert resolve(TINY) == 0 and resolve({**resnet, "freeze_backbone_at": 3}) == 3
    saved = ModelConfig(**{**resnet, "freeze_backbone_at": 2}).to_json()
    # A resumed run keeps its value even without --backbone_weights (it only initialises a run).
    assert resolve({**resnet, "backbone_weights": None}, saved) == 2
    with pytest.raises(UsageError, match="different settings \\(freeze_backbone_at: "):
        resolve({**resnet, "freeze_backbone_at": 0}, saved)


def test_postprocessing_settings_are_the_runs_and_may_change_when_it_resumes():
    from keras_retina.modeling.detection_decoder import PostprocessSettings

    def resolve(previous=None, model=TINY, **given):
        config = model_settings.resolve_model_settings(ModelConfig(**model), previous, "runs/x",
                                                       PostprocessSettings(**given))
        return config.box_voting_sigma, config.score_threshold

    assert resolve() == (0.0, 0.05)  # the paper's decoder
    assert resolve(box_voting_sigma=0.025) == (0.025, 0.05)  # kept in the new run's config
    saved = ModelConfig(**{**TINY, "box_voting_sigma": 0.025}).resolved().to_json()
    assert resolve(saved) == (0.025, 0.05)  # a resume without the flag keeps the run's voting
    assert resolve(saved, box_voting_sigma=0.0, score_threshold=0.1) == (0.0, 0.1)  # given: changed, not refused
    assert resolve(saved, model={**TINY, "score_threshold": 0.2}) == (0.025, 0.2)  # set in Python's ModelConfig


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_coco):
    sources = open_sources(DataConfig(train_annotations=tiny_coco["train"][0], train_images=tiny_coco["train"][1]))
    config = _config(optimizer="sgd", learning_rate=1e12, warmup_steps=0, lr_boundaries=[], train_steps=12,
                     checkpoint_every_steps=1)
    with pytest.raises(FloatingPointError, match="Training stopped at step \\d+: the loss became NaN"):
        trainer.train(tmp_path / "nan", ModelConfig(**TINY), config, sources)
    saved = [name for name in os.listdir(tmp_path / "nan" / "checkpoints") if name.endswith(".index")]
    assert not (tmp_path / "nan" / "summary.json").exists()
    assert saved, "the good steps before the NaN must have been checkpointed"
    for name in saved:  # every checkpoint kept is from before the loss went bad
        import tensorflow as tf

        reader = tf.train.load_checkpoint(str(tmp_path / "nan" / "checkpoints" / name[:-6]))
        values = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                  if "model" in k and reader.get_variable_to_dtype_map()[k].is_floating]
        assert all(np.all(np.isfinite(v)) for v in values)


def test_resume_on_other_data_is_refused_unless_asked(tmp_path, tiny_coco):
    """A one-class "car" dataset run into a "person" model_dir must not pass silently."""
    data = DataConfig(train_annotations=tiny_coco["train"][0], train_images=tiny_coco["train"][1])
    sources = open_sources(data)
    run = ModelDir(tmp_path / "run")
    renamed = [{**entry, "name": f"other {entry['name']}"} for entry in sources.label_map]
    run.write_config({"model": ModelConfig(**TINY, num_classes=3).resolved().to_json(),
                      "train": _config().to_json(), "data": dataclasses.asdict(data)})
    run.write_label_map(renamed)
    trainer.train(run.path, ModelConfig(**TINY), _config(train_steps=1, lr_boundaries=[]), open_sources(data), data,
                   allow_other_data=True)  # no checkpoint yet: a first run may still change its data
    run.write_label_map(renamed)
    with pytest.raises(UsageError, match="was trained on other categories .*--resume_with_other_data"):
        trainer.train(run.path, ModelConfig(**TINY), _config(), sources, data)
    run.write_label_map(sources.label_map)
    same = dataclasses.replace(data, train_images=tiny_coco["train"][1] + "/./")  # the same folder
    trainer.check_same_data(run, sources.label_map, same)
    moved = dataclasses.replace(data, train_images=tiny_coco["val"][1])
    with pytest.raises(UsageError, match=r"was trained on other data \(train_images differ"):
        trainer.train(run.path, ModelConfig(**TINY), _config(), sources, moved)
    with pytest.raises(UsageError, match="is in use by"):  # a second writer
        from keras_retina.files import exclusive

        with exclusive(run.path, "another train"):
            trainer.train(run.path, ModelConfig(**TINY), _config(), sources, data)


LOAD_KERAS = """
import sys
import keras, keras_retina
model = keras.saving.load_model(sys.argv[1])
print(type(model).__name__, type(model.optimizer).__name__, type(model.optimizer._learning_rate).__name__)
"""


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_model_keras_loads_in_a_new_process_for_each_optimizer(tmp_path, optimizer):
    from keras_retina import RetinaNet
    from keras_retina.training.optimizer import make_optimizer

    model = RetinaNet(num_classes=2, **TINY)
    model.compile(optimizer=make_optimizer(_config(optimizer=optimizer)))
    model.save(tmp_path / "model.keras")
    result = subprocess.run([sys.executable, "-c", LOAD_KERAS, str(tmp_path / "model.keras")], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["RetinaNet", {"sgd": "SGD", "adamw": "AdamW"}[optimizer],
                                     "WarmupPiecewiseSchedule"]


def test_the_best_checkpoint_is_kept_and_training_stops_when_it_stops_improving(tmp_path, tiny_coco):
    """With a learning rate of ~0 every evaluation scores the same: the first is the best, and with
    --early_stopping_evals=2 the run stops two evaluations later. The best checkpoint is what
    model.keras, evaluate, export and predict use; the latest is what a resumed run continues
    from, and a resumed run counts the evaluations since the best from the model_dir's files."""
    data = DataConfig(train_annotations=tiny_coco["train"][0], train_images=tiny_coco["train"][1],
                      val_annotations=tiny_coco["val"][0], val_images=tiny_coco["val"][1])
    sources = open_sources(data)
    model_dir = tmp_path / "run"
    config = _config(learning_rate=1e-12, train_steps=20, lr_boundaries=[], checkpoint_every_steps=2,
                     eval_every_steps=2, early_stopping_evals=2)
    summary = trainer.train(model_dir, ModelConfig(**TINY), config, sources, data)
    assert summary["stopped_early_at"] == 6 and summary["steps"] == 6
    assert summary["best"]["step"] == 2 and summary["best"]["metric"] == "AP"
    run = ModelDir(model_dir)
    assert run.best_checkpoint().endswith("ckpt-2") and run.latest_checkpoint().endswith("ckpt-6")
    assert run.load_model()[3] == run.best_checkpoint() and run.load_model(which="latest")[3].endswith("ckpt-6")
    assert sorted(os.listdir(model_dir / "best")) == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
                                                      "metrics-2.json"]
    # the report shows the model kept (step 2, evaluated again), beside the final evaluation's metrics
    assert summary["report"] == str(model_dir / "eval" / "metrics-6_report" / "index.html")
    report = json.loads((model_dir / "eval" / "metrics-6_report" / "report.json").read_text())
    assert report["about"]["checkpoint"] == "the best checkpoint, step 2" and report["num_images"] == 8
    assert "Report:" in trainer.format_summary(summary)
    accumulator = event_accumulator.EventAccumulator(str(model_dir / "logs"), size_guidance={"tensors": 0})
    accumulator.Reload()  # TensorBoard: PR curves and the confusion matrix at every evaluation
    tags = accumulator.Tags()["tensors"]
    assert "eval/pr_curve/all_classes/pr_curves" in tags and "eval/confusion_matrix" in tags
    assert [event.step for event in accumulator.Tensors("eval/confusion_matrix")] == [2, 4, 6]
    resumed = trainer.train(model_dir, ModelConfig(**TINY), dataclasses.replace(config, train_steps=40), sources,
                            data)
    assert resumed["stopped_early_at"] == 8  # evaluations 4 and 6 count: the one at 8 is the third without
    with pytest.raises(UsageError, match="give eval_every_steps too"):
        _config(early_stopping_evals=2, eval_every_steps=0)


def test_a_best_record_without_its_checkpoint_is_never_taken(tmp_path):
    """The metrics file of a new best is written before its checkpoint; a kill between the two
    leaves the index naming the previous best, whose record is the one read."""
    run = ModelDir(tmp_path / "run")
    assert run.best_record() is None
    run.write_best_record({"step": 4, "metric": "AP", "value": 0.5, "metrics": {}})
    assert run.best_record() is None  # no checkpoint names step 4
