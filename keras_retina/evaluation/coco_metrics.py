"""COCO detection metrics through pycocotools, per-class AP, and a Keras callback.

`evaluate_coco(model, dataset, label_map)` runs `model.detect` over an
`eval_dataset` (see `data.pipeline`), maps boxes back to each original image
(`transform.to_original`, then yxyx -> COCO xywh) and classes back to the
dataset's own category ids, builds the ground truth from the same stream (crowd
flags and areas included, so one path serves COCO JSON, TFDS and TFRecords) and
runs pycocotools' COCOeval. Returns the 12 standard numbers under the names
below, plus `per_class_AP` {class name: AP at IoU .50:.95}; with `keep=True` also the
`Evaluation` (ground truth, detections, the COCOeval) that the report (`evaluation.report`)
reads. `model.detect` is compiled once per model and process (`compiled_detect`), so the
evaluations during training reuse one graph instead of tracing it again each time.
"""

import contextlib
import dataclasses
import io
import weakref

import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_retina.errors import DataError
from keras_retina.modeling import transform
from keras_retina.ops import boxes as box_lib

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@dataclasses.dataclass
class Evaluation:
    """One COCO evaluation: `ground_truth` (COCO dict), `results` (COCO detections, xywh pixels),
    `evaluator` (pycocotools COCOeval after evaluate() and accumulate(); its cocoDt is None when
    there was no detection) and `metrics` (`coco_metrics`' dict)."""

    ground_truth: dict
    results: list
    evaluator: COCOeval
    metrics: dict


_COMPILED = weakref.WeakKeyDictionary()  # model -> its compiled detect (gone with the model)


def compiled_detect(model):
    """`model.detect(images [B, H, W, 3] float32, picture_sizes [B, 2] int32)` as one tf.function
    per model, traced once for every batch size and canvas (an evaluation sees several bucket
    canvases) and reused by every later evaluation. It holds the model weakly, so caching it keeps
    no model alive."""
    detect = _COMPILED.get(model)
    if detect is None:
        held = weakref.ref(model)
        detect = tf.function(lambda images, picture_sizes: held().detect(images, picture_sizes),
                             input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32),
                                              tf.TensorSpec([None, 2], tf.int32)])
        _COMPILED[model] = detect
    return detect


def collect_detections(model, dataset, label_map):
    """Runs the model; returns (COCO ground-truth dict, list of COCO result dicts)."""
    images, annotations, results = [], [], []
    detect = compiled_detect(model)
    for batch_images, meta in dataset:  # any dataset of eval_dataset's layout (a user's own: uint8, int64 ...)
        out = {k: v.numpy() for k, v in detect(tf.cast(batch_images, tf.float32),
                                               tf.cast(meta["picture_size"], tf.int32)).items()}
        meta = {k: v.numpy() for k, v in meta.items()}
        for i, image_id in enumerate(meta["image_id"]):
            if image_id < 0:
                continue
            _add_ground_truth(images, annotations, label_map, image_id, meta["original_size"][i], meta["boxes"][i],
                              classes=meta["classes"][i], is_crowd=meta["is_crowd"][i], area=meta["area"][i])
            n = int(out["num_detections"][i])
            boxes = transform.to_original(out["boxes"][i, :n], meta["scale"][i], meta["original_size"][i],
                                              resized_hw=meta["picture_size"][i])
            for bbox, score, cls in zip(box_lib.coco_bboxes(boxes), out["scores"][i, :n], out["classes"][i, :n]):
                results.append({"image_id": int(image_id), "category_id": label_map[cls]["id"],
                                "bbox": bbox, "score": float(score)})
    categories = [{"id": entry["id"], "name": entry["name"]} for entry in label_map]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _add_ground_truth(images, annotations, label_map, image_id, original_size, boxes, *, classes, is_crowd, area):
    """Appends one image and its labelled boxes (class >= 0; yxyx pixels) to COCO ground-truth lists."""
    height, width = (int(s) for s in original_size)
    images.append({"id": int(image_id), "height": height, "width": width})
    real = classes >= 0
    for bbox, cls, crowd, box_area in zip(box_lib.coco_bboxes(boxes[real]), classes[real], is_crowd[real], area[real]):
        annotations.append({"id": len(annotations) + 1, "image_id": int(image_id),
                            "category_id": label_map[cls]["id"], "bbox": bbox,
                            "area": float(box_area), "iscrowd": int(crowd)})


def evaluate_deployed(deployed, examples, label_map, max_images=None, keep=False):
    """COCO metrics of a LiteRT / ONNX file (`runtime.DeployedModel`) on a source's
    examples (uint8 pictures, boxes in their pixels), each picture letterboxed into the file's
    fixed input. The file's category ids must be the label map's. With `keep`: (metrics,
    Evaluation)."""
    ids = {entry["id"] for entry in label_map}
    if {entry["id"] for entry in deployed.label_map} != ids:
        raise DataError(f"{deployed.path}: its classes are not the evaluation data's label map's.")
    images, annotations, results = [], [], []
    for count, example in enumerate(examples):
        if max_images is not None and count >= max_images:
            break
        example = {k: v.numpy() for k, v in example.items()}
        pixels = example["image"]
        _add_ground_truth(images, annotations, label_map, example["image_id"], pixels.shape[:2], example["boxes"],
                          classes=example["classes"], is_crowd=example["is_crowd"], area=example["area"])
        boxes, scores, classes, _ = deployed.detect_picture(pixels)
        pixel_boxes = boxes * np.array([*pixels.shape[:2], *pixels.shape[:2]], np.float32)
        for bbox, score, category in zip(box_lib.coco_bboxes(pixel_boxes), scores, classes):
            results.append({"image_id": int(example["image_id"]), "category_id": int(category),
                            "bbox": bbox, "score": float(score)})
    categories = [{"id": entry["id"], "name": entry["name"]} for entry in label_map]
    return _scored({"images": images, "annotations": annotations, "categories": categories}, results, label_map,
                   keep)


