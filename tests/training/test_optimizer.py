"""The schedule, the optimizer and the strategy (`keras_retina.training.optimizer`, `.strategy`)."""

import keras
import pytest

from keras_retina.errors import UsageError
from keras_retina.training import optimizer, strategy
from keras_retina.training.train_config import TrainConfig


def test_warmup_piecewise_schedule():
    schedule = optimizer.WarmupPiecewiseSchedule(0.02, [100, 200], 0.1, warmup_steps=10)
    expected = {0: 0.02 / 3, 5: 0.02 * (1 / 3 + 2 / 3 * 0.5), 10: 0.02, 99: 0.02, 100: 0.002,
                199: 0.002, 200: 0.0002}
    for step, rate in expected.items():
        assert float(schedule(step)) == pytest.approx(rate, rel=1e-6), step
    restored = optimizer.WarmupPiecewiseSchedule.from_config(schedule.get_config())
    assert restored.get_config() == schedule.get_config()


def test_the_papers_optimizer_scaled_to_the_batch():
    sgd = optimizer.make_optimizer(TrainConfig(batch_size=8))
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9 and sgd.weight_decay == 1e-4
    schedule = sgd._learning_rate  # the schedule object (learning_rate is its current value)
    assert schedule.rate == pytest.approx(0.005) and schedule.boundaries == [120000, 160000]
    assert schedule.warmup_steps == 1000
    adamw = optimizer.make_optimizer(TrainConfig(optimizer="adamw", clipnorm=1.0))
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.global_clipnorm == 1.0


def test_strategies_by_name():
    assert strategy.make_strategy("one_device").num_replicas_in_sync == 1
    with pytest.raises(UsageError, match="--strategy='gpus'"):
        strategy.make_strategy("gpus")
