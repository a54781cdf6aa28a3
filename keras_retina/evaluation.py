"""COCO detection metrics through pycocotools, per-class AP, and a Keras callback.

`evaluate_coco(model, dataset, label_map)` runs `model.detect` over an
`eval_dataset` (see `data.pipeline`), maps boxes back to each original image
(`input_mapping.to_original`, then yxyx -> COCO xywh) and classes back to the
dataset's own category ids, builds the ground truth from the same stream (crowd
flags and areas included, so one path serves COCO JSON, TFDS and TFRecords) and
runs pycocotools' COCOeval. Returns the 12 standard numbers under the names
below, plus `per_class_AP` {class name: AP at IoU .50:.95}.
"""

import contextlib
import io
import time

import keras
import numpy as np
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_retina import boxes as box_lib
from keras_retina import input_mapping
from keras_retina.errors import DataError
from keras_retina.run_dir import write_json

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def collect_detections(model, dataset, label_map):
    """Runs the model; returns (COCO ground-truth dict, list of COCO result dicts)."""
    images, annotations, results = [], [], []
    detect = tf.function(model.detect, reduce_retracing=True)
    for batch_images, meta in dataset:
        out = {k: v.numpy() for k, v in detect(batch_images, meta["picture_size"]).items()}
        meta = {k: v.numpy() for k, v in meta.items()}
        for i, image_id in enumerate(meta["image_id"]):
            if image_id < 0:
                continue
            _add_ground_truth(images, annotations, label_map, image_id, meta["original_size"][i], meta["boxes"][i],
                              meta["classes"][i], meta["is_crowd"][i], meta["area"][i])
            n = int(out["num_detections"][i])
            boxes = input_mapping.to_original(out["boxes"][i, :n], meta["scale"][i], meta["original_size"][i],
                                              resized_hw=meta["picture_size"][i])
            for bbox, score, cls in zip(coco_bboxes(boxes), out["scores"][i, :n], out["classes"][i, :n]):
                results.append({"image_id": int(image_id), "category_id": label_map[cls]["id"],
                                "bbox": bbox, "score": float(score)})
    categories = [{"id": entry["id"], "name": entry["name"]} for entry in label_map]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _add_ground_truth(images, annotations, label_map, image_id, original_size, boxes, classes, is_crowd, area):
    """Appends one image and its labelled boxes (class >= 0; yxyx pixels) to COCO ground-truth lists."""
    height, width = (int(s) for s in original_size)
    images.append({"id": int(image_id), "height": height, "width": width})
    real = classes >= 0
    for bbox, cls, crowd, box_area in zip(coco_bboxes(boxes[real]), classes[real], is_crowd[real], area[real]):
        annotations.append({"id": len(annotations) + 1, "image_id": int(image_id),
                            "category_id": label_map[cls]["id"], "bbox": bbox,
                            "area": float(box_area), "iscrowd": int(crowd)})


def evaluate_deployed(deployed, examples, label_map, max_images=None):
    """COCO metrics of a LiteRT / ONNX file (`deployed_model.DeployedModel`) on a source's
    examples (uint8 pictures, boxes in their pixels), each picture letterboxed into the file's
    fixed input. The file's category ids must be the label map's."""
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
                          example["classes"], example["is_crowd"], example["area"])
        boxes, scores, classes, _ = deployed.detect_picture(pixels)
        pixel_boxes = boxes * np.array([*pixels.shape[:2], *pixels.shape[:2]], np.float32)
        for bbox, score, category in zip(coco_bboxes(pixel_boxes), scores, classes):
            results.append({"image_id": int(example["image_id"]), "category_id": int(category),
                            "bbox": bbox, "score": float(score)})
    categories = [{"id": entry["id"], "name": entry["name"]} for entry in label_map]
    metrics = coco_metrics({"images": images, "annotations": annotations, "categories": categories}, results,
                           label_map)
    metrics["num_images"] = len(images)
    return metrics


def coco_bboxes(boxes):
    """`[D, 4]` yxyx pixels -> D COCO `[x, y, width, height]` lists (one conversion per image)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.asarray(box_lib.yxyx_to_xywh(boxes)).tolist() if len(boxes) else []


def coco_metrics(ground_truth, results, label_map):
    """pycocotools COCOeval (bbox) -> dict of METRIC_NAMES plus `per_class_AP`."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = ground_truth
        coco_gt.createIndex()
        if not results:
            empty = {name: 0.0 for name in METRIC_NAMES}
            return {**empty, "per_class_AP": {e["name"]: 0.0 for e in label_map}}
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
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


def evaluate_coco(model, dataset, label_map):
    ground_truth, results = collect_detections(model, dataset, label_map)
    metrics = coco_metrics(ground_truth, results, label_map)
    metrics["num_images"] = len(ground_truth["images"])
    return metrics


def format_metrics(metrics):
    """A readable block: the 12 numbers on two lines, then the per-class AP table."""
    lines = ["  ".join(f"{n} {metrics[n]:.3f}" for n in METRIC_NAMES[:6]),
             "  ".join(f"{n} {metrics[n]:.3f}" for n in METRIC_NAMES[6:])]
    width = max([len(name) for name in metrics["per_class_AP"]] + [5])
    lines.append(f"{'class':<{width}}  AP")
    lines += [f"{name:<{width}}  {ap:.3f}" for name, ap in metrics["per_class_AP"].items()]
    return "\n".join(lines)


def unmatched_detections(reference, candidate, score_threshold=0.5, min_iou=0.9):
    """Detections of `reference` scoring >= `score_threshold` that `candidate` lacks.

    Both are `detect` outputs for the same images ({"boxes", "scores", "classes",
    "num_detections"}, numpy). A reference detection counts as present when the
    candidate has one of the same class with IoU >= `min_iou` and a score that is
    itself >= `score_threshold` - 0.05. Used to check that a faster precision
    (bfloat16) finds the same objects as float32. Returns (number checked,
    [(image index, class, box)] missing).
    """
    checked, missing = 0, []
    for i in range(len(reference["num_detections"])):
        n_ref, n_cand = int(reference["num_detections"][i]), int(candidate["num_detections"][i])
        keep = reference["scores"][i, :n_ref] >= score_threshold
        boxes = np.asarray(reference["boxes"][i, :n_ref][keep], np.float32)
        classes = reference["classes"][i, :n_ref][keep]
        candidates = np.asarray(candidate["boxes"][i, :n_cand], np.float32)
        good = candidate["scores"][i, :n_cand] >= score_threshold - 0.05
        for box, cls in zip(boxes, classes):
            checked += 1
            if n_cand:
                iou = np.asarray(box_lib.pairwise_iou(box[None], candidates))[0]
                if np.any((iou >= min_iou) & (candidate["classes"][i, :n_cand] == cls) & good):
                    continue
            missing.append((i, int(cls), box.round(1).tolist()))
    return checked, missing


class CocoEvaluation(keras.callbacks.Callback):
    """Evaluates every `every_steps` optimizer steps (checked at epoch ends) and at the end.

    Prints one line per evaluation, writes `model_dir/eval/metrics-<step>.json` (`RunDir`)
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
        metrics = evaluate_coco(self.model, self.dataset, self.label_map)
        metrics["step"] = step
        write_json(metrics, self.run_dir.metrics_path(step))
        print(f"\n[eval] step {step}: AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  "
              f"AP75 {metrics['AP75']:.3f}  on {metrics['num_images']} images "
              f"({time.time() - start:.0f}s)", flush=True)
        if self.summary_writer is not None:
            with self.summary_writer.as_default(step=step):
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