def run_cocoeval(ground_truth, results):
    """pycocotools' COCOeval (bbox) after evaluate() and accumulate(), quietly. Without results
    the evaluation still runs on the ground truth (every box missed; cocoDt None)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results) if results else None
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        if coco_dt is None:
            evaluator.params.imgIds = sorted(coco_gt.getImgIds())
            evaluator.params.catIds = sorted(coco_gt.getCatIds())
            evaluator.evalImgs = []
            evaluator.eval = {"precision": -np.ones((len(evaluator.params.iouThrs), len(evaluator.params.recThrs),
                                                      len(evaluator.params.catIds), len(evaluator.params.areaRng),
                                                      len(evaluator.params.maxDets)))}
            has_gt = {a["category_id"] for a in ground_truth["annotations"] if not a.get("iscrowd")}
            for k, category in enumerate(evaluator.params.catIds):
                if category in has_gt:
                    evaluator.eval["precision"][:, :, k] = 0.0
            return evaluator
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def coco_metrics(ground_truth, results, label_map, evaluator=None):
    """pycocotools COCOeval (bbox) -> dict of METRIC_NAMES plus `per_class_AP`."""
    evaluator = evaluator or run_cocoeval(ground_truth, results)
    if evaluator.cocoDt is None:
        empty = dict.fromkeys(METRIC_NAMES, 0.0)
        return {**empty, "per_class_AP": {e["name"]: 0.0 for e in label_map}}
    metrics = {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats)}
    # precision: [IoU thresholds, recall points, classes, area ranges, max dets]
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, category_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k]
        values = values[values > -1]
        name = next(e["name"] for e in label_map if e["id"] == category_id)
        per_class[name] = float(values.mean()) if values.size else float("nan")
    metrics["per_class_AP"] = per_class
    return metrics


def _scored(ground_truth, results, label_map, keep):
    evaluator = run_cocoeval(ground_truth, results)
    metrics = coco_metrics(ground_truth, results, label_map, evaluator)
    metrics["num_images"] = len(ground_truth["images"])
    return (metrics, Evaluation(ground_truth, results, evaluator, metrics)) if keep else metrics


def evaluate_coco(model, dataset, label_map, keep=False):
    """The metrics of `model` on an `eval_dataset`; with `keep`: (metrics, Evaluation)."""
    ground_truth, results = collect_detections(model, dataset, label_map)
    return _scored(ground_truth, results, label_map, keep)


def format_metrics(metrics):
    """A readable block: the 12 numbers on two lines, then the per-class AP table."""
    lines = ["  ".join(f"{n} {metrics[n]:.3f}" for n in METRIC_NAMES[:6]),
             "  ".join(f"{n} {metrics[n]:.3f}" for n in METRIC_NAMES[6:])]
    width = max([len(name) for name in metrics["per_class_AP"]] + [5])
    lines.append(f"{'class':<{width}}  AP")
    lines += [f"{name:<{width}}  {ap:.3f}" for name, ap in metrics["per_class_AP"].items()]
    return "\n".join(lines)


def unmatched_detections(reference, candidate, min_score=0.5, min_iou=0.9):
    """Detections of `reference` scoring >= `min_score` that `candidate` lacks.

    Both are `detect` outputs for the same images ({"boxes", "scores", "classes",
    "num_detections"}, numpy). A reference detection counts as present when the
    candidate has one of the same class with IoU >= `min_iou` and a score that is
    itself >= `min_score` - 0.05. This checks that a lower precision
    (bfloat16) finds the same objects as float32. Returns (number checked,
    [(image index, class, box)] missing).
    """
    checked, missing = 0, []
    for i in range(len(reference["num_detections"])):
        n_ref, n_cand = int(reference["num_detections"][i]), int(candidate["num_detections"][i])
        keep = reference["scores"][i, :n_ref] >= min_score
        boxes = np.asarray(reference["boxes"][i, :n_ref][keep], np.float32)
        classes = reference["classes"][i, :n_ref][keep]
        candidates = np.asarray(candidate["boxes"][i, :n_cand], np.float32)
        good = candidate["scores"][i, :n_cand] >= min_score - 0.05
        for box, cls in zip(boxes, classes):
            checked += 1
            if n_cand:
                iou = np.asarray(box_lib.pairwise_iou(box[None], candidates))[0]
                if np.any((iou >= min_iou) & (candidate["classes"][i, :n_cand] == cls) & good):
                    continue
            missing.append((i, int(cls), box.round(1).tolist()))
    return checked, missing
