"""Synthetic detection data: coloured shapes on a noisy background, with exact boxes.

Used by the tests (does the model learn?) and by the demo dataset. Every image gets 1..`max_objects`
shapes; class k is a fixed (shape, colour) pair, so a detector has to tell both apart. Shapes may
touch but never overlap by more than `max_overlap` IoU, so every box stays a fair target.

`make_example(rng, size, ...)` -> (image uint8 `[H, W, 3]` RGB, boxes float32 `[n, 4]` yxyx
pixels, classes int32 `[n]`); `size` is an int (square) or (H, W).

`write_coco_dataset(root, ...)` writes the demo dataset the way a labelling
tool would: `root/{train,val}/*.jpg` and `root/{train,val}.json` in COCO
format, with non-contiguous category ids (1, 3, 5, ...) and mixed image sizes,
so the demo runs exactly the code path of a user's own COCO data.
`write_other_formats(paths, root)` writes the same pictures and boxes as Pascal VOC, YOLO and
CSV datasets (what `data.readers.annotation_files` reads). `write_split` writes one split of
generated pictures as COCO JSON (also for the benchmarks' datasets, `data.benchmark_data`).
"""

import json
import os
import shutil

import numpy as np
from pycocotools import mask as mask_utils

# class id -> (shape, RGB colour)
CLASSES = (
    ("square", (230, 40, 40)),
    ("disc", (40, 200, 60)),
    ("triangle", (50, 90, 230)),
    ("square", (240, 200, 30)),
    ("disc", (200, 60, 220)),
    ("triangle", (30, 210, 210)),
)
CLASS_NAMES = tuple(f"{colour_name}_{shape}" for (shape, _), colour_name in zip(
    CLASSES, ("red", "green", "blue", "yellow", "magenta", "cyan")))


