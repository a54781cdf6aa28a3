"""The evaluation callback: COCO metrics every N steps while training, and at the end.

Each evaluation prints one line, writes `model_dir/eval/metrics-<step>.json` and TensorBoard
scalars, PR curves and the confusion matrix (`summaries`; with an image writer, pictures of
detections too), and keeps the `coco_metrics.Evaluation` for the report. With a best-checkpoint manager it
keeps the checkpoint of the best `best_metric` in model_dir/best/ (its metrics file written
first, so a kill between the two leaves the previous best whole) and, with `patience`, stops
training after that many evaluations without a better one. A resumed run takes the best so far
and the evaluations since from the model_dir's files.
"""

import time

import keras
import tensorflow as tf

from keras_retina.evaluation import summaries
from keras_retina.evaluation.coco_metrics import METRIC_NAMES, evaluate_coco
from keras_retina.files import write_json


class CocoEvaluation(keras.callbacks.Callback):
    """Evaluates every `every_steps` optimizer steps (checked at epoch ends) and at the end.

    Prints one line per evaluation, writes `model_dir/eval/metrics-<step>.json` (`ModelDir`)
    and TensorBoard scalars (and, with `image_writer`, pictures with boxes). `skip_if`: a callable;
    while it returns True no epoch end evaluates (training's NaN guard: a broken model is never
    evaluated, nor kept as the best). `averaged`: with weight averaging, a callable giving a context
    in which the model holds its averaged weights: those are evaluated and kept as the best, and the
    metrics say "weights": "averaged" (training/weight_averaging.py).
    """

    def __init__(self, dataset, label_map, every_steps, run_dir, summary_writer=None,
                 image_writer=None, *, best_manager=None, best_metric="AP", patience=0, skip_if=None,
                 averaged=None):
        super().__init__()
        self.averaged = averaged
        self.skip_if = skip_if or (lambda: False)
        self.best_manager = best_manager
        self.best_metric = best_metric
        self.patience = patience
        self.best = run_dir.best_record() if best_manager is not None else None
        if self.best is not None and self.best.get("metric") != best_metric:
            self.best = None  # another metric was asked for: the next evaluation starts over
        self.stale = 0 if self.best is None else sum(
            1 for step in run_dir.evaluations() if step > self.best["step"])
        self.stopped_at = None
        self.dataset = dataset
        self.label_map = label_map
        self.every_steps = every_steps
        self.run_dir = run_dir
        self.summary_writer = summary_writer
        self.image_writer = image_writer
        self.last_step = -1
        self.latest = None
        self.latest_evaluation = None

    def run(self):
        step = int(self.model.optimizer.iterations.numpy())
        if step == self.last_step:
            return self.latest
        if self.averaged is None:
            return self._run(step)
        with self.averaged(self.model):
            return self._run(step)

    def _run(self, step):
        start = time.time()
        metrics, evaluation = evaluate_coco(self.model, self.dataset, self.label_map, keep=True)
        metrics["step"] = step
        metrics["weights"] = "raw" if self.averaged is None else "averaged"
        write_json(metrics, self.run_dir.metrics_path(step))
        print(f"\n[eval] step {step}: AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  "
              f"AP75 {metrics['AP75']:.3f}  on {metrics['num_images']} images "
              f"({time.time() - start:.0f}s)", flush=True)
        if self.summary_writer is not None:
            with self.summary_writer.as_default(step=step):
                for name in METRIC_NAMES:
                    tf.summary.scalar(f"eval/{name}", metrics[name])
            summaries.write_summaries(self.summary_writer, evaluation, self.label_map, step)
        if self.image_writer is not None:
            self.image_writer(self.model, step)
        self.last_step, self.latest, self.latest_evaluation = step, metrics, evaluation
        if self.best_manager is not None:
            self._keep_best(step, metrics)
        return metrics

    def _keep_best(self, step, metrics):
        value = metrics[self.best_metric]
        if self.best is None or value > self.best["value"]:
            record = {"step": step, "metric": self.best_metric, "value": value,
                      "metrics": {name: metrics[name] for name in METRIC_NAMES}}
            self.run_dir.write_best_record(record)  # before the checkpoint: the index never names one without it
            self.best_manager.save(checkpoint_number=step)
            self.run_dir.remove_stale_best_records()
            if self.best is not None:
                print(f"[eval] best {self.best_metric} so far: {value:.3f} at step {step} "
                      f"(was {self.best['value']:.3f} at step {self.best['step']})", flush=True)
            self.best, self.stale = record, 0
            return
        self.stale += 1
        if self.patience and self.stale >= self.patience and self.model is not None:
            print(f"[eval] {self.stale} evaluations without a better {self.best_metric} than "
                  f"{self.best['value']:.3f} (step {self.best['step']}): stopping early.", flush=True)
            self.stopped_at = step
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.every_steps and step % self.every_steps == 0 and not self.skip_if():
            self.run()
