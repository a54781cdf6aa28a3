import json

import numpy as np
import pytest
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_retina.data import pipeline
from keras_retina.data.readers import coco_json
from keras_retina.evaluation import coco_metrics
from keras_retina.modeling.transform import ResizePolicy

LABEL_MAP = [{"id": 3, "name": "cat"}, {"id": 8, "name": "dog"}]


def _ground_truth():
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for image_id in range(1, 6):
        images.append({"id": image_id, "height": 200, "width": 300})
        for _ in range(3):
            x, y = rng.uniform(0, 150, 2)
            w, h = rng.uniform(20, 120, 2)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(rng.choice([3, 8])), "bbox": [x, y, w, h],
                                "area": w * h, "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": e["id"], "name": e["name"]} for e in LABEL_MAP]}


def test_perfect_detections_give_ap_1():
    gt = _ground_truth()
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "score": 1.0} for a in gt["annotations"]]
    metrics = coco_metrics.coco_metrics(gt, results, LABEL_MAP)
    for name in ("AP", "AP50", "AP75", "AR100"):
        assert metrics[name] == pytest.approx(1.0), name
    assert metrics["per_class_AP"] == {"cat": pytest.approx(1.0), "dog": pytest.approx(1.0)}


def test_agrees_with_pycocotools_called_directly(tmp_path):
    gt = _ground_truth()
    rng = np.random.default_rng(1)
    results = []
    for a in gt["annotations"]:
        for _ in range(2):  # noisy detections, some with the wrong class
            x, y, w, h = np.asarray(a["bbox"]) + rng.normal(0, 8, 4)
            results.append({"image_id": a["image_id"], "bbox": [x, y, abs(w) + 1, abs(h) + 1],
                            "category_id": int(rng.choice([3, 8])), "score": float(rng.uniform())})
    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(results))
    coco_gt = COCO(str(gt_path))
    direct = COCOeval(coco_gt, coco_gt.loadRes(str(dt_path)), "bbox")
    direct.evaluate()
    direct.accumulate()
    direct.summarize()
    ours = coco_metrics.coco_metrics(gt, results, LABEL_MAP)
    assert [ours[n] for n in coco_metrics.METRIC_NAMES] == pytest.approx(list(direct.stats), abs=1e-9)
    assert 0.05 < ours["AP"] < 0.95  # a non-trivial case


class _PixelDetector:
    """A 'perfect' detector for images with one bright box: reads the box off the pixels."""

    def detect(self, images, picture_sizes=None):
        bright = tf.reduce_mean(images, -1) > 127.0  # [B, H, W]
        rows = tf.reduce_any(bright, 2)
        cols = tf.reduce_any(bright, 1)

        def span(mask):
            index = tf.cast(tf.range(tf.shape(mask)[1]), tf.float32)[None]
            big = tf.fill(tf.shape(mask), 1e9)
            return (tf.reduce_min(tf.where(mask, index, big), 1),
                    tf.reduce_max(tf.where(mask, index + 1, -big), 1))

        (y0, y1), (x0, x1) = span(rows), span(cols)
        boxes = tf.stack([y0, x0, y1, x1], -1)[:, None]
        return {"boxes": boxes, "scores": tf.ones_like(y0)[:, None],
                "classes": tf.ones_like(y0, tf.int32)[:, None],
                "num_detections": tf.ones_like(y0, tf.int32)}


def test_pipeline_maps_detections_back_to_original_images(tmp_path):
    """Resize/pad, scale back, clip and category-id mapping: a perfect detector scores AP50 = 1."""
    from PIL import Image

    (tmp_path / "img").mkdir()
    images, annotations = [], []
    for image_id, (h, w, box) in enumerate([(200, 300, [40, 30, 120, 90]), (120, 80, [10, 20, 50, 60]),
                                            (256, 256, [0, 0, 256, 128])], start=1):
        pixels = np.zeros((h, w, 3), np.uint8)
        x, y, bw, bh = box
        pixels[y:y + bh, x:x + bw] = 255
        Image.fromarray(pixels).save(tmp_path / "img" / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": h, "width": w})
        annotations.append({"id": image_id, "image_id": image_id, "category_id": 8, "bbox": box,
                            "area": bw * bh, "iscrowd": 0})
    (tmp_path / "val.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": LABEL_MAP}))
    source = coco_json.read_coco_json(str(tmp_path / "val.json"), str(tmp_path / "img"))
    batches = pipeline.eval_dataset(source, ResizePolicy(128, policy="square"), 2)
    metrics = coco_metrics.evaluate_coco(_PixelDetector(), batches, source.label_map)
    assert metrics["num_images"] == 3
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == pytest.approx(1.0)
    assert metrics["per_class_AP"]["dog"] > 0.7 and np.isnan(metrics["per_class_AP"]["cat"])
    # a user's own batches in other dtypes (docs/python-api.md): uint8 pictures, int64 sizes
    import tensorflow as tf

    theirs = batches.map(lambda images, meta: (tf.cast(images, tf.uint8),
                                               {**meta, "picture_size": tf.cast(meta["picture_size"], tf.int64)}))
    assert coco_metrics.evaluate_coco(_PixelDetector(), theirs, source.label_map)["AP50"] == pytest.approx(1.0)


def test_format_metrics_lists_every_number():
    metrics = {**dict.fromkeys(coco_metrics.METRIC_NAMES, 0.5), "per_class_AP": {"cat": 0.25}}
    text = coco_metrics.format_metrics(metrics)
    assert all(n in text for n in coco_metrics.METRIC_NAMES) and "cat" in text and "0.250" in text


def test_detect_is_compiled_once_per_model_and_held_weakly():
    """Evaluations during training reuse one graph: the same function for the same model, traced
    once for every batch size and canvas, and gone with its model."""
    import gc
    import weakref

    import tensorflow as tf

    from keras_retina import RetinaNet

    from conftest import TINY

    model = RetinaNet(**TINY, num_classes=2)
    detect = coco_metrics.compiled_detect(model)
    assert coco_metrics.compiled_detect(model) is detect
    for shape in ((2, 64, 96), (2, 96, 64), (2, 64, 64), (2, 64, 96), (2, 96, 64)):
        detect(tf.zeros((*shape, 3)), tf.constant([shape[1:]] * 2))
    assert detect.experimental_get_tracing_count() == 1
    held = weakref.ref(model)
    del model, detect
    gc.collect()
    assert held() is None and not coco_metrics._COMPILED
