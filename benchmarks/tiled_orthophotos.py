"""The tile merges on real orthophotos: whole validation pictures of the localisation yardstick detected by tiles.

    python benchmarks/tiled_orthophotos.py [--runs=base-2,base-3] [--cache=~/.cache/keras_retina/yardstick]

Models: runs of `benchmarks/localisation_yardstick.py --dataset=deepforest` (the tiny model trained
on 256 px tiles of one Yellowstone plot; each run's best checkpoint), read from its cache folder.
Pictures: the yardstick's three validation orthophotos whole (Yellowstone 1249 x 1035 px with 279
crowns, OSBS and SOAP 400 x 400 with 61 and 37), detected as `predict --tile=256 --tile_overlap=0.2`
would (`inference.tiling.detect_tiled`, the model's own tile size and the overlap its training tiles
were cut with; the detectors traced before the clock starts), once per merge: nms, merge, wbf,
and nms and wbf again with score voting (`--box_voting_sigma=0.025`) in the decoder. AP is
pycocotools' on the pictures' own boxes, up to 1000 detections a picture (COCO's 100 would cut the
Yellowstone plot's crowns). A row is the mean over the runs.

Writes benchmarks/results/tiled_orthophotos.json (rendered into docs/training.md).
"""

import argparse
import contextlib
import io
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_retina.data.readers.pascal_voc import read_pascal_voc  # noqa: E402
from keras_retina.inference.detector import batch_detector  # noqa: E402
from keras_retina.inference.tiling import TileSettings, detect_tiled  # noqa: E402
from keras_retina.modeling.detection_decoder import PostprocessSettings  # noqa: E402
from keras_retina.ops.large_picture import ArrayPicture  # noqa: E402

import results  # noqa: E402

TILE, OVERLAP = 256, 0.2
# name -> (what, --tile_merge, --box_voting_sigma)
MERGES = {"nms": ("--tile_merge=nms (the default)", "nms", 0.0),
          "merge": ("--tile_merge=merge", "merge", 0.0),
          "wbf": ("--tile_merge=wbf", "wbf", 0.0),
          "nms_vote": ("--tile_merge=nms --box_voting_sigma=0.025", "nms", 0.025),
          "wbf_vote": ("--tile_merge=wbf --box_voting_sigma=0.025", "wbf", 0.025)}


def average_precision(pictures, found):
    """AP, AP50, AP75 of `found` [(image_id, boxes, scores)] against `pictures` [(image_id, h, w, boxes)]."""
    truth = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "Tree"}]}
    for image_id, height, width, boxes in pictures:
        truth["images"].append({"id": image_id, "height": height, "width": width})
        for y0, x0, y1, x1 in boxes:
            truth["annotations"].append({"id": len(truth["annotations"]) + 1, "image_id": image_id, "category_id": 1,
                                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                         "iscrowd": 0})
    detections = [{"image_id": image_id, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(s)}
                  for image_id, boxes, scores in found for (y0, x0, y1, x1), s in zip(boxes, scores)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = truth
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes(detections), "bbox")
        evaluator.params.maxDets = [10, 100, 1000]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {"AP": float(evaluator.stats[0]), "AP50": float(evaluator.stats[1]), "AP75": float(evaluator.stats[2])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="base-2,base-3")
    parser.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "keras_retina", "yardstick"))
    parser.add_argument("--steps", type=int, default=600, help="the yardstick's --steps the runs were trained with")
    args = parser.parse_args()
    source = read_pascal_voc(os.path.join(args.cache, "voc", "val"))
    pictures, pixels = [], []
    for example in source.examples():
        image = example["image"].numpy()
        pictures.append((int(example["image_id"]), *image.shape[:2], example["boxes"].numpy()))
        pixels.append(image)
    figures = {name: [] for name in MERGES}
    seconds = dict.fromkeys(MERGES, 0.0)
    runs = [r for r in args.runs.split(",") if r]
    for run in runs:
        model_dir = os.path.join(args.cache, f"runs-deepforest-{args.steps}", run)
        detectors = {sigma: batch_detector(model_dir=model_dir, postprocess=PostprocessSettings(box_voting_sigma=sigma))
                     for sigma in sorted({sigma for _, _, sigma in MERGES.values()})}
        for detect in detectors.values():  # traced before the clock starts
            detect(pixels[0][None, :TILE, :TILE])
        for name, (_, merge, sigma) in MERGES.items():
            found = []
            start = time.perf_counter()
            for (image_id, *_), image in zip(pictures, pixels):
                tiled = detect_tiled(detectors[sigma], ArrayPicture(image),
                                     settings=TileSettings(tile=TILE, overlap=OVERLAP, merge=merge))
                found.append((image_id, tiled.boxes, tiled.scores))
            seconds[name] += time.perf_counter() - start
            figures[name].append({"run": run, **average_precision(pictures, found)})
            print(f"{run} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures[name][-1].items() if k != "run"),
                  flush=True)
    cell = lambda name, key: f"{statistics.fmean(r[key] for r in figures[name]):.3f}"  # noqa: E731
    rows = [[what, cell(name, "AP"), cell(name, "AP50"), cell(name, "AP75"),
             f"{seconds[name] / len(runs) / len(pictures):.2f}"] for name, (what, _, _) in MERGES.items()]
    results.write(
        "tiled_orthophotos", "Tile merges on real orthophotos",
        f"The localisation yardstick's validation orthophotos (DeepForest's NEON tree crowns: {len(pictures)} "
        f"pictures, {sum(len(p[3]) for p in pictures)} crowns) detected whole by {TILE} px tiles overlapping by "
        f"{OVERLAP} with each merge, by the tiny models of the yardstick's runs {', '.join(runs)} "
        f"(benchmarks/tiled_orthophotos.py); the mean over the runs.",
        [{"caption": "AP of the whole pictures by tiles (up to 1000 detections a picture)",
          "columns": ["predict --tile=256", "AP", "AP50", "AP75", "seconds per picture"], "rows": rows}],
        figures={"runs": figures, "seconds": seconds}, page="docs/training.md",
        command="python benchmarks/tiled_orthophotos.py --runs=" + ",".join(runs))


if __name__ == "__main__":
    main()
