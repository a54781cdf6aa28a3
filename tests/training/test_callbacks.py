import keras
import numpy as np
import tensorflow as tf

from keras_retina.evaluation.callback import CocoEvaluation
from keras_retina.training import callbacks as cb


class _Poison(keras.callbacks.Callback):
    """At the end of epoch `epoch`, puts one NaN into the bias: a weight gone bad while every
    loss the run logged was finite."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            bias = self.model.layers[-1].bias
            bias.assign(np.array([np.nan, 0.0], np.float32))


def test_a_weight_gone_nan_with_a_finite_loss_stops_training_before_its_checkpoint(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="out")])
    model.compile(optimizer="sgd", loss="mse")
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(tmp_path), max_to_keep=None)
    guard = cb.NanGuard()
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    evaluator = CocoEvaluation(None, [], 1, run_dir=None, skip_if=lambda: guard.bad_step is not None)
    evaluated = []
    evaluator.run = lambda: evaluated.append(int(model.optimizer.iterations.numpy()))
    history = model.fit(x, y, batch_size=4, epochs=5, verbose=0,
                        callbacks=[_Poison(epoch=1), guard, cb.Checkpointer(manager, 5, guard), evaluator])
    assert all(np.isfinite(history.history["loss"]))
    assert guard.bad_step == 2 and guard.bad_weights == ["sequential/out/bias"]
    assert len(history.history["loss"]) == 2  # stopped at the second epoch's end
    assert [int(path.rsplit("-", 1)[1]) for path in manager.checkpoints] == [1]  # the bad step is not saved
    assert evaluated == [1]  # nor evaluated (it could become the best checkpoint)
