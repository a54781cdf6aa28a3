"""Precision and recall of one COCO evaluation: PR curves, score sweeps, recommended thresholds.

From pycocotools' arrays of the evaluation that gave the AP, so curves and numbers agree:

- `pr_curves(evaluator, label_map)`: COCO's interpolated precision at its 101 recall points
  (`eval["precision"]` [T IoUs .50:.05:.95, R 101, K classes, A areas all/small/medium/large,
  M max detections 1/10/100], read at 100 detections): per class and over all classes (the mean
  over classes with ground truth, as AP is) at IoU 0.5 and 0.75, and per object size at 0.5.
  The mean of a curve is the AP it stands for (AP50, AP75, per-class AP50 ...).
- `class_sweeps(matches)`: per class, every detection COCO counted at IoU 0.5, best first, with
  the raw (not interpolated) precision, recall and F1 of keeping it and all better ones.
- `best_threshold(sweep)`: the score threshold of the highest F1, the threshold to ship.
- `labelling_threshold(sweep)`: the highest score threshold that still finds LABELLING_RECALL of
  the class's objects: pre-labels (`predict --save_annotations`) favour recall.
- `average_precision(scores, is_tp, num_gt)`: COCO's AP of one class at one IoU (its
  `accumulate`: stable sort by score, precision made non-increasing, read at 101 recall points)
  for any list of scored detections: the error breakdown recomputes AP with errors fixed.
"""

import numpy as np

RECALL_POINTS = np.linspace(0.0, 1.0, 101)
LABELLING_RECALL = 0.9
SIZES = ("small", "medium", "large")  # COCO's area ranges 1..3: below 32^2, to 96^2, above


def average_precision(scores, is_tp, num_gt):
    """COCO's 101-point AP of detections (`scores` [D], `is_tp` [D] bool; ignored ones left out)
    against `num_gt` ground-truth boxes; None without ground truth (COCO's -1)."""
    if num_gt <= 0:
        return None
    return float(np.mean(_interpolated(scores, is_tp, num_gt)))


def _interpolated(scores, is_tp, num_gt):
    order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
    tp = np.asarray(is_tp, bool)[order]
    tp_sum = np.cumsum(tp, dtype=np.float64)
    fp_sum = np.cumsum(~tp, dtype=np.float64)
    recall = tp_sum / num_gt
    precision = np.maximum.accumulate((tp_sum / (tp_sum + fp_sum + np.spacing(1)))[::-1])[::-1]
    picked = np.searchsorted(recall, RECALL_POINTS, side="left")
    out = np.zeros(len(RECALL_POINTS))
    found = picked < len(precision)
    out[found] = precision[picked[found]]
    return out


def class_precision(evaluator, label_map):
    """COCO's interpolated precision [T, R, K, A] at 100 detections, K in the label map's order
    (pycocotools orders classes by category id); -1 for a class without ground truth."""
    column = {category: k for k, category in enumerate(evaluator.params.catIds)}
    return evaluator.eval["precision"][..., -1][:, :, [column[entry["id"]] for entry in label_map]]


def pr_curves(evaluator, label_map):
    """{"recall": [101], "all": {"0.50": [101], "0.75": [101]}, "sizes": {size: [101] at 0.5},
    "classes": {name: {"0.50": [101] or None, "0.75": ...}}} from `evaluator.eval`."""
    precision = class_precision(evaluator, label_map)
    thresholds = np.asarray(evaluator.params.iouThrs)
    at = {"0.50": int(np.argmin(np.abs(thresholds - 0.5))), "0.75": int(np.argmin(np.abs(thresholds - 0.75)))}

    def mean_curve(values):  # [R, K]: the mean over classes with ground truth
        present = values[0] > -1
        return values[:, present].mean(axis=1).tolist() if present.any() else None

    curves = {"recall": RECALL_POINTS.round(2).tolist(),
              "all": {key: mean_curve(precision[t, :, :, 0]) for key, t in at.items()},
              "sizes": {size: mean_curve(precision[at["0.50"], :, :, a + 1]) for a, size in enumerate(SIZES)},
              "classes": {}}
    for k, entry in enumerate(label_map):
        curves["classes"][entry["name"]] = {
            key: (precision[t, :, k, 0].tolist() if precision[t, 0, k, 0] > -1 else None) for key, t in at.items()}
    return curves


