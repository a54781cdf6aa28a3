"""The evaluation report: why a detector fails, as one page a person opens, PNG figures and JSON.

`write_report(folder, evaluation, label_map, source=None, ...)` writes into `folder`:

- `index.html`: one self-contained page (figures and pictures embedded, no network) with the
  COCO numbers, the per-class table (AP, AP50, AP75, ground-truth boxes, and precision, recall
  and F1 at each class's recommended threshold: the score that maximises its F1), the
  threshold to ship, PR curves, the confusion matrix, the error breakdown in TIDE's terms with
  what to do about each kind, and the pictures with the most mistakes;
- `pr_curves.png`, `confusion_matrix.png`, `errors.png`, `pictures/<n>.jpg`: the same figures;
- `report.json`: every number of the page.

`evaluation` is a `coco_metrics.Evaluation` (the COCO ground truth, the detections and the
pycocotools COCOeval that scored them); every analysis reads the same matching
(`matches.Matches`), so the page agrees with the AP. `source` (a data source with the
evaluated pictures) is needed to draw the worst pictures; without one the page says so.

The confusion matrix and the pictures use one score threshold: `report_threshold`, else the one
that maximises F1 over all classes together.
"""

import base64
import os

import numpy as np

from keras_retina import renamed
from keras_retina.evaluation import confusion, report_figures, report_page, report_pictures
from keras_retina.evaluation.error_breakdown import TYPES, ErrorBreakdown
from keras_retina.evaluation.matches import Matches
from keras_retina.evaluation.precision_recall import (
    best_threshold,
    class_precision,
    class_sweeps,
    labelling_threshold,
    overall_threshold,
    pr_curves,
)
from keras_retina.files import replace_atomically, write_json

NUM_PICTURES = 12

ADVICE = {
    "classification": "Detections in the right place with the wrong class: look at the confusion matrix for "
                      "the pairs mixed up; check those classes' labels for mistakes, and add examples that "
                      "tell them apart.",
    "localisation": "Objects found but boxed badly (IoU 0.1-0.5): check that boxes are drawn the same way "
                    "in every picture; check anchor coverage (`keras_retina check-data`); train longer or at a "
                    "larger --image_size.",
    "both": "Badly placed boxes of the wrong class, mostly on cluttered or small objects: a larger "
            "--image_size and more examples of the classes involved.",
    "duplicate": "Two detections on one object: a lower --nms_iou_threshold (export) removes them; many "
                 "duplicates can also mean boxes that disagree in the training labels.",
    "background": "Detections on nothing: add pictures of the scenes without objects (negatives), check for "
                  "objects left unlabelled (they count as false alarms here), or ship a higher threshold.",
    "missed": "Objects no detection came near: if they are small or oddly shaped, check anchor coverage "
              "(`keras_retina check-data`) and use a larger --image_size; otherwise they need more examples.",
}


def report_folder(metrics_path):
    """The report's folder beside a metrics JSON file: `eval/metrics-1500.json` ->
    `eval/metrics-1500_report/`."""
    return os.path.splitext(metrics_path)[0] + "_report"


def build_report(evaluation, label_map, report_threshold=None, **renamed_arguments):
    """(report dict of numbers, the analyses the figures and pictures need)."""
    report_threshold = renamed.argument(renamed_arguments, "score_threshold", "report_threshold", report_threshold,
                                        "build_report")
    renamed.no_others(renamed_arguments, "build_report")
    evaluator = evaluation.evaluator
    names = [entry["name"] for entry in label_map]
    matches = Matches(evaluator, label_map)
    breakdown = ErrorBreakdown(matches)
    sweeps = class_sweeps(matches)
    chosen = "given"
    if report_threshold is None:
        overall = overall_threshold(matches)
        report_threshold, chosen = ((overall["threshold"], "the best F1 over all classes") if overall
                                   else (0.5, "default: no detection is right"))
    matrix, pairing = confusion.confusion_matrix(matches, report_threshold)
    curves = pr_curves(evaluator, label_map)
    precision = class_precision(evaluator, label_map)[..., 0]  # [T, R, K] area all
    errors_by_class = breakdown.per_class(names, report_threshold)
    classes = []
    for k, entry in enumerate(label_map):
        values = precision[:, :, k]
        has_gt = bool(values[0, 0] > -1)
        classes.append({
            "name": entry["name"], "id": entry["id"], "num_gt": sweeps[k]["num_gt"],
            "num_detections": int(sweeps[k]["scores"].size),
            "AP": float(values.mean()) if has_gt else None,
            "AP50": float(values[0].mean()) if has_gt else None,
            "AP75": float(values[5].mean()) if has_gt else None,
            "recommended": best_threshold(sweeps[k]),
            "for_labelling": labelling_threshold(sweeps[k]),
            "errors": errors_by_class[entry["name"]],
        })
    errors = breakdown.summary()
    report = {
        "num_images": int(len(matches.image_ids)),
        "metrics": dict(evaluation.metrics),
        "score_threshold": {"value": float(report_threshold), "chosen": chosen},
        "classes": classes,
        "confusion": {"labels": names + ["background"], "matrix": matrix.tolist(), "iou": 0.5,
                      "score_threshold": float(report_threshold),
                      "rows": "true class", "columns": "detected class"},
        "errors": errors,
        "advice": advice(errors),
        "pr_curves": curves,
    }
    report["metrics"].pop("per_class_AP", None)
    analyses = {"matches": matches, "breakdown": breakdown, "pairing": pairing, "sweeps": sweeps}
    return report, analyses


