"""Labels that look wrong: two boxes on one object, boxes far outside their class's usual size or shape.

Listed for a person to look at, never changed (a crowded orchard has boxes that touch, a class may
really hold giants). `label_checks(source)` -> a JSON-ready dict:

- "duplicates": two boxes of one class in one picture overlapping at IoU >= DUPLICATE_IOU (0.8):
  usually one object labelled twice (a double click, two annotators merged). Candidates come from
  a grid of cells the size of the picture's median box, so a picture of thousands of boxes costs
  about a comparison per neighbour, not one per pair.
- "size_outliers" / "shape_outliers": boxes whose size (square root of the area) or aspect
  (log of height / width) lies more than OUTLIER_SPREAD robust standard deviations (1.4826 x
  the median absolute deviation) from their class's median, for classes of at least
  MIN_CLASS_BOXES boxes: a box drawn around the whole picture, a sliver, a label on the wrong
  object.
Each entry names the picture (a picture source's file, else the image id), the box (yxyx pixels)
and its class; the lists are capped at MAX_LISTED each, with the counts in full.
`format_label_checks(report)`: the lines check-data prints.
"""

import numpy as np

from keras_retina.data.label_statistics import annotations

DUPLICATE_IOU = 0.8
OUTLIER_SPREAD = 4.0
MIN_CLASS_BOXES = 20
MAX_LISTED = 200


def _duplicates(boxes):
    """[(i, j, iou)] of boxes `[n, 4]` yxyx overlapping at IoU >= DUPLICATE_IOU (grid of median-box cells)."""
    heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cell = max(float(np.median(np.maximum(heights, widths))), 1.0)
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], -1)
    keys = np.floor(centres / cell).astype(np.int64)
    cells = {}
    for i, key in enumerate(map(tuple, keys)):
        cells.setdefault(key, []).append(i)
    area = np.maximum(heights, 0) * np.maximum(widths, 0)
    found = []
    for i, (cy, cx) in enumerate(keys):
        # two boxes at IoU >= 0.8 have centres closer than a quarter of the larger one's longer side
        reach = int(np.ceil(0.25 * max(heights[i], widths[i]) / cell)) + 1
        near = [j for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
                for j in cells.get((cy + dy, cx + dx), ()) if j > i]
        if not near:
            continue
        near = np.asarray(near)
        inter = (np.maximum(np.minimum(boxes[i, 2], boxes[near, 2]) - np.maximum(boxes[i, 0], boxes[near, 0]), 0)
                 * np.maximum(np.minimum(boxes[i, 3], boxes[near, 3]) - np.maximum(boxes[i, 1], boxes[near, 1]), 0))
        iou = inter / np.maximum(area[i] + area[near] - inter, 1e-12)
        found += [(i, int(j), float(v)) for j, v in zip(near, iou) if v >= DUPLICATE_IOU]
    return found


def _robust_outliers(values):
    """[bool] values more than OUTLIER_SPREAD robust standard deviations from their median, and the z."""
    median = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - median))
    z = (values - median) / max(spread, 1e-6)
    return np.abs(z) > OUTLIER_SPREAD, z


def label_checks(source):
    names = [entry["name"] for entry in source.label_map]
    pictures = dict(enumerate(getattr(source, "images", None) or []))
    report = {"duplicates": [], "size_outliers": [], "shape_outliers": [], "counts": {}}
    by_class = {}  # class -> [(picture index, box)]
    for index, (classes, is_crowd, boxes, image_id) in enumerate(annotations(source, with_ids=True)):
        where = pictures[index]["file"] if index in pictures else f"image id {image_id}"
        kept = (classes >= 0) & ~is_crowd
        for k in np.unique(classes[kept]):
            rows = np.flatnonzero(kept & (classes == k))
            for i, j, iou in _duplicates(boxes[rows]):
                report["duplicates"].append({"picture": where, "image_id": image_id, "class": names[k], "boxes": [
                    boxes[rows[i]].tolist(), boxes[rows[j]].tolist()], "iou": round(iou, 3)})
            by_class.setdefault(int(k), []).extend((where, image_id, box) for box in boxes[rows])
    for k, entries in by_class.items():
        if len(entries) < MIN_CLASS_BOXES:
            continue
        boxes = np.array([box for _, _, box in entries])
        heights, widths = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-3), np.maximum(boxes[:, 3] - boxes[:, 1], 1e-3)
        for key, values in (("size_outliers", np.log(np.sqrt(heights * widths))), ("shape_outliers",
                                                                                 np.log(heights / widths))):
            outlier, z = _robust_outliers(values)
            report[key] += [{"picture": entries[i][0], "image_id": entries[i][1], "class": names[k],
                             "box": entries[i][2].tolist(),
                             "robust_z": round(float(z[i]), 1)} for i in np.flatnonzero(outlier)]
    for key in ("duplicates", "size_outliers", "shape_outliers"):
        report["counts"][key] = len(report[key])
        report[key] = report[key][:MAX_LISTED]
    return report


def format_label_checks(name, report, shown=3):
    counts = report["counts"]
    if not any(counts.values()):
        return f"[{name}] labels: no duplicate boxes, no box far outside its class's size or shape."
    lines = [f"[{name}] labels to look at: {counts['duplicates']} pair(s) of boxes on one object "
             f"(IoU >= {DUPLICATE_IOU}), {counts['size_outliers']} box(es) of an unusual size and "
             f"{counts['shape_outliers']} of an unusual shape for their class"]
    for entry in report["duplicates"][:shown]:
        lines.append(f"  duplicate {entry['class']} in {entry['picture']}: IoU {entry['iou']:.2f}, "
                     f"{[round(v) for v in entry['boxes'][0]]} and {[round(v) for v in entry['boxes'][1]]}")
    for key, what in (("size_outliers", "size"), ("shape_outliers", "shape")):
        for entry in report[key][:shown]:
            lines.append(f"  {what} {entry['class']} in {entry['picture']}: {[round(v) for v in entry['box']]} "
                         f"({entry['robust_z']:+.1f} robust standard deviations from the class's median)")
    if any(n > shown for n in counts.values()):
        lines.append("  ... --output lists them all")
    return "\n".join(lines)
