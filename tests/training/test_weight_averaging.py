"""--ema_momentum: the ramped average, and which weights each step and file of a run holds."""

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_retina.errors import UsageError
from keras_retina.model_dir import ModelDir
from keras_retina.modeling.model_config import ModelConfig
from keras_retina.modeling.retinanet import RetinaNet
from keras_retina.training.optimizer import AveragingAdamW, AveragingSGD, make_optimizer
from keras_retina.training.train_config import TrainConfig

from command_line import keras_retina
from conftest import TINY, TINY_FLAGS, assert_same_final_weights


def test_the_average_copies_the_first_step_then_lengthens_up_to_the_momentum():
    """SGD at rate 0.1 on a constant gradient 1: the weight after step t is 1 - 0.1 (t + 1); the
    average takes momentum min(0.5, t / (t + 10)) after step t (0: the first step's weight)."""
    weight = keras.Variable([1.0])
    optimizer = AveragingSGD(learning_rate=0.1, use_ema=True, ema_momentum=0.5)
    optimizer.build([weight])
    expected = None
    for t in range(14):
        optimizer.apply([tf.constant([1.0])], [weight])
        momentum = min(0.5, t / (t + 10))
        value = 1 - 0.1 * (t + 1)
        expected = value if expected is None else momentum * expected + (1 - momentum) * value
        average = float(optimizer._model_variables_moving_average[0].numpy()[0])
        assert average == pytest.approx(expected, abs=1e-6), t
        assert float(weight.numpy()[0]) == pytest.approx(value, abs=1e-6)  # the raw weight stays the model's
    assert momentum == 0.5 and expected != pytest.approx(value)  # the ramp has reached the momentum
    optimizer.finalize_variable_values([weight])  # Keras' end of fit: the model keeps its raw weights
    assert float(weight.numpy()[0]) == pytest.approx(value, abs=1e-6)


def test_the_optimizers_and_the_flag():
    for name, kind in (("sgd", AveragingSGD), ("adamw", AveragingAdamW)):
        optimizer = make_optimizer(TrainConfig(optimizer=name, ema_momentum=0.99))
        assert isinstance(optimizer, kind) and optimizer.use_ema and optimizer.ema_momentum == 0.99
        plain = make_optimizer(TrainConfig(optimizer=name))
        assert not plain.use_ema and not isinstance(plain, kind)
        again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))  # model.keras keeps it
        assert type(again) is kind and again.ema_momentum == 0.99
    with pytest.raises(UsageError, match="ema_momentum=1: must be in \\[0, 1\\)"):
        TrainConfig(ema_momentum=1)


def _weights(model):
    return [v.numpy() for v in model.trainable_variables]


def _raw_weights(run, checkpoint):
    """The model part of a checkpoint alone (what a plain restore gives)."""
    model = RetinaNet(config=dataclasses.replace(run.model_config(), backbone_weights=None))
    tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
    return _weights(model)


def test_evaluation_best_export_and_resume_each_hold_the_weights_they_say(tmp_path, tiny_coco):
    data = [f"--train_annotations={tiny_coco['train'][0]}", f"--train_images={tiny_coco['train'][1]}"]
    val = [f"--val_annotations={tiny_coco['val'][0]}", f"--val_images={tiny_coco['val'][1]}"]
    args = ["train", *TINY_FLAGS, "--ema_momentum=0.9", "--deterministic", "--checkpoint_every_steps=2", *data]
    for run_dir, steps, extra in (("resumed", 4, val), ("resumed", 6, val), ("unevaluated", 6, [])):
        result = keras_retina(*args, *extra, f"--model_dir={run_dir}", f"--train_steps={steps}",
                              "--eval_every_steps=2", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert ("[eval]" in result.stdout) == bool(extra)
    # Evaluating swaps the average in and the raw weights back, and a resume continues both exactly
    # (they are both in the checkpoint): the run evaluated every 2 steps and resumed at step 4 ends
    # with the raw weights and averages of one that never evaluated nor stopped.
    assert_same_final_weights(tmp_path / "unevaluated", tmp_path / "resumed", "ckpt-2")
    run = ModelDir(str(tmp_path / "resumed"))
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["weights"] == "averaged (ema_momentum 0.9)"
    for step in (2, 4, 6):  # every evaluation measured the averaged weights
        assert json.loads((tmp_path / "resumed" / "eval" / f"metrics-{step}.json").read_text())["weights"] == "averaged"
    # checkpoints/ hold the raw weights as the model and the average beside them; evaluate, export and
    # predict (load_model) take the average
    latest = run.latest_checkpoint()
    averaged, _, _, path = run.load_model(which="latest")
    assert path == latest
    moved = [not np.allclose(a, r) for a, r in zip(_weights(averaged), _raw_weights(run, latest))]
    assert sum(moved) > len(moved) // 2, "the average and the raw weights are the same"
    # best/ holds the average of its step (saved while the evaluation had swapped it in)
    step = summary["best"]["step"]
    from_best = _weights(run.load_model()[0])
    at_step, _, _, _ = run.load_model(checkpoint=str(tmp_path / "resumed" / "checkpoints" / f"ckpt-{step}"))
    assert run.best_checkpoint().endswith(f"ckpt-{step}")
    assert all(np.array_equal(a, b) for a, b in zip(from_best, _weights(at_step)))
    # model.keras is the best model, averaged; without validation data, the last average
    loaded = keras.saving.load_model(str(tmp_path / "resumed" / "model.keras"))
    assert all(np.allclose(a, b) for a, b in zip(_weights(loaded), from_best))
    unevaluated = ModelDir(str(tmp_path / "unevaluated"))
    last_average = _weights(unevaluated.load_model()[0])
    loaded = keras.saving.load_model(str(tmp_path / "unevaluated" / "model.keras"))
    assert all(np.allclose(a, b) for a, b in zip(_weights(loaded), last_average))
    raw = _raw_weights(unevaluated, unevaluated.latest_checkpoint())
    assert not all(np.allclose(a, b) for a, b in zip(last_average, raw))
    # the optimizer's state is saved by position: a resume that turns averaging off (or on) is refused
    config = (tmp_path / "unevaluated" / "config.json").read_text()
    result = keras_retina(*[a for a in args if a != "--ema_momentum=0.9"], "--model_dir=unevaluated",
                          "--train_steps=8", cwd=tmp_path)
    assert result.returncode == 2 and "was trained with weight averaging (--ema_momentum)" in result.stderr
    assert (tmp_path / "unevaluated" / "config.json").read_text() == config


def test_multi_worker_training_refuses_averaging(tmp_path):
    from keras_retina.training import trainer

    class Resolver:
        task_type, task_id = "worker", 1

    class Strategy:
        cluster_resolver = Resolver()

    with pytest.raises(UsageError, match="--ema_momentum works on one machine"):
        trainer.train(str(tmp_path / "run"), ModelConfig(**TINY), TrainConfig(ema_momentum=0.99), strategy=Strategy())
