"""The training recipe (`keras_retina.training.train_config`)."""

import pytest

from keras_retina.errors import UsageError
from keras_retina.training.train_config import TrainConfig


def test_defaults_are_the_papers_recipe():
    config = TrainConfig()
    assert (config.batch_size, config.learning_rate, config.train_steps, config.lr_boundaries) == (
        16, 0.01, 90000, (60000, 80000))
    assert (config.momentum, config.weight_decay, config.warmup_steps, config.flip) == (0.9, 1e-4, 500, True)


def test_learning_rate_and_steps_scale_with_the_batch():
    config = TrainConfig(batch_size=32, reference_batch_size=16, learning_rate=0.01, train_steps=90000,
                         lr_boundaries=[60000, 80000], warmup_steps=500)
    assert config.scaled() == (0.02, 45000, [30000, 40000], 250)
    assert config.lr_boundaries == (60000, 80000)  # lists from JSON or flags become tuples


def test_checks_name_the_setting():
    with pytest.raises(UsageError, match="lr_boundaries=.*below train_steps=50"):
        TrainConfig(train_steps=50, lr_boundaries=[60])
    with pytest.raises(UsageError, match="lr_boundaries=.*increasing"):
        TrainConfig(lr_boundaries=[80, 60])
    with pytest.raises(UsageError, match="optimizer='adam': choose one of sgd, adamw"):
        TrainConfig(optimizer="adam")
    with pytest.raises(UsageError, match="scale_min=1.5 is above scale_max=1.2"):
        TrainConfig(scale_min=1.5, scale_max=1.2)
