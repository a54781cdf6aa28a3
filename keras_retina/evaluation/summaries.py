"""TensorBoard views of an evaluation: PR curves (its PR-curve plugin) and the confusion matrix.

`write_summaries(writer, evaluation, label_map, step)` writes, under "eval/":

- `pr_curve/<class>` per class and `pr_curve/all_classes` (every class's detections together):
  true / false positives and false negatives at 101 score thresholds 0..1, at IoU 0.5, from the
  same COCO matching as the AP (`precision_recall.class_sweeps`), so the plugin's curves show
  what each score threshold keeps;
- `confusion_matrix`: the report's confusion matrix (`confusion`, at the threshold of the best
  F1 over all classes) as an image.
"""

import numpy as np
import tensorflow as tf
from tensorboard.plugins.pr_curve import summary as pr_summary

from keras_retina.evaluation import confusion, report_figures
from keras_retina.evaluation.matches import Matches
from keras_retina.evaluation.precision_recall import class_sweeps, overall_threshold, threshold_counts

NUM_THRESHOLDS = 101


def _tag(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_summaries(writer, evaluation, label_map, step):
    matches = Matches(evaluation.evaluator, label_map)
    sweeps = class_sweeps(matches)
    together = _together(sweeps)
    with writer.as_default(step=step):
        for name, sweep in [("all_classes", together)] + [(e["name"], s) for e, s in zip(label_map, sweeps)]:
            counts = threshold_counts(sweep, NUM_THRESHOLDS)
            proto = pr_summary.raw_data_pb(
                f"eval/pr_curve/{_tag(name)}", true_positive_counts=counts["tp"], false_positive_counts=counts["fp"],
                true_negative_counts=np.zeros(NUM_THRESHOLDS), false_negative_counts=counts["fn"],
                precision=counts["precision"], recall=counts["recall"], num_thresholds=NUM_THRESHOLDS,
                display_name=f"PR curve: {name} (IoU 0.5, over score thresholds)")
            tf.summary.experimental.write_raw_pb(proto.SerializeToString(), step=step)
        best = overall_threshold(matches)
        threshold = best["threshold"] if best else 0.5
        matrix, _ = confusion.confusion_matrix(matches, threshold)
        png = report_figures.confusion_png(matrix, [e["name"] for e in label_map] + ["background"], threshold)
        tf.summary.image("eval/confusion_matrix", tf.image.decode_png(png, channels=3)[None], step=step)
    writer.flush()


def _together(sweeps):
    """All classes' detections in one sweep (score order), as one class."""
    scores = np.concatenate([s["scores"] for s in sweeps]) if sweeps else np.zeros(0)
    hits = np.concatenate([np.diff(s["tp"], prepend=0.0) for s in sweeps]) if sweeps else np.zeros(0)
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(hits[order])
    num_gt = sum(s["num_gt"] for s in sweeps)
    return {"scores": scores[order], "tp": tp, "num_gt": num_gt,
            "precision": tp / np.arange(1, len(tp) + 1), "recall": tp / max(num_gt, 1)}
