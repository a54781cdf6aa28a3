import json
import os

import numpy as np
import pytest

from keras_retina import commands, training

TINY_MODEL = dict(backbone="tiny", image_size=64, fpn_filters=16, head_filters=16, head_convs=1)


def test_warmup_piecewise_schedule():
    schedule = training.WarmupPiecewiseSchedule(0.02, [100, 200], 0.1, warmup_steps=10)
    expected = {0: 0.02 / 3, 5: 0.02 * (1 / 3 + 2 / 3 * 0.5), 10: 0.02, 99: 0.02, 100: 0.002,
                199: 0.002, 200: 0.0002}
    for step, rate in expected.items():
        assert float(schedule(step)) == pytest.approx(rate, rel=1e-6), step
    restored = training.WarmupPiecewiseSchedule.from_config(schedule.get_config())
    assert restored.get_config() == schedule.get_config()


def test_learning_rate_and_steps_scale_with_the_batch():
    config = training.TrainConfig(model_dir="x", model={}, batch_size=32, reference_batch_size=16,
                                  learning_rate=0.01, train_steps=90000,
                                  lr_boundaries=[60000, 80000], warmup_steps=500)
    assert config.scaled() == (0.02, 45000, [30000, 40000], 250)


def _tensorboard_tags(log_dir):
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    tags = set()
    for path in tf.io.gfile.glob(str(log_dir / "*")):
        for raw in tf.data.TFRecordDataset(path):
            tags.update(value.tag for value in event_pb2.Event.FromString(raw.numpy()).summary.value)
    return tags


def _config(model_dir, **overrides):
    values = dict(model_dir=str(model_dir), model=dict(TINY_MODEL), batch_size=4,
                  reference_batch_size=4, optimizer="adamw", learning_rate=1e-3, train_steps=6,
                  lr_boundaries=[4], warmup_steps=2, checkpoint_every_steps=3, eval_every_steps=3,
                  strategy="mirrored", verbose=0)
    values.update(overrides)
    return training.TrainConfig(**values)


def test_train_evaluate_resume_mirrored(tmp_path, tiny_coco, capsys):
    """In-process on two logical CPUs (MirroredStrategy, two replicas)."""
    data = {"train_annotations": tiny_coco["train"][0], "train_images": tiny_coco["train"][1],
            "val_annotations": tiny_coco["val"][0], "val_images": tiny_coco["val"][1]}
    train, val, label_map = commands.sources(data)
    model_dir = tmp_path / "run"
    summary = training.train(_config(model_dir), train, label_map, val)
    assert summary["steps"] == 6 and summary["checkpoint"].endswith("ckpt-6")
    assert set(summary["metrics"]) == set(("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10",
                                           "AR100", "ARs", "ARm", "ARl"))
    for name in ("config.json", "label_map.json", "model.keras", "summary.json",
                 "eval/metrics-3.json", "eval/metrics-6.json"):
        assert os.path.isfile(model_dir / name), name
    assert json.loads((model_dir / "label_map.json").read_text())[0]["id"] == 1
    assert "2 replica(s)" in capsys.readouterr().out
    assert {"learning_rate", "train/loss", "eval/AP", "eval/detections"} <= _tensorboard_tags(model_dir / "logs")

    # config.json records the resolved setting; a model_dir written before the setting existed
    # (no key) resumes as the unfrozen run it was.
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["model"]["freeze_backbone_at"] == 0
    del saved["model"]["freeze_backbone_at"]
    (model_dir / "config.json").write_text(json.dumps(saved))
    # The same run asked for more steps continues where it stopped, with the right rate.
    summary = training.train(_config(model_dir, train_steps=9), train, label_map, val)
    out = capsys.readouterr().out
    # Step 6 is past the boundary at step 4: the restored schedule gives 1e-3 / 10.
    assert "Resuming from" in out and "at step 6 (learning rate 0.0001)" in out
    assert summary["steps"] == 9
    model, _, _, checkpoint = commands.load_trained_model(str(model_dir))
    assert checkpoint.endswith("ckpt-9")

    with pytest.raises(ValueError, match="different settings \\(head_filters\\)"):
        training.train(_config(model_dir, model={**TINY_MODEL, "head_filters": 8}), train, label_map, val)


def test_freeze_backbone_at_default_and_resume():
    resnet = dict(backbone="resnet50", image_size=64, backbone_weights="imagenet")

    def resolve(model, previous=None):
        model = dict(model)
        training.resolve_model_settings(model, previous, "runs/x")
        return model["freeze_backbone_at"]

    assert resolve(resnet) == 2 and resolve({**resnet, "backbone_weights": None}) == 0
    assert resolve(TINY_MODEL) == 0 and resolve({**resnet, "freeze_backbone_at": 3}) == 3
    saved = {**resnet, "freeze_backbone_at": 2}
    # A resumed run keeps its value even without --backbone_weights (it only initialises a run).
    assert resolve({**resnet, "backbone_weights": None}, saved) == 2
    # A model_dir from before the setting existed trained everything: it resumes that way.
    old = {k: v for k, v in saved.items() if k != "freeze_backbone_at"}
    assert resolve(resnet, old) == 0
    with pytest.raises(ValueError, match="different settings \\(freeze_backbone_at\\)"):
        resolve({**resnet, "freeze_backbone_at": 2}, old)
    with pytest.raises(ValueError, match="different settings \\(freeze_backbone_at\\)"):
        resolve({**resnet, "freeze_backbone_at": 0}, saved)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_coco):
    data = {"train_annotations": tiny_coco["train"][0], "train_images": tiny_coco["train"][1]}
    train, _, label_map = commands.sources(data)
    config = _config(tmp_path / "nan", optimizer="sgd", learning_rate=1e12, warmup_steps=0,
                     lr_boundaries=[], train_steps=12, checkpoint_every_steps=1)
    with pytest.raises(FloatingPointError, match="Training stopped at step \\d+: the loss became NaN"):
        training.train(config, train, label_map)
    saved = [name for name in os.listdir(tmp_path / "nan" / "checkpoints") if name.endswith(".index")]
    assert not (tmp_path / "nan" / "summary.json").exists()
    assert saved, "the good steps before the NaN must have been checkpointed"
    for name in saved:  # every checkpoint kept is from before the loss went bad
        import tensorflow as tf

        reader = tf.train.load_checkpoint(str(tmp_path / "nan" / "checkpoints" / name[:-6]))
        values = [reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                  if "model" in k and reader.get_variable_to_dtype_map()[k].is_floating]
        assert all(np.all(np.isfinite(v)) for v in values)