def class_sweeps(matches):
    """[K] dicts: "scores", "tp" (true positives so far), "precision", "recall", "f1" (numpy,
    best detection first) and
    "num_gt" (non-crowd ground truth) of each class at IoU 0.5."""
    sweeps = []
    for k in range(matches.num_classes):
        num_gt = int(np.count_nonzero((matches.gt_class == k) & ~matches.gt_crowd))
        rows = np.flatnonzero((matches.det_class == k) & matches.det_counted & ~matches.det_ignored)
        rows = rows[np.argsort(-matches.det_score[rows], kind="mergesort")]
        tp = np.cumsum(matches.det_tp[rows], dtype=np.float64)
        precision = tp / np.arange(1, rows.size + 1)
        recall = tp / num_gt if num_gt else np.zeros(rows.size)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
        sweeps.append({"scores": matches.det_score[rows], "tp": tp, "precision": precision, "recall": recall,
                       "f1": f1, "num_gt": num_gt})
    return sweeps


def best_threshold(sweep):
    """{"threshold", "precision", "recall", "f1"} at the score that maximises F1 (all detections
    with an equal score are kept together); None when no detection is right."""
    scores, f1 = sweep["scores"], sweep["f1"]
    if not scores.size or f1.max() <= 0:
        return None
    last_of_ties = np.append(scores[1:] != scores[:-1], True)  # a threshold keeps every equal score
    candidates = np.flatnonzero(last_of_ties)
    best = candidates[np.argmax(f1[candidates])]
    return {"threshold": float(scores[best]), "precision": float(sweep["precision"][best]),
            "recall": float(sweep["recall"][best]), "f1": float(f1[best])}


def labelling_threshold(sweep, recall=LABELLING_RECALL):
    """{"threshold", "precision", "recall"} at the highest score whose detections (and all better
    ones) find `recall` of the class's objects, or, when no score does, at the highest score of the
    class's best recall; None when no detection is right. A person correcting pre-labels deletes
    a wrong box faster than they draw a missed one."""
    scores = sweep["scores"]
    if not scores.size or sweep["recall"].max() <= 0:
        return None
    candidates = np.flatnonzero(np.append(scores[1:] != scores[:-1], True))  # a threshold keeps equal scores
    reached = candidates[sweep["recall"][candidates] >= recall]
    chosen = reached[0] if reached.size else candidates[np.argmax(sweep["recall"][candidates])]
    return {"threshold": float(scores[chosen]), "precision": float(sweep["precision"][chosen]),
            "recall": float(sweep["recall"][chosen])}


def overall_threshold(matches):
    """The one score threshold maximising F1 over all classes together (micro-averaged): the
    threshold the confusion matrix and the worst pictures use unless one is given."""
    rows = np.flatnonzero(matches.det_counted & ~matches.det_ignored)
    rows = rows[np.argsort(-matches.det_score[rows], kind="mergesort")]
    num_gt = int(np.count_nonzero(~matches.gt_crowd))
    tp = np.cumsum(matches.det_tp[rows], dtype=np.float64)
    precision = tp / np.arange(1, rows.size + 1)
    recall = tp / max(num_gt, 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return best_threshold({"scores": matches.det_score[rows], "precision": precision, "recall": recall, "f1": f1})


def threshold_counts(sweep, num_thresholds=101):
    """TensorBoard's PR-curve counts at `num_thresholds` score thresholds 0..1: true and false
    positives (score >= threshold), false negatives, precision and recall ([num_thresholds])."""
    thresholds = np.linspace(0.0, 1.0, num_thresholds)
    scores = sweep["scores"][::-1]  # ascending
    kept = len(scores) - np.searchsorted(scores, thresholds, side="left")
    tp = np.concatenate([[0.0], sweep["tp"]])[kept]
    fp = kept - tp
    fn = sweep["num_gt"] - tp
    precision = np.where(kept > 0, tp / np.maximum(kept, 1), 1.0)
    recall = tp / sweep["num_gt"] if sweep["num_gt"] else np.zeros(num_thresholds)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall}
