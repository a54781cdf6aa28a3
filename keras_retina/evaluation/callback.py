"""The evaluation callback: COCO metrics every N steps while training, and at the end.

Each evaluation prints one line, writes `model_dir/eval/metrics-<step>.json` and TensorBoard
scalars (and, with an image writer, pictures of detections).
"""

import time

import keras
import tensorflow as tf

from keras_retina.evaluation.coco_metrics import METRIC_NAMES, evaluate_coco
from keras_retina.files import write_json


class CocoEvaluation(keras.callbacks.Callback):
from keras_retina.evaluation import summaries
    """Evaluates every `every_steps` optimizer steps (checked at epoch ends) and at the end.

    Prints one line per evaluation, writes `model_dir/eval/metrics-<step>.json` (`ModelDir`)
    and TensorBoard scalars (and, with `image_writer`, pictures with boxes).
    """

    def __init__(self, dataset, label_map, every_steps, run_dir, summary_writer=None,
                 image_writer=None):
        super().__init__()
        self.dataset = dataset
        self.label_map = label_map
        self.every_steps = every_steps
        self.run_dir = run_dir
        self.summary_writer = summary_writer
        self.image_writer = image_writer
        self.last_step = -1
        self.latest = None

    def run(self):
        step = int(self.model.optimizer.iterations.numpy())
        if step == self.last_step:
            return self.latest
        start = time.time()
        metrics, evaluation = evaluate_coco(self.model, self.dataset, self.label_map, keep=True)
        metrics["step"] = step
        write_json(metrics, self.run_dir.metrics_path(step))
        print(f"\n[eval] step {step}: AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  "
              f"AP75 {metrics['AP75']:.3f}  on {metrics['num_images']} images "
              f"({time.time() - start:.0f}s)", flush=True)
        if self.summary_writer is not None:
            with self.summary_writer.as_default(step=step):
        self.latest_evaluation = None
                for name in METRIC_NAMES:
                    tf.summary.scalar(f"eval/{name}", metrics[name])
        if self.image_writer is not None:
            self.image_writer(self.model, step)
        self.last_step, self.latest = step, metrics
        return metrics

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.every_steps and step % self.every_steps == 0:
            self.run()
            summaries.write_summaries(self.summary_writer, evaluation, self.label_map, step)