def make_example(rng, size, num_classes=3, max_objects=3, min_side=0.2, max_side=0.5,
                 *, max_overlap=0.1):
    """One image with 1..max_objects shapes of the first `num_classes` classes.

    Object sides are drawn uniformly in [min_side, max_side] * size.
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in 1..{len(CLASSES)}, got {num_classes}.")
    height, width = (size, size) if np.isscalar(size) else size
    image = rng.normal(110.0, 20.0, (height, width, 3)).clip(0, 255)
    boxes, classes = [], []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            h, w = rng.uniform(min_side, max_side, 2) * min(height, width)
            y0, x0 = rng.uniform(0, height - h), rng.uniform(0, width - w)
            box = np.array([y0, x0, y0 + h, x0 + w], np.float32)
            if most_overlap(box, boxes) <= max_overlap:
                break
        else:
            continue
        cls = int(rng.integers(0, num_classes))
        draw(image, box, *CLASSES[cls])
        boxes.append(box)
        classes.append(cls)
    return (image.astype(np.uint8), np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(classes, np.int32))


def most_overlap(box, others):
    """The highest IoU of yxyx `box` with any of the yxyx `others` (0 with none), by pycocotools (a
    TensorFlow op per attempt costs more than drawing), on C-ordered arrays as it reads them."""
    if not others:
        return 0.0
    xywh = np.array([[x0, y0, x1 - x0, y1 - y0] for y0, x0, y1, x1 in [box, *others]], np.float64)
    return float(np.max(mask_utils.iou(xywh[:1], xywh[1:], np.zeros(len(others), np.uint8))))


def draw(image, box, shape, colour):
    y0, x0, y1, x1 = box
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
    inside = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
    if shape == "disc":
        cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
        inside &= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    elif shape == "triangle":  # apex at top centre, base at the bottom
        half_width = (yy - y0) / (y1 - y0) * (x1 - x0) / 2
        inside &= np.abs(xx - (x0 + x1) / 2) <= half_width
    image[inside] = colour


def make_dataset(num_images, size, seed=0, **kwargs):
    """`num_images` examples as padded numpy arrays.

    Returns:
      images uint8 `[n, size, size, 3]`, boxes float32 `[n, M, 4]` yxyx pixels,
      classes int32 `[n, M]` with -1 padding.
    """
    rng = np.random.default_rng(seed)
    examples = [make_example(rng, size, **kwargs) for _ in range(num_images)]
    most = max(len(c) for _, _, c in examples)
    images = np.stack([e[0] for e in examples])
    boxes = np.zeros((num_images, most, 4), np.float32)
    classes = np.full((num_images, most), -1, np.int32)
    for i, (_, b, c) in enumerate(examples):
        boxes[i, :len(c)] = b
        classes[i, :len(c)] = c
    return images, boxes, classes


def write_coco_dataset(root, num_train=512, num_val=128, num_classes=6, sizes=((192, 256), (256, 192), (224, 224)),
                       max_objects=4, *, seed=0):
    """Writes the demo dataset once (reused when `root` already holds the same one); a `root`
    holding anything else is a UsageError, and nothing in it is touched.

    Returns {"train": (annotations path, images dir), "val": (...)}.
    """
    params = dict(num_train=num_train, num_val=num_val, num_classes=num_classes,
                  sizes=[list(s) for s in sizes], max_objects=max_objects, seed=seed, version=1)
    marker = os.path.join(root, "dataset.json")
    paths = {split: (os.path.join(root, f"{split}.json"), os.path.join(root, split))
             for split in ("train", "val")}
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as f:
            if json.load(f) == params:
                return paths
    if os.path.isdir(root) and os.listdir(root):
        from keras_retina.errors import UsageError

        raise UsageError(f"--demo_data={root}: the folder holds other files (or a demo dataset of other "
                         f"settings); give a new or empty folder (the demo data is written there).")

    # Written into a folder of its own and renamed into place, so a crash never leaves half a dataset.
    building = f"{root.rstrip(os.sep)}.partial-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    rng = np.random.default_rng(seed)
    categories = [{"id": 2 * k + 1, "name": CLASS_NAMES[k]} for k in range(num_classes)]
    for split, count in (("train", num_train), ("val", num_val)):
        write_split(building, split, count, categories, lambda: make_example(
            rng, tuple(sizes[rng.integers(len(sizes))]), num_classes, max_objects))
    with open(os.path.join(building, "dataset.json"), "w", encoding="utf-8") as f:
        json.dump(params, f)
    try:
        if os.path.isdir(root):  # empty (checked above)
            os.rmdir(root)
        os.replace(building, root)
    except OSError:  # another process finished the same dataset first: use it
        shutil.rmtree(building, ignore_errors=True)
        with open(marker, encoding="utf-8") as f:
            if json.load(f) != params:
                raise
    return paths


def write_other_formats(paths, root):
    """The COCO dataset of `write_coco_dataset` (`paths`) as Pascal VOC, YOLO and CSV datasets in
    `root`: voc/<split>/*.xml beside the pictures (1-based corners, VOC's), yolo/data.yaml with
    images/ and labels/ folders (class index = the COCO class order), csv/<split>.csv with the
    pictures below it, and classes.csv (`name,id`, the COCO ids) for VOC and CSV. Pictures are
    hard links (copies where links fail). Returns {format: {split: (annotations, images or None)}}."""
    out = {"voc": {}, "yolo": {}, "csv": {}}
    categories = None
    for split, (json_path, images_dir) in paths.items():
        with open(json_path, encoding="utf-8") as f:
            coco = json.load(f)
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        index = {c["id"]: i for i, c in enumerate(categories)}
        names = {c["id"]: c["name"] for c in categories}
        boxes = {image["id"]: [] for image in coco["images"]}
        for ann in coco["annotations"]:
            boxes[ann["image_id"]].append((ann["bbox"], ann["category_id"]))
        folders = {kind: os.path.join(root, *parts) for kind, parts in
                   (("voc", ("voc", split)), ("yolo_images", ("yolo", "images", split)),
                    ("yolo_labels", ("yolo", "labels", split)), ("csv", ("csv", "images", split)))}
        for folder in folders.values():
            os.makedirs(folder, exist_ok=True)
        rows = []
        for image in coco["images"]:
            name, height, width = image["file_name"], image["height"], image["width"]
            for kind in ("voc", "yolo_images", "csv"):
                _link(os.path.join(images_dir, name), os.path.join(folders[kind], name))
            objects, lines = [], []
            for (x, y, w, h), category in boxes[image["id"]]:
                objects.append(f"<object><name>{names[category]}</name><difficult>0</difficult><bndbox>"
                               f"<xmin>{x + 1:.4f}</xmin><ymin>{y + 1:.4f}</ymin><xmax>{x + w:.4f}</xmax>"
                               f"<ymax>{y + h:.4f}</ymax></bndbox></object>")
                lines.append(f"{index[category]} {(x + w / 2) / width:.8f} {(y + h / 2) / height:.8f} "
                             f"{w / width:.8f} {h / height:.8f}")
                rows.append(f"images/{split}/{name},{x:.4f},{y:.4f},{x + w:.4f},{y + h:.4f},{names[category]}")
            if not boxes[image["id"]]:
                rows.append(f"images/{split}/{name},,,,,")
            with open(os.path.join(folders["voc"], os.path.splitext(name)[0] + ".xml"), "w", encoding="utf-8") as f:
                f.write(f"<annotation><filename>{name}</filename><size><width>{width}</width><height>{height}"
                        f"</height><depth>3</depth></size>{''.join(objects)}</annotation>\n")
            with open(os.path.join(folders["yolo_labels"], os.path.splitext(name)[0] + ".txt"), "w",
                      encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in lines))
        with open(os.path.join(root, "csv", f"{split}.csv"), "w", encoding="utf-8") as f:
            f.write("".join(row + "\n" for row in rows))
        out["voc"][split] = (folders["voc"], None)
        out["csv"][split] = (os.path.join(root, "csv", f"{split}.csv"), None)
        out["yolo"][split] = (os.path.join(root, "yolo", "data.yaml"), None)
    with open(os.path.join(root, "classes.csv"), "w", encoding="utf-8") as f:
        f.write("".join(f"{c['name']},{c['id']}\n" for c in categories))
    with open(os.path.join(root, "yolo", "data.yaml"), "w", encoding="utf-8") as f:
        f.write("path: .\ntrain: images/train\nval: images/val\nnames:\n"
                + "".join(f"  {i}: {c['name']}\n" for i, c in enumerate(categories)))
    return out


def _link(source, target):
    if os.path.exists(target):
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)



def write_split(root, split, count, categories, make):
    """`root/{split}/*.jpg` and `root/{split}.json` (COCO) of `count` pictures `make()` gives as
    (image, boxes yxyx, classes); class k is `categories[k]`."""
    from PIL import Image

    os.makedirs(os.path.join(root, split), exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        image, boxes, classes = make()
        name = f"{index:06d}.jpg"
        Image.fromarray(image).save(os.path.join(root, split, name), quality=92)
        images.append({"id": index + 1, "file_name": name, "height": image.shape[0], "width": image.shape[1]})
        for (y0, x0, y1, x1), cls in zip(boxes.tolist(), classes.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1,
                                "category_id": categories[cls]["id"],
                                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                                "area": round((x1 - x0) * (y1 - y0), 2), "iscrowd": 0})
    with open(os.path.join(root, f"{split}.json"), "w", encoding="utf-8") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
