"""The learning-rate schedule and the optimizer of a `TrainConfig` (the recipe: `train_config`).

Weight decay is Keras' decoupled form (w -= lr * wd * w each step). `optimizer="adamw"` is for
networks trained from scratch (the tiny demo backbone), where the paper's SGD recipe, made for
ImageNet-initialised ResNets, learns far more slowly.
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


def make_optimizer(config):
    """The optimizer of a TrainConfig, with the warm-up and step schedule scaled to its batch."""
    rate, _, boundaries, warmup = config.scaled()
    schedule = WarmupPiecewiseSchedule(rate, boundaries, 0.1, warmup)
    clip = {"global_clipnorm": config.clipnorm} if config.clipnorm else {}
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=config.momentum, weight_decay=config.weight_decay or None,
                                    **clip)
    if config.optimizer == "adamw":  # for backbones trained from scratch (the demo)
        return keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay, **clip)
    raise UsageError(f"--optimizer={config.optimizer!r}: choose one of {OPTIMIZERS}.")
