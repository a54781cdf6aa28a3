"""What the evaluation report costs next to the COCO evaluation it explains.

    python benchmarks/report_speed.py [--pictures=5000 --classes=80 --detections=100]

Generates a COCO-sized evaluation: `--pictures` 640x480 pictures with COCO's mean of 7.3 boxes
each over `--classes` classes, and `--detections` detections per picture (a jittered box on most
objects, some with another class, the rest scattered at low scores). Times pycocotools'
evaluation (`run_cocoeval`: evaluate + accumulate + summarize, what every `evaluate` already
pays) against the report on it: the analyses (`build_report`: matching, error breakdown with its
eight AP recomputations, sweeps, confusion matrix, PR curves), and `write_report` whole (the
analyses again, the figures, the 12 worst pictures drawn from a generated source, the page).
Writes benchmarks/results/report_speed.json.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_retina.data.source import DatasetSource  # noqa: E402
from keras_retina.evaluation.coco_metrics import Evaluation, coco_metrics, run_cocoeval  # noqa: E402
from keras_retina.evaluation.report import build_report, write_report  # noqa: E402

import results  # noqa: E402

HEIGHT, WIDTH = 480, 640


def generate(pictures, classes, detections, seed=0):
    """(COCO ground truth, COCO results, label map)."""
    rng = np.random.default_rng(seed)
    label_map = [{"id": k + 1, "name": f"class_{k + 1}"} for k in range(classes)]
    images, annotations, found = [], [], []
    for image_id in range(1, pictures + 1):
        images.append({"id": image_id, "height": HEIGHT, "width": WIDTH})
        count = rng.poisson(7.3)
        size = np.exp(rng.uniform(np.log(12), np.log(300), (count, 2)))
        corner = rng.uniform(0, 1, (count, 2)) * (np.array([WIDTH, HEIGHT]) - size).clip(1)
        category = rng.integers(1, classes + 1, count)
        for box, k in zip(np.hstack([corner, size]), category):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(k),
                                "bbox": box.round(2).tolist(), "area": float(box[2] * box[3]), "iscrowd": 0})
        kept = []
        for box, k in zip(np.hstack([corner, size]), category):
            if rng.uniform() < 0.8:
                jitter = box + rng.normal(0, 0.08, 4) * np.repeat(box[2:], 2)
                wrong = rng.uniform() < 0.1
                kept.append((jitter, int(rng.integers(1, classes + 1)) if wrong else int(k), rng.uniform(0.3, 1.0)))
        while len(kept) < detections:
            size = np.exp(rng.uniform(np.log(8), np.log(400), 2))
            corner = rng.uniform(0, 1, 2) * (np.array([WIDTH, HEIGHT]) - size).clip(1)
            kept.append((np.concatenate([corner, size]), int(rng.integers(1, classes + 1)), rng.uniform(0.05, 0.5)))
        for box, k, score in kept[:detections]:
            found.append({"image_id": image_id, "category_id": k, "bbox": np.maximum(box, 1).round(2).tolist(),
                          "score": float(score)})
    categories = [{"id": e["id"], "name": e["name"]} for e in label_map]
    return {"images": images, "annotations": annotations, "categories": categories}, found, label_map


def source(pictures):
    """A data source of `pictures` generated pictures (a gradient; made as they are read)."""
    def picture(image_id):
        row = tf.cast(tf.linspace(40.0, 220.0, HEIGHT), tf.uint8)
        image = tf.tile(row[:, None, None], [1, WIDTH, 3])
        return {"image_id": image_id, "image": image}

    return DatasetSource(tf.data.Dataset.range(1, pictures + 1).map(picture), name="generated")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--detections", type=int, default=100)
    args = parser.parse_args()
    ground_truth, found, label_map = generate(args.pictures, args.classes, args.detections)
    print(f"{len(ground_truth['images'])} pictures, {len(ground_truth['annotations'])} boxes, {len(found)} "
          f"detections, {len(label_map)} classes", flush=True)
    start = time.perf_counter()
    evaluator = run_cocoeval(ground_truth, found)
    metrics = coco_metrics(ground_truth, found, label_map, evaluator)
    coco_seconds = time.perf_counter() - start
    evaluation = Evaluation(ground_truth, found, evaluator, metrics)
    print(f"pycocotools evaluation: {coco_seconds:.1f} s (AP {metrics['AP']:.3f})", flush=True)
    start = time.perf_counter()
    build_report(evaluation, label_map)
    analyses_seconds = time.perf_counter() - start
    print(f"report analyses: {analyses_seconds:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_report(os.path.join(folder, "report"), evaluation, label_map, source(args.pictures))
        report_seconds = time.perf_counter() - start
        size = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)
    print(f"whole report: {report_seconds:.1f} s ({size / 2**20:.1f} MiB)", flush=True)
    ratio = report_seconds / coco_seconds
    results.write(
        "report_speed", "The evaluation report's cost",
        "A generated COCO-sized evaluation (pictures, boxes per picture and detections per picture as COCO's "
        "val2017 with a RetinaNet's 100 detections): pycocotools' evaluation, which every `evaluate` already runs, "
        "against the report on it (benchmarks/report_speed.py). The model's own pass over 5,000 pictures, "
        "which an evaluation also pays, takes far longer than either on a CPU.",
        [{"caption": f"{args.pictures} pictures, {len(ground_truth['annotations'])} boxes, {len(found)} detections, "
                     f"{args.classes} classes",
          "columns": ["step", "seconds", "share of the COCO evaluation"],
          "rows": [["pycocotools evaluate + accumulate + summarize", round(coco_seconds, 1), "100%"],
                   ["report analyses (matching, errors, confusion, curves)", round(analyses_seconds, 1),
                    f"{analyses_seconds / coco_seconds:.0%}"],
                   ["whole report (analyses, figures, 12 pictures, page)", round(report_seconds, 1),
                    f"{ratio:.0%}"]]}],
        notes=[f"The whole report costs {ratio:.0%} of the COCO evaluation it explains; its folder is "
               f"{size / 2**20:.1f} MiB."],
        figures={"coco_seconds": coco_seconds, "analyses_seconds": analyses_seconds,
                 "report_seconds": report_seconds, "pictures": args.pictures, "classes": args.classes,
                 "detections": len(found), "boxes": len(ground_truth["annotations"]), "report_mib": size / 2**20})


if __name__ == "__main__":
    main()
