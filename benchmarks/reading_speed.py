"""How long opening a dataset takes in each annotation format, headers included.

    python benchmarks/reading_speed.py [--pictures=20000 --boxes=150000]

Generates one dataset (small JPEGs; boxes spread over the pictures at random) and writes it as
COCO JSON, Pascal VOC, YOLO and CSV (`data.synthetic.write_other_formats`), then times
`read_annotations` on each in a fresh pass: parsing the annotations, reading every picture's
header (sizes, EXIF orientation; nothing is decoded) and the box checks. Writes
benchmarks/results/reading_speed.json.
"""

import argparse
import io
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_retina.data import synthetic  # noqa: E402
from keras_retina.data.label_map import read_class_names  # noqa: E402
from keras_retina.data.readers.annotation_files import read_annotations  # noqa: E402

import results  # noqa: E402


def _coco(root, pictures, boxes, seed=0):
    """A COCO JSON dataset of `pictures` 64x48 JPEGs and `boxes` random boxes (train split only)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "train")
    os.makedirs(folder)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    images = []
    for index in range(pictures):
        name = f"{index:06d}.jpg"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(buffer.getvalue())
        images.append({"id": index + 1, "file_name": name, "height": 48, "width": 64})
    owner = rng.integers(0, pictures, boxes)
    corner = rng.uniform(0, 30, (boxes, 2))
    size = rng.uniform(4, 30, (boxes, 2))
    annotations = [{"id": i + 1, "image_id": int(owner[i]) + 1, "category_id": int(i % 5) + 1,
                    "bbox": [round(corner[i, 0], 2), round(corner[i, 1] / 2, 2), round(size[i, 0], 2),
                             round(size[i, 1] / 2, 2)], "area": 1.0, "iscrowd": 0} for i in range(boxes)]
    categories = [{"id": k + 1, "name": f"class{k + 1}"} for k in range(5)]
    path = os.path.join(root, "train.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return {"train": (path, folder)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=20000)
    parser.add_argument("--boxes", type=int, default=150000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keras_retina_reading_") as root:
        start = time.time()
        coco = _coco(os.path.join(root, "coco"), args.pictures, args.boxes)
        other = synthetic.write_other_formats(coco, os.path.join(root, "other"))
        print(f"generated {args.pictures} pictures, {args.boxes} boxes in 4 formats ({time.time() - start:.0f} s)")
        classes = read_class_names(os.path.join(root, "other", "classes.csv"))
        paths = {"COCO JSON": coco["train"], "Pascal VOC": other["voc"]["train"], "YOLO": other["yolo"]["train"],
                 "CSV": other["csv"]["train"]}
        seconds = {}
        for name, (annotations, images) in paths.items():
            start = time.time()
            source = read_annotations(annotations, images, classes=classes if name in ("Pascal VOC", "CSV") else None)
            seconds[name] = round(time.time() - start, 2)
            boxes = sum(len(image["boxes"]) for image in source.images)
            print(f"{name}: {source.num_examples} pictures, {boxes} boxes in {seconds[name]:.1f} s", flush=True)
    rows = [[name, f"{value:.1f}", f"{value / seconds['COCO JSON']:.2f}x"] for name, value in seconds.items()]
    results.write("reading_speed", "Opening a dataset in each format",
                  f"{args.pictures:,} pictures (64x48 JPEGs) and {args.boxes:,} boxes, the same dataset in every "
                  f"format: parsing the annotations, reading every picture's header (nothing decoded) and checking "
                  f"every box, one pass each.",
                  [{"columns": ["format", "seconds", "vs COCO JSON"], "rows": rows}],
                  figures={"pictures": args.pictures, "boxes": args.boxes, "seconds": seconds})


if __name__ == "__main__":
    main()
