"""Large pictures with small objects: AP of `predict --tile` against the whole picture at the model's scale.

The model is the demo's (the README's main command, `runs/demo`: trained on 96-128 pixel
pictures of coloured shapes 20-60 pixels across). The test pictures are "orthophotos": 1536 x
1536 canvases of the demo's noisy background holding 100 shapes each, 16-40 pixels across, at
known places. Shrunk whole to the model's 128 pixels the shapes are 1-3 pixels; cut into tiles
of the model's size they keep their own. Both runs use the same detector
(`inference.detector.batch_detector`); AP is pycocotools' on the shapes' boxes.

    python benchmarks/tiled_detection.py --model_dir=runs/demo [--pictures=4]

Writes benchmarks/results/tiled_detection.json and docs/images/tiled_detection.jpg (a crop of
one picture, detected by tiles).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_retina.data import synthetic  # noqa: E402
from keras_retina.evaluation.coco_metrics import coco_metrics  # noqa: E402
from keras_retina.inference.detector import batch_detector  # noqa: E402
from keras_retina.inference.tiling import detect_tiled  # noqa: E402
from keras_retina.model_dir import ModelDir  # noqa: E402
from keras_retina.ops import drawing  # noqa: E402
from keras_retina.ops.large_picture import ArrayPicture  # noqa: E402

import results  # noqa: E402

SIDE, OBJECTS = 1536, 100
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def orthophoto(rng, num_classes):
    """(uint8 [SIDE, SIDE, 3], boxes [N, 4] yxyx, classes [N]): shapes that do not overlap."""
    image = rng.normal(110.0, 20.0, (SIDE, SIDE, 3)).clip(0, 255)
    boxes, classes, taken = [], [], np.zeros((SIDE // 8, SIDE // 8), bool)
    while len(boxes) < OBJECTS:
        h, w = rng.uniform(16, 40, 2)
        y0, x0 = rng.uniform(0, SIDE - h), rng.uniform(0, SIDE - w)
        cells = taken[int(y0 // 8):int((y0 + h) // 8) + 2, int(x0 // 8):int((x0 + w) // 8) + 2]
        if cells.any():
            continue
        cells[...] = True
        cls = int(rng.integers(0, num_classes))
        box = np.array([y0, x0, y0 + h, x0 + w])
        window = image[int(y0):int(y0 + h) + 2, int(x0):int(x0 + w) + 2]  # draw in a window: fast
        synthetic._draw(window, box - [int(y0), int(x0), int(y0), int(x0)], *synthetic.CLASSES[cls])
        boxes.append(box)
        classes.append(cls)
    return image.astype(np.uint8), np.array(boxes), np.array(classes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", default="runs/demo")
    parser.add_argument("--pictures", type=int, default=4)
    parser.add_argument("--tile", type=int, default=128)
    args = parser.parse_args()
    run = ModelDir(args.model_dir)
    label_map = run.read_label_map()
    detect = batch_detector(model_dir=args.model_dir)
    rng = np.random.default_rng(0)
    truth = {"images": [], "annotations": [], "categories": [dict(e) for e in label_map]}
    found = {"whole": [], "tiles": [], "tiles_merge": []}
    seconds = dict.fromkeys(found, 0.0)
    for image_id in range(1, args.pictures + 1):
        pixels, boxes, classes = orthophoto(rng, len(label_map))
        truth["images"].append({"id": image_id, "height": SIDE, "width": SIDE})
        for (y0, x0, y1, x1), cls in zip(boxes, classes):
            truth["annotations"].append({"id": len(truth["annotations"]) + 1, "image_id": image_id,
                                         "category_id": label_map[cls]["id"], "bbox": [x0, y0, x1 - x0, y1 - y0],
                                         "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        start = time.perf_counter()
        (b, s, c, _), = detect(pixels[None])
        seconds["whole"] += time.perf_counter() - start
        found["whole"] += _results(image_id, np.asarray(b) * SIDE, s, c)
        for name, merge in (("tiles", "nms"), ("tiles_merge", "merge")):
            start = time.perf_counter()
            tiled = detect_tiled(detect, ArrayPicture(pixels), args.tile, overlap=0.25, merge=merge)
            seconds[name] += time.perf_counter() - start
            found[name] += _results(image_id, tiled.boxes, tiled.scores, tiled.classes)
        if image_id == 1:
            crop = tiled.boxes[(tiled.boxes[:, 2] <= 512) & (tiled.boxes[:, 3] <= 768)]
            keep = (tiled.boxes[:, 2] <= 512) & (tiled.boxes[:, 3] <= 768)
            picture = drawing.draw_detections(pixels[:512, :768], crop / [512, 768, 512, 768], tiled.scores[keep],
                                              [n for n, k in zip(tiled.names, keep) if k], 0.3, tiled.classes[keep])
            os.makedirs(os.path.join(ROOT, "docs", "images"), exist_ok=True)
            picture.save(os.path.join(ROOT, "docs", "images", "tiled_detection.jpg"), quality=85)
            tiles = tiled.tiles
    metrics = {name: coco_metrics(truth, items, label_map) for name, items in found.items()}
    for name in found:
        print(f"{name}: AP {metrics[name]['AP']:.3f}, AP50 {metrics[name]['AP50']:.3f}, "
              f"{seconds[name] / args.pictures:.2f} s per picture", flush=True)
    rows = [[label, round(metrics[name]["AP"], 3), round(metrics[name]["AP50"], 3),
             round(seconds[name] / args.pictures, 2)]
            for name, label in (("whole", "whole picture at the model's scale"),
                                ("tiles", f"--tile={args.tile} --tile_overlap=0.25 (nms)"),
                                ("tiles_merge", f"--tile={args.tile} --tile_overlap=0.25 --tile_merge=merge"))]
    gain = metrics["tiles"]["AP"] - metrics["whole"]["AP"]
    results.write(
        "tiled_detection", "Large pictures by tiles",
        f"The demo model on {args.pictures} generated 1536 x 1536 'orthophotos', each holding {OBJECTS} shapes "
        f"16-40 pixels across (benchmarks/tiled_detection.py): the whole picture shrunk to the model's scale "
        f"against tiles of the model's own size ({tiles} tiles per picture).",
        [{"caption": f"AP on {args.pictures * OBJECTS} objects", "columns": ["predict", "AP", "AP50",
                                                                          "seconds per picture"], "rows": rows}],
        notes=[f"Tiles add {gain:.3f} AP: shrunk whole, the shapes are 1-3 pixels and the model finds "
               f"{'none' if metrics['whole']['AP50'] < 0.01 else 'few'} of them.",
               f"--tile_merge=merge changes AP by {metrics['tiles_merge']['AP'] - metrics['tiles']['AP']:+.3f} and "
               f"AP50 by {metrics['tiles_merge']['AP50'] - metrics['tiles']['AP50']:+.3f} here: the shapes are at "
               f"most 40 pixels and the tiles overlap by {round(args.tile * 0.25)}, so most shapes are whole in "
               f"some tile; merging is for objects larger than the overlap."],
        figures={name: {"AP": metrics[name]["AP"], "AP50": metrics[name]["AP50"],
                        "seconds_per_picture": seconds[name] / args.pictures} for name in found})


def _results(image_id, boxes, scores, classes):
    out = []
    for (y0, x0, y1, x1), score, category in zip(np.asarray(boxes), scores, classes):
        out.append({"image_id": image_id, "category_id": int(category), "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "score": float(score)})
    return out


if __name__ == "__main__":
    main()
