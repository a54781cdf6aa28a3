"""The learning-rate schedule and the optimizer of a `TrainConfig` (the recipe: `train_config`).

Weight decay is Keras' decoupled form (w -= lr * wd * w each step). `optimizer="adamw"` is for
networks trained from scratch (the tiny demo backbone), where the paper's SGD recipe, made for
ImageNet-initialised ResNets, learns far more slowly. With `ema_momentum` the optimizer keeps the
weights' moving average (`AveragingSGD`, `AveragingAdamW`; training/weight_averaging.py).
"""

import keras
import tensorflow as tf

from keras_retina.errors import UsageError
from keras_retina.training.train_config import OPTIMIZERS


@keras.saving.register_keras_serializable(package="keras_retina")
class WarmupPiecewiseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `warmup_factor * rate` to `rate` over `warmup_steps`, then
    `rate * decay^i` after the i-th of `boundaries` (steps)."""

    def __init__(self, rate, boundaries=(), decay=0.1, warmup_steps=0, warmup_factor=1 / 3):
        self.rate = float(rate)
        self.boundaries = [int(b) for b in boundaries]
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.rate, tf.float32)
        for boundary in self.boundaries:
            rate = tf.where(step >= boundary, rate * self.decay, rate)
        if self.warmup_steps:
            progress = tf.minimum(step / self.warmup_steps, 1.0)
            rate = rate * (self.warmup_factor + (1.0 - self.warmup_factor) * progress)
        return rate

    def get_config(self):
        return {"rate": self.rate, "boundaries": self.boundaries, "decay": self.decay,
                "warmup_steps": self.warmup_steps, "warmup_factor": self.warmup_factor}


class _RampedAverage:
    """Keras' weight average (`use_ema`) with its momentum ramped up: after step t (counted from 0)
    it is min(ema_momentum, t / (t + 10)), so the first step's weights are copied (as Keras does)
    and the average then lengthens (0.5 at step 10, 0.99 at step 990), much as TensorFlow's
    ExponentialMovingAverage ramps with `num_updates` ((1 + t) / (10 + t)): a short run's average
    is not held back by the random weights it started from, as with Keras' constant momentum. The average stays in the
    optimizer at the end of `fit` (Keras would copy it into the model there):
    training/weight_averaging.py decides when the model holds which weights."""

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        step = tf.cast(self.iterations, tf.float32)
        momentum = tf.minimum(tf.constant(self.ema_momentum, tf.float32), step / (step + 10.0))
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                rate = tf.cast(momentum, var.dtype)
                average.assign(rate * average + (1.0 - rate) * var)

    def finalize_variable_values(self, var_list):
        pass


@keras.saving.register_keras_serializable(package="keras_retina")
class AveragingSGD(_RampedAverage, keras.optimizers.SGD):
    """SGD keeping the weights' moving average (`_RampedAverage`)."""


@keras.saving.register_keras_serializable(package="keras_retina")
class AveragingAdamW(_RampedAverage, keras.optimizers.AdamW):
    """AdamW keeping the weights' moving average (`_RampedAverage`)."""


def make_optimizer(config):
    """The optimizer of a TrainConfig, with the warm-up and step schedule scaled to its batch."""
    rate, _, boundaries, warmup = config.scaled()
    schedule = WarmupPiecewiseSchedule(rate, boundaries, 0.1, warmup)
    options = {"global_clipnorm": config.clipnorm} if config.clipnorm else {}
    if config.ema_momentum:
        options.update(use_ema=True, ema_momentum=config.ema_momentum)
    averaging = bool(config.ema_momentum)
    if config.optimizer == "sgd":
        return (AveragingSGD if averaging else keras.optimizers.SGD)(
            schedule, momentum=config.momentum, weight_decay=config.weight_decay or None, **options)
    if config.optimizer == "adamw":  # for backbones trained from scratch (the demo)
        return (AveragingAdamW if averaging else keras.optimizers.AdamW)(
            schedule, weight_decay=config.weight_decay, **options)
    raise UsageError(f"--optimizer={config.optimizer!r}: choose one of {OPTIMIZERS}.")
