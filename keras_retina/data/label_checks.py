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

`unlabelled_objects(source, detect, thresholds)`: with a trained model (`detect`: a picture ->
(boxes yxyx normalised, scores, category ids), `inference.detector`), the pictures whose labels
look incomplete: the model's confident detections (at least its class's threshold) that overlap
no label of their class (IoU below UNLABELLED_IOU 0.3), pictures with the most first.
`format_label_checks(report)`: the lines check-data prints.
"""

import numpy as np

from keras_retina.data.label_statistics import annotations

DUPLICATE_IOU = 0.8
OUTLIER_SPREAD = 4.0
MIN_CLASS_BOXES = 20
MAX_LISTED = 200
UNLABELLED_IOU = 0.3
MIN_SPREAD = 0.1  # log units: a class of (nearly) one size or shape is not a class of outliers


def _duplicates(boxes):
    """[(i, j, iou)] of boxes `[n, 4]` yxyx overlapping at IoU >= DUPLICATE_IOU (grid of median-box cells)."""
    heights, widths = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cell = max(float(np.median(np.maximum(heights, widths))), 1.0)
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], -1)
    keys = np.floor(centres / cell).astype(np.int64)
    cells = {}
    for i, key in enumerate(map(tuple, keys)):
        cells.setdefault(key, []).append(i)
    found = []
    for i, (cy, cx) in enumerate(keys):
        # two boxes at IoU >= 0.8 have centres closer than a quarter of the larger one's longer side
        reach = int(np.ceil(0.25 * max(heights[i], widths[i]) / cell)) + 1
        near = [j for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
                for j in cells.get((cy + dy, cx + dx), ()) if j > i]
        if not near:
            continue
        near = np.asarray(near)
        iou = _ious(boxes[i], boxes[near])
        found += [(i, int(j), float(v)) for j, v in zip(near, iou) if v >= DUPLICATE_IOU]
    return found


def _ious(box, others):
    """IoU of one yxyx box with each of `others` [n, 4]."""
    inter = (np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0)
             * np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0))
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum((box[2] - box[0]) * (box[3] - box[1]) + areas - inter, 1e-12)


def _robust_outliers(values):
    """[bool] values more than OUTLIER_SPREAD robust standard deviations from their median, and the z."""
    median = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - median))
    z = (values - median) / max(spread, MIN_SPREAD)
    return np.abs(z) > OUTLIER_SPREAD, z


def label_checks(source):
    names = [entry["name"] for entry in source.label_map]
    pictures = dict(enumerate(getattr(source, "images", None) or []))
    report = {"duplicates": [], "size_outliers": [], "shape_outliers": [], "counts": {}}
    by_class = {}  # class -> [(picture index, box)]
    for index, (classes, is_crowd, boxes, image_id) in enumerate(annotations(source, with_ids=True)):
        where = pictures[index]["file"] if index in pictures else f"image id {image_id}"
        kept = (classes >= 0) & ~is_crowd & np.isfinite(boxes).all(axis=1)  # a NaN box is the dirty-data report's
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


def unlabelled_objects(source, detect, thresholds):
    """{"pictures": [{"picture", "image_id", "boxes", "scores", "classes"}] (most such detections first,
    capped at MAX_LISTED), "detections": count, "pictures_checked"} (module docstring)."""
    names = {e["id"]: e["name"] for e in source.label_map}
    pictures = {int(e["id"]): e["file"] for e in getattr(source, "images", None) or []}
    found, checked = [], 0
    for example in source.examples():
        checked += 1
        pixels = example["image"].numpy()
        height, width = pixels.shape[:2]
        boxes, scores, categories = (np.asarray(v) for v in detect(pixels)[:3])
        boxes = boxes.reshape(-1, 4) * [height, width, height, width]
        labels = example["boxes"].numpy().reshape(-1, 4)
        label_ids = np.array([source.label_map[c]["id"] if c >= 0 else -1 for c in example["classes"].numpy()])
        keep = []
        for box, score, category in zip(boxes, scores, categories):
            if score < thresholds.get(int(category), 1.0):
                continue
            same = labels[label_ids == category]
            if not len(same) or _ious(box, same).max() < UNLABELLED_IOU:
                keep.append((box.tolist(), float(score), names.get(int(category), str(category))))
        if keep:
            image_id = int(example["image_id"])
            found.append({"picture": pictures.get(image_id, f"image id {image_id}"), "image_id": image_id,
                          "boxes": [k[0] for k in keep], "scores": [k[1] for k in keep],
                          "classes": [k[2] for k in keep]})
    found.sort(key=lambda entry: -len(entry["boxes"]))
    return {"pictures": found[:MAX_LISTED], "pictures_with_some": len(found),
            "detections": sum(len(e["boxes"]) for e in found), "pictures_checked": checked}


def format_unlabelled(name, report, how, shown=3):
    lines = [f"[{name}] the model's confident detections ({how}) on no label: {report['detections']} in "
             f"{report['pictures_with_some']} of {report['pictures_checked']} pictures"
             + (" (labels that may be missing; most first)" if report["detections"] else "")]
    for entry in report["pictures"][:shown]:
        lines.append(f"  {entry['picture']}: {len(entry['boxes'])}, e.g. {entry['classes'][0]} "
                     f"{entry['scores'][0]:.2f} at {[round(v) for v in entry['boxes'][0]]}")
    return "\n".join(lines)


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