UNDERTRAINED_AP50 = 0.1


def advice(errors):
    """The error kinds that cost the most AP, largest first, each with what to do about it; a
    model below UNDERTRAINED_AP50 is told to train longer first."""
    ranked = sorted(TYPES, key=lambda kind: -errors["types"][kind]["delta_ap"])
    out = []
    if errors["ap50"] < UNDERTRAINED_AP50:
        out.append({"kind": "train longer", "delta_ap": None,
                    "what_to_do": f"AP50 is {errors['ap50']:.3f}: the model has barely learnt, so every kind of error "
                                  f"is everywhere. Train longer (or check the learning rate and that the labels "
                                  f"match the pictures) before reading the details below."})
    for kind in ranked:
        delta = errors["types"][kind]["delta_ap"]
        if delta >= 0.005 and len(out) < 3 + (errors["ap50"] < UNDERTRAINED_AP50):
            out.append({"kind": kind, "delta_ap": delta, "what_to_do": ADVICE[kind]})
    return out


def write_report(folder, evaluation, label_map, source=None, title="RetinaNet evaluation", num_pictures=NUM_PICTURES,
                 *, report_threshold=None, about=None, **renamed_arguments):
    """Writes the report into `folder` (module docstring); returns the path of index.html."""
    report_threshold = renamed.argument(renamed_arguments, "score_threshold", "report_threshold", report_threshold,
                                        "write_report")
    renamed.no_others(renamed_arguments, "write_report")
    os.makedirs(os.path.join(folder, "pictures"), exist_ok=True)
    report, analyses = build_report(evaluation, label_map, report_threshold)
    report["title"] = title
    report["about"] = dict(about or {})
    names = [entry["name"] for entry in label_map]
    figures = {
        "pr_curves": report_figures.pr_curves_png(report["pr_curves"], report["classes"]),
        "confusion_matrix": report_figures.confusion_png(np.array(report["confusion"]["matrix"]),
                                                          report["confusion"]["labels"],
                                                          report["score_threshold"]["value"]),
        "errors": report_figures.errors_png(report["errors"]),
    }
    for name, png in figures.items():
        _write_bytes(os.path.join(folder, f"{name}.png"), png)
    mistakes = confusion.picture_mistakes(analyses["matches"], analyses["pairing"])
    worst = sorted((i for i, p in enumerate(mistakes) if p["mistakes"]), key=lambda i: (-mistakes[i]["mistakes"], i))
    worst = worst[:num_pictures]
    pictures, note = [], None
    if worst and source is None:
        note = "No pictures: the report was made without the evaluation data's source."
    elif worst:
        drawn = report_pictures.draw_worst(analyses["matches"], analyses["breakdown"], mistakes, worst, source, names)
        for n, (i, item) in enumerate(zip(worst, drawn)):
            name = f"pictures/{n + 1:02d}.jpg"
            _write_bytes(os.path.join(folder, name), item["jpeg"])
            pictures.append({"image_id": int(analyses["matches"].image_ids[i]), "file": item["file"], "path": name,
                             "mistakes": mistakes[i]["mistakes"], "missed": int(mistakes[i]["missed"].size),
                             "wrong": int(mistakes[i]["wrong"].size), "jpeg": item["jpeg"]})
    report["worst_pictures"] = [{k: v for k, v in p.items() if k != "jpeg"} for p in pictures]
    report["worst_pictures_note"] = note
    write_json(report, os.path.join(folder, "report.json"))
    embedded = {name: _data_uri("image/png", png) for name, png in figures.items()}
    page = report_page.render(report, embedded, [dict(p, src=_data_uri("image/jpeg", p["jpeg"])) for p in pictures])
    path = os.path.join(folder, "index.html")
    _write_bytes(path, page.encode("utf-8"))
    return path


def _data_uri(kind, data):
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def _write_bytes(path, data):
    def write(temporary):
        with open(temporary, "wb") as f:
            f.write(data)

    replace_atomically(path, write)
