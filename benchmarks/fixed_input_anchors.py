"""What a fixed input costs a converted torchvision model: its anchors follow the canvas.

torchvision places the anchors of a level at multiples of (padded side // grid side): at 800 rows
the P6 stride is 800 // 13 = 61, in a 1344 x 1344 LiteRT / ONNX input 1344 // 21 = 64. A picture
letterboxed into the fixed input therefore meets other P6/P7 anchors than torchvision (and our
SavedModel, which pads each picture to its own tight canvas) give it. Our own geometry
(stride 2^level) has no such dependence. This compares, on one photo, the detections of the
SavedModel's serving function with those of the fixed-size graph the files hold (run in
TensorFlow: the same graph LiteRT and ONNX run) at

- the default square input (a square of the model's longer side L, 1344 at 800/1333), and
- an input of the photo's own tight canvas (what `--input_size` can give a camera of one aspect),

for the torchvision geometry and, as a control with the same network and padding, ours.

    pip install -e ".[torch]"     # scikit-image's astronaut photograph; random weights otherwise
    python benchmarks/fixed_input_anchors.py

Weights are random (no COCO weights download here) with BatchNorm statistics like a trained
network's; each row reports how many of the SavedModel's detections (all it keeps, score >= 0.05) the
fixed-size graph finds (same class, IoU >= 0.5 and >= 0.9) and at which pyramid level the
missed ones sit. The results go to benchmarks/results/fixed_input_anchors.json.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_retina import RetinaNet  # noqa: E402
from keras_retina.data.coco_categories import LABEL_MAP  # noqa: E402
from keras_retina.deploy import fixed_size_detector  # noqa: E402
from keras_retina.deploy.saved_model import DetectionServer  # noqa: E402
from keras_retina.modeling import transform  # noqa: E402
from keras_retina.modeling.backbone import FoldedConvBatchNorm  # noqa: E402
from keras_retina.ops import boxes as box_lib  # noqa: E402
from keras_retina.pretrained.published_weights import variant_settings  # noqa: E402

import results  # noqa: E402

SCORE = 0.05  # every detection the model keeps (random weights score low)


def _photo():
    try:
        from skimage import data

        return data.astronaut()[:500, :370]  # 500 x 370: 1081 x 800 in a 1088 x 800 canvas
    except ImportError:
        rng = np.random.default_rng(0)
        smooth = tf.image.resize(rng.integers(0, 256, (25, 19, 3)).astype(np.float32), (500, 370)).numpy()
        return np.clip(smooth + rng.normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)


def _randomise(model, seed=0):
    """Trained-looking statistics: variances of order 1 (one channel in 16 nearly dead), scales in
    proportion, conv biases small, the classification bias around -3 so some anchors fire."""
    rng = np.random.default_rng(seed)
    for layer in model.backbone.layers:
        bn = layer.bn if isinstance(layer, FoldedConvBatchNorm) else layer
        if isinstance(bn, tf.keras.layers.BatchNormalization) or hasattr(bn, "moving_variance"):
            n = bn.moving_variance.shape[0]
            variance = np.exp(rng.uniform(np.log(0.2), np.log(5.0), n))
            dead = rng.random(n) < 1 / 16
            variance[dead] = rng.uniform(1e-4, 1e-3, dead.sum())
            bn.moving_variance.assign(variance.astype(np.float32))
            bn.moving_mean.assign(rng.uniform(-0.1, 0.1, n).astype(np.float32))
            bn.gamma.assign((rng.uniform(0.5, 1.0, n) * np.sqrt(variance)).astype(np.float32))
            bn.beta.assign(rng.uniform(-0.1, 0.1, n).astype(np.float32))
    for head in (model.classification_head, model.box_head):
        for conv in head.hidden:
            conv.kernel.assign(conv.kernel * 3.0)
    bias = model.classification_head.output_conv.bias
    bias.assign(rng.uniform(-3.5, -2.5, bias.shape).astype(np.float32))


def _match(reference, candidate):
    """(found at IoU 0.5, found at IoU 0.9, [levels of the reference boxes missed at 0.9])."""
    (boxes, scores, classes), (their_boxes, _, their_classes) = reference, candidate
    keep = scores >= SCORE
    found5 = found9 = 0
    missed = []
    for box, cls in zip(boxes[keep], classes[keep]):
        same = their_classes == cls
        iou = np.asarray(box_lib.pairwise_iou(box[None], their_boxes[same]))[0] if same.any() else np.zeros(1)
        found5 += bool(iou.max() >= 0.5)
        found9 += bool(iou.max() >= 0.9)
        if iou.max() < 0.9:
            size = np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1.0))
            missed.append(int(np.clip(np.round(np.log2(size / 4)), 3, 7)))  # the level its anchors sit on
    return int(keep.sum()), found5, found9, missed


def main():
    photo = _photo()
    rows = []
    for geometry in ("torchvision", "centered"):
        tf.keras.utils.set_random_seed(0)
        settings = dict(variant_settings("torchvision", 50, v2=True), anchor_geometry=geometry)
        model = RetinaNet(num_classes=len(LABEL_MAP), **settings)
        _randomise(model)
        server = DetectionServer(model, LABEL_MAP)
        served = {k: v.numpy()[0] for k, v in server.serve_image_tensor(tf.constant(photo[None])).items()}
        n = int(served["num_detections"])
        size = np.array([*photo.shape[:2], *photo.shape[:2]], np.float32)
        reference = (served["detection_boxes"][:n] * size, served["detection_scores"][:n],
                     served["detection_classes"][:n].astype(int))
        canvas = tuple(int(transform.round_up(s)) for s in transform.resized_size(
            *photo.shape[:2], model.resize_policy.scale(*photo.shape[:2]), model.resize_policy.rounding).numpy())
        for input_size in (fixed_size_detector.default_input_size(model.resize_policy), canvas):
            detect = fixed_size_detector.detection_function(model, LABEL_MAP, input_size)
            image, scale = transform.letterbox(photo, input_size, model.resize_policy)
            out = {k: v.numpy()[0] for k, v in detect(tf.constant(image[None])).items()}
            m = int(out["num_detections"])
            boxes = transform.to_picture(out["detection_boxes"][:m], scale, input_size, photo.shape[:2],
                                         model.resize_policy.rounding) * size
            checked, found5, found9, missed = _match(reference, (boxes, out["detection_scores"][:m],
                                                                 out["detection_classes"][:m].astype(int)))
            rows.append({"geometry": geometry, "input": f"{input_size[0]}x{input_size[1]}",
                         "detections_checked": checked, "found_iou50": found5, "found_iou90": found9,
                         "missed_by_level": {f"P{lv}": missed.count(lv) for lv in sorted(set(missed))}})
            print(rows[-1], flush=True)
    table = {"columns": ["anchor geometry", "file input", "SavedModel detections", "found, IoU >= 0.5",
                         "found, IoU >= 0.9", "missed at IoU 0.9, by level"],
             "rows": [[r["geometry"], r["input"], r["detections_checked"], r["found_iou50"], r["found_iou90"],
                       ", ".join(f"{k}: {v}" for k, v in r["missed_by_level"].items()) or "-"] for r in rows]}
    results.write("fixed_input_anchors", "Fixed-input files of a converted torchvision model",
                  f"A converted torchvision v2 model (random weights, BatchNorm statistics like a trained network's) "
                  f"on a {photo.shape[0]}x{photo.shape[1]} photo: the SavedModel's detections against those of the "
                  f"fixed-size graph LiteRT and ONNX files hold (run in TensorFlow), at the default square input and "
                  f"at "
                  f"the photo's own tight canvas; our own anchor geometry on the same network as the control "
                  f"(docs/deployment.md).", [table], figures={"rows": rows, "score_threshold": SCORE})


if __name__ == "__main__":
    main()
