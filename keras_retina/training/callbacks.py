"""Keras callbacks of a training run: NaN stop, checkpoints, TensorBoard scalars and pictures."""

import math

import keras
import tensorflow as tf

from keras_retina.modeling import transform
from keras_retina.ops import drawing


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss, or at a checkpoint (epoch end) that would save
    non-finite weights, and remembers the step (`bad_step`) and those weights' paths (`bad_weights`,
    empty when the loss was the first to go). A weight can go bad while the loss stays finite: a
    kernel tap the current pictures never reach gets no signal into the loss, but a larger picture
    reads it. Runs before the Checkpointer."""

    def __init__(self):
        super().__init__()
        self.bad_step = None
        self.bad_weights = []

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop()

    def on_epoch_end(self, epoch, logs=None):
        if self.bad_step is None:
            self.bad_weights = [w.path for w in self.model.weights
                                if w.dtype.startswith("float") and not bool(keras.ops.all(keras.ops.isfinite(w)))]
            if self.bad_weights:
                self._stop()

    def _stop(self):
        self.bad_step = int(self.model.optimizer.iterations.numpy())
        self.model.stop_training = True


class Checkpointer(keras.callbacks.Callback):
    """Saves model + optimizer at every epoch end (= every checkpoint_every_steps steps)."""

    def __init__(self, manager, train_steps, nan_guard):
        super().__init__()
        self.manager = manager
        self.train_steps = train_steps
        self.nan_guard = nan_guard

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.train_steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.bad_step is not None:  # never checkpoint a broken model
            return
        step = int(self.model.optimizer.iterations.numpy())
        if self.manager.latest_checkpoint != f"{self.manager.directory}/ckpt-{step}":
            self.manager.save(checkpoint_number=step)


class LearningRateLogger(keras.callbacks.Callback):
    def __init__(self, writer, every):
        super().__init__()
        self.writer, self.every = writer, max(every, 1)

    def _write(self, logs):
        with self.writer.as_default(step=int(self.model.optimizer.iterations.numpy())):
            tf.summary.scalar("learning_rate", self.model.optimizer.learning_rate)
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"train/{name}", value)

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) % self.every == 0:
            self._write(logs)

    def on_epoch_end(self, epoch, logs=None):  # short runs and every checkpoint interval
        self._write(logs)


def image_writer(writer, dataset, label_map, count=4):
    images, _ = next(iter(dataset.take(1)))
    images = images[:count]

    def write(model, step):
        out = model.detect(images)
        size = tf.shape(images)[1:3]  # drawn on the model input: scale 1
        boxes = transform.to_original(out["boxes"], tf.ones(tf.shape(images)[:1]),
                                          tf.tile(size[None], [tf.shape(images)[0], 1]), normalised=True)
        keep = tf.cast(out["scores"] >= drawing.DRAW_THRESHOLD, tf.float32)[..., None]
        drawn = tf.image.draw_bounding_boxes(images / 255.0, boxes * keep,
                                             tf.constant([[1.0, 0.2, 0.2, 1.0]]))
        with writer.as_default(step=step):
            tf.summary.image("eval/detections", drawn, max_outputs=count)

    return write
