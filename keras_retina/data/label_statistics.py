"""What a split holds: pictures, boxes, boxes per class and per picture, box sizes (check-data's counts).

`label_statistics(source)` -> a JSON-ready dict:
  pictures, pictures_without_boxes (no box to train on), boxes (trainable: not crowd, in the label
  map), crowd (crowd regions and VOC's difficult boxes: kept for evaluation, never positives),
  unlisted (boxes whose class is not in the label map), per_class {name: {"boxes", "pictures"}}
  (every class of the label map, 0 included), boxes_per_picture {"min", "median", "max"} and
  box_size {"min", "median", "max"}: the square root of a box's area in the picture's own pixels
  (before the model's resize), over the trainable boxes (None without any).
A picture source (COCO JSON, VOC, YOLO, CSV) answers from its annotations, no picture decoded;
other sources (TFRecord, TFDS, a dataset) are read example by example.
`format_statistics(name, stats)` -> the lines check-data prints.
"""

import numpy as np


def annotations(source, with_ids=False):
    """(classes [N] int, is_crowd [N] bool, boxes [N, 4] yxyx[, image id]) of every picture of `source`:
    a picture source's from memory (no picture decoded), others' from their examples."""
    images = getattr(source, "images", None)
    if images is not None:  # a picture source: its annotations are in memory
        for entry in images:
            row = (np.asarray(entry["classes"], np.int64).reshape(-1), np.asarray(entry["is_crowd"], bool).reshape(-1),
                   np.asarray(entry["boxes"], np.float64).reshape(-1, 4))
            yield (*row, int(entry["id"])) if with_ids else row
        return
    for example in source.examples():
        row = (example["classes"].numpy().astype(np.int64), example["is_crowd"].numpy().astype(bool),
               example["boxes"].numpy().astype(np.float64).reshape(-1, 4))
        yield (*row, int(example["image_id"])) if with_ids else row


def _spread(values):
    if not len(values):
        return None
    return {"min": float(np.min(values)), "median": float(np.median(values)), "max": float(np.max(values))}


def label_statistics(source):
    names = [entry["name"] for entry in source.label_map]
    boxes_of, pictures_of = np.zeros(len(names), np.int64), np.zeros(len(names), np.int64)
    per_picture, sizes = [], []
    crowd = unlisted = 0
    for classes, is_crowd, boxes in annotations(source):
        trainable = (classes >= 0) & ~is_crowd
        crowd += int(is_crowd.sum())
        unlisted += int(((classes < 0) & ~is_crowd).sum())
        per_picture.append(int(trainable.sum()))
        kept = classes[trainable]
        boxes_of += np.bincount(kept, minlength=len(names))[:len(names)]
        pictures_of[np.unique(kept)] += 1
        sides = boxes[trainable]
        sizes.append(np.sqrt(np.clip(sides[:, 2] - sides[:, 0], 0, None) * np.clip(sides[:, 3] - sides[:, 1], 0, None)))
    sizes = np.concatenate(sizes) if sizes else np.zeros(0)
    return {"pictures": len(per_picture), "pictures_without_boxes": sum(1 for n in per_picture if n == 0),
            "boxes": int(sum(per_picture)), "crowd": crowd, "unlisted": unlisted,
            "per_class": {name: {"boxes": int(boxes_of[k]), "pictures": int(pictures_of[k])}
                          for k, name in enumerate(names)},
            "boxes_per_picture": _spread(per_picture), "box_size": _spread(sizes)}


def format_statistics(name, stats):
    """check-data's lines for a split's statistics: totals, then a row per class (most boxes first)."""
    lines = [f"[{name}] {stats['pictures']} pictures ({stats['pictures_without_boxes']} without boxes), "
             f"{stats['boxes']} boxes"
             + (f", {stats['crowd']} crowd or difficult (evaluation only)" if stats["crowd"] else "")
             + (f", {stats['unlisted']} of classes not in the label map" if stats["unlisted"] else "")]
    if stats["boxes_per_picture"] and stats["box_size"]:
        per, size = stats["boxes_per_picture"], stats["box_size"]
        lines.append(f"  boxes per picture: min {per['min']:g}, median {per['median']:g}, max {per['max']:g}; "
                     f"box size (square root of the area, picture pixels): min {size['min']:.0f}, "
                     f"median {size['median']:.0f}, max {size['max']:.0f}")
    width = max([5] + [len(n) for n in stats["per_class"]])
    lines.append(f"  {'class':<{width}}{'boxes':>9}{'share':>8}{'pictures':>10}")
    total = max(stats["boxes"], 1)
    for class_name, row in sorted(stats["per_class"].items(), key=lambda item: -item[1]["boxes"]):
        lines.append(f"  {class_name:<{width}}{row['boxes']:>9}{row['boxes'] / total:>8.0%}{row['pictures']:>10}")
    missing = [n for n, row in stats["per_class"].items() if row["boxes"] == 0]
    if missing:
        them = "them" if len(missing) > 1 else "it"
        lines.append(f"WARNING: [{name}] no box of {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else "")
                     + (f": the model cannot learn {them} from this split." if name == "train"
                        else f": this split cannot measure {them}."))
    return "\n".join(lines)
