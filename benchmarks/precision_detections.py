"""A converted torchvision RetinaNet's detections in bfloat16 against float32 on real photographs.

    pip install -e ".[torch]"        # torch, torchvision, scikit-image's photographs
    python benchmarks/precision_detections.py

torchvision's retinanet_resnet50_fpn_v2 with random weights given a trained network's statistics
(BatchNorm variances of order 1 with one channel in 16 nearly dead, scales in proportion, head
convolutions scaled so that the logits depend on the picture, classification biases around -6 so
that detections pass 0.05; no COCO weights download here) is converted into our RetinaNet twice,
under the float32 and the mixed_bfloat16 policy: the same weights. Both run the exported
serving path (`DetectionServer.serve_image_tensor`) on scikit-image's photographs; for each
float32 detection (all the decoder keeps, score >= 0.05, and those >= 0.3) we look for a bfloat16
detection of its class at IoU >= 0.5 and >= 0.9, and report the score differences of the matches.
Results go to benchmarks/results/precision_detections.json.
"""

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.modules.setdefault("triton", None)  # torch's optional GPU compiler: not needed, slow to import

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from skimage import data as skimage_data  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from torch_weights import trained_like  # noqa: E402

from keras_retina.data.coco_categories import LABEL_MAP  # noqa: E402
from keras_retina.deploy.saved_model import DetectionServer  # noqa: E402
from keras_retina.modeling import precision  # noqa: E402
from keras_retina.ops.boxes import pairwise_iou  # noqa: E402
from keras_retina.pretrained.convert import build_converted  # noqa: E402

import results  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def detections(server, photo):
    out = server.serve_image_tensor(tf.constant(photo[None]))
    n = int(out["num_detections"][0])
    return (out["detection_boxes"][0, :n].numpy(), out["detection_scores"][0, :n].numpy(),
            out["detection_classes"][0, :n].numpy())


def compare(reference, other, floor):
    """Of `reference`'s detections scoring >= floor: how many have one of `other`'s of their class at
    IoU >= 0.5 and >= 0.9, and the score differences of the IoU >= 0.5 matches."""
    boxes, scores, classes = reference
    kept = scores >= floor
    boxes, scores, classes = boxes[kept], scores[kept], classes[kept]
    if not len(scores) or not len(other[1]):
        return {"count": int(len(scores)), "iou50": 0, "iou90": 0, "score_differences": []}
    iou = pairwise_iou(tf.constant(boxes), tf.constant(other[0])).numpy()
    iou = np.where(classes[:, None] == other[2][None, :], iou, 0.0)
    best = iou.argmax(axis=1)
    found = iou[np.arange(len(scores)), best]
    differences = np.abs(scores - other[1][best])[found >= 0.5]
    return {"count": int(len(scores)), "iou50": int((found >= 0.5).sum()), "iou90": int((found >= 0.9).sum()),
            "score_differences": [float(d) for d in differences]}


def main():
    torch.manual_seed(0)
    detector = trained_like(torchvision.models.detection.retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None),
                            seed=0, logit_bias=(-6.5, -5.5))
    photos = {name: getattr(skimage_data, name)() for name in PHOTOS}
    photos = {name: (np.stack([p] * 3, -1) if p.ndim == 2 else p[..., :3]) for name, p in photos.items()}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "v2.pth")
        torch.save(detector.state_dict(), path)
        servers = {}
        for name, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
            keras.mixed_precision.set_global_policy(policy)
            try:
                model, _, _ = build_converted("torchvision", path)
            finally:
                keras.mixed_precision.set_global_policy("float32")
            servers[name] = DetectionServer(model, LABEL_MAP)
    rows, figures = [], {}
    for floor in (0.05, 0.3):
        totals = {"count": 0, "iou50": 0, "iou90": 0, "score_differences": []}
        for name, photo in photos.items():
            found = {p: detections(server, photo) for p, server in servers.items()}
            result = compare(found["float32"], found["bfloat16"], floor)
            figures[f"{name} >= {floor}"] = result
            for key in ("count", "iou50", "iou90"):
                totals[key] += result[key]
            totals["score_differences"] += result["score_differences"]
        differences = np.array(totals["score_differences"] or [0.0])
        count = max(totals["count"], 1)
        rows.append([f">= {floor}", totals["count"], f"{totals['iou50']} ({totals['iou50'] / count:.1%})",
                     f"{totals['iou90']} ({totals['iou90'] / count:.1%})",
                     f"{np.median(differences):.4f}", f"{np.percentile(differences, 99):.4f}",
                     f"{differences.max():.4f}"])
        print(rows[-1], flush=True)
    cpu, flags = precision.cpu_info()
    table = {"caption": "", "columns": ["float32 detections scoring", "count", "with a bfloat16 twin at IoU >= 0.5",
                                        "at IoU >= 0.9", "score difference, median", "99th percentile", "largest"],
             "rows": rows}
    description = ("torchvision's retinanet_resnet50_fpn_v2 with random weights given a trained network's "
                   "statistics, converted into our RetinaNet under the float32 and the mixed_bfloat16 policy (the "
                   f"same weights), on scikit-image's photographs ({', '.join(PHOTOS)}) through the serving path at "
                   "its 800/1333 scale; each float32 detection against the bfloat16 ones of its class. "
                   f"{precision.cpu_label(cpu, flags)}.")
    results.write("precision_detections", "A converted model's detections in bfloat16 against float32", description,
                  [table], [], figures)


if __name__ == "__main__":
    main()
