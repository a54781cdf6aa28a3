"""Pre-labels: a model's detections as annotation files a labelling tool imports, for a person to correct.

`predict --save_annotations=FORMAT` writes, into --output_dir, the detections of every picture
scoring at least its class's labelling threshold (`labelling_thresholds`), as:

  voc          prelabels_voc/<picture stem>.xml: Pascal VOC, 1-based integer corners as labelImg
               and CVAT write them;
  yolo         prelabels_yolo/labels/<stem>.txt (`class cx cy w h`, normalised) and
               prelabels_yolo/classes.txt; the class indices are the --prelabel_classes file's
               (a data.yaml or classes.txt of the user's project) when given, else the model's order;
  coco         prelabels_coco.json: images, categories (the model's ids) and annotations with a
               "score" each;
  csv          prelabels.csv: fizyr's `path,x1,y1,x2,y2,class` in integer pixels (a picture without
               detections: `path,,,,,`);
  labelstudio  prelabels_labelstudio.json: Label Studio tasks with predictions (rectanglelabels in
               percent of the picture; `from_name`, `to_name` and the picture URL prefix of the
               user's project from --labelstudio_from_name / _to_name / _image_url; the file name
               percent-encoded in the URL);
  cvat         prelabels_cvat.xml: CVAT for images 1.1 (boxes with source="auto").

Every format names a picture by its file name (two pictures of one name, and for VOC and YOLO of
one name without its extension, are refused before any is detected); VOC, YOLO, COCO and CSV
files read back through keras_retina's own readers with the pictures' folder as --train_images (a
CSV beside the pictures) give the same boxes to a pixel (VOC's and CSV's corners are integers).
Nothing already there is overwritten: a name in use gets -2, -3...
Boxes are in the pictures' pixels as viewers show them (EXIF orientation applied), as the readers
read them.

Labelling threshold: a person deletes a wrong box faster than they draw a missed one, so
pre-labels favour recall. `labelling_thresholds(run_summary, label_map, given)`: `given` for every
class; else, per class, the evaluation report of the model_dir's training: the highest score at
which the model still finds LABELLING_RECALL (90%) of the class's validation objects
(`evaluation.precision_recall.labelling_threshold`); else (a registered or exported model, or a
class the report cannot measure) DEFAULT_THRESHOLD.
"""

import csv
import dataclasses
import json
import os
import urllib.parse
import xml.etree.ElementTree as ElementTree  # writing only: nothing here parses a file

import numpy as np

from keras_retina.errors import UsageError
from keras_retina.evaluation.precision_recall import LABELLING_RECALL
from keras_retina.files import new_name, write_json

FORMATS = ("voc", "yolo", "coco", "csv", "labelstudio", "cvat")
DEFAULT_THRESHOLD = 0.3  # without an evaluation to measure one: about COCO models' recall-friendly cut


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrelabelSettings:
    """What `predict --save_annotations` writes (module docstring)."""

    format: str
    threshold: float | None = None  # one threshold for every class; None: measured per class
    classes_file: str | None = None  # yolo: the project's data.yaml / classes.txt
    labelstudio_from_name: str = "label"
    labelstudio_to_name: str = "image"
    labelstudio_image_url: str = "/data/local-files/?d="

    def __post_init__(self):
        if self.format not in FORMATS:
            raise UsageError(f"--save_annotations={self.format}: choose one of {', '.join(FORMATS)}.")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise UsageError(f"--prelabel_threshold={self.threshold}: must be in [0, 1].")


@dataclasses.dataclass
class Picture:
    path: str
    height: int
    width: int
    boxes: np.ndarray  # [n, 4] yxyx, the picture's pixels
    scores: np.ndarray
    classes: np.ndarray  # category ids


def check_names(paths, format=None):
    """Pre-labels name pictures by file name (VOC and YOLO files by its stem: a.jpg and a.png would
    both be a.xml): two pictures of one name are refused (UsageError)."""
    seen = {}
    for path in paths:
        name = os.path.basename(path)
        key = os.path.splitext(name)[0] if format in ("voc", "yolo") else name
        if key in seen:
            what = f"by the file name without its extension ({key}.{'xml' if format == 'voc' else 'txt'})" if (
                format in ("voc", "yolo")) else "by file name"
            raise UsageError(f"--save_annotations={format or '...'} names pictures {what}, and {seen[key]} and {path} "
                             f"would share one: predict them in separate runs.")
        seen[key] = path


def yolo_order(settings, label_map):
    """The class names by YOLO index: the --prelabel_classes file's order (every class of the model
    must be in it, else a UsageError), else the model's; None at an index the model does not use."""
    order = [e["name"] for e in label_map]
    if not settings.classes_file:
        return order
    from keras_retina.data.readers.yolo import read_yolo_names

    theirs = read_yolo_names(settings.classes_file)
    missing = [n for n in order if n not in {e["name"] for e in theirs}]
    if missing:
        raise UsageError(f"--prelabel_classes={settings.classes_file} has no class {', '.join(missing[:10])} of "
                         f"the model's; add them there or leave the flag out (the model's order).")
    order = [None] * (max(e["id"] for e in theirs) + 1)
    for entry in theirs:
        order[entry["id"]] = entry["name"]
    return order


def report_classes(run_summary, run_path=None):
    """(the classes of the training's evaluation report.json, its path), or ([], None) without one."""
    report = (run_summary or {}).get("report")
    path = os.path.join(os.path.dirname(report), "report.json") if report else None
    if path and not os.path.isfile(path) and run_path and f"{os.sep}eval{os.sep}" in os.sep + path:
        # written relative to the folder training ran in: found again from the model_dir itself
        path = os.path.join(run_path, "eval", (os.sep + path).rsplit(f"{os.sep}eval{os.sep}", 1)[1])
    if not (path and os.path.isfile(path)):
        return [], None
    with open(path, encoding="utf-8") as f:  # our own file, written by training's evaluation
        return json.load(f).get("classes", []), path


def report_thresholds(run_summary, key, run_path=None):
    """({category id: threshold} of the training's evaluation report, each class's `key`
    ("for_labelling" or "recommended": the best F1), the report.json path) or ({}, None)."""
    classes, path = report_classes(run_summary, run_path)
    return {entry["id"]: entry[key]["threshold"] for entry in classes if entry.get(key)}, path


def labelling_thresholds(run_summary, label_map, given=None, run_path=None):
    """({category id: threshold}, a sentence saying where they come from) (module docstring)."""
    if given is not None:
        return {e["id"]: given for e in label_map}, f"--prelabel_threshold={given:g} for every class"
    measured, path = report_thresholds(run_summary, "for_labelling", run_path)
    thresholds = {e["id"]: measured.get(e["id"], DEFAULT_THRESHOLD) for e in label_map}
    if not measured:
        return thresholds, (f"{DEFAULT_THRESHOLD:g} for every class (no evaluation report to measure a threshold "
                            f"from; --prelabel_threshold sets one)")
    return thresholds, (f"per class, the score that still finds {LABELLING_RECALL:.0%} of the class's validation "
                        f"objects in the training's evaluation report ({path}); {DEFAULT_THRESHOLD:g} for classes it "
                        f"could not measure")


def write_prelabels(settings, pictures, label_map, output_dir):
    """Writes `pictures` (detections cut at their thresholds already) in `settings.format`; returns the
    path written (a file or a folder)."""
    names = {e["id"]: e["name"] for e in label_map}
    writer = {"voc": _voc, "yolo": _yolo, "coco": _coco, "csv": _csv, "labelstudio": _labelstudio,
              "cvat": _cvat}[settings.format]
    return writer(settings, pictures, names, label_map, output_dir)


def _folder(output_dir, stem):
    path = new_name(output_dir, stem, "")
    os.makedirs(path)
    return path


def _voc(settings, pictures, names, label_map, output_dir):
    folder = _folder(output_dir, "prelabels_voc")
    for picture in pictures:
        root = ElementTree.Element("annotation")
        ElementTree.SubElement(root, "folder").text = os.path.basename(os.path.dirname(os.path.abspath(picture.path)))
        ElementTree.SubElement(root, "filename").text = os.path.basename(picture.path)
        ElementTree.SubElement(root, "path").text = os.path.abspath(picture.path)
        ElementTree.SubElement(ElementTree.SubElement(root, "source"), "database").text = "keras_retina pre-labels"
        size = ElementTree.SubElement(root, "size")
        for tag, value in (("width", picture.width), ("height", picture.height), ("depth", 3)):
            ElementTree.SubElement(size, tag).text = str(value)
        ElementTree.SubElement(root, "segmented").text = "0"
        for (y0, x0, y1, x1), category in zip(picture.boxes, picture.classes):
            item = ElementTree.SubElement(root, "object")
            for tag, value in (("name", names[int(category)]), ("pose", "Unspecified"), ("truncated", "0"),
                               ("difficult", "0")):
                ElementTree.SubElement(item, tag).text = value
            box = ElementTree.SubElement(item, "bndbox")
            for tag, value in (("xmin", round(x0) + 1), ("ymin", round(y0) + 1), ("xmax", round(x1)),
                               ("ymax", round(y1))):
                ElementTree.SubElement(box, tag).text = str(int(value))
        ElementTree.indent(root)
        stem = os.path.splitext(os.path.basename(picture.path))[0]
        ElementTree.ElementTree(root).write(os.path.join(folder, stem + ".xml"), encoding="utf-8",
                                            xml_declaration=True)
    return folder


def _yolo(settings, pictures, names, label_map, output_dir):
    order = yolo_order(settings, label_map)
    index = {name: i for i, name in enumerate(order) if name is not None}
    folder = _folder(output_dir, "prelabels_yolo")
    os.makedirs(os.path.join(folder, "labels"))
    with open(os.path.join(folder, "classes.txt"), "w", encoding="utf-8") as f:
        f.write("".join(f"{name if name is not None else f'unused_{i}'}\n" for i, name in enumerate(order)))
    for picture in pictures:
        lines = []
        for (y0, x0, y1, x1), category in zip(picture.boxes, picture.classes):
            cx, cy = (x0 + x1) / 2 / picture.width, (y0 + y1) / 2 / picture.height
            w, h = (x1 - x0) / picture.width, (y1 - y0) / picture.height
            lines.append(f"{index[names[int(category)]]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
        stem = os.path.splitext(os.path.basename(picture.path))[0]
        with open(os.path.join(folder, "labels", stem + ".txt"), "w", encoding="utf-8") as f:
            f.write("".join(lines))
    return folder


def _coco(settings, pictures, names, label_map, output_dir):
    document = {"images": [], "annotations": [], "categories": [{"id": e["id"], "name": e["name"]} for e in label_map]}
    for image_id, picture in enumerate(pictures, start=1):
        document["images"].append({"id": image_id, "file_name": os.path.basename(picture.path),
                                   "height": picture.height, "width": picture.width})
        for (y0, x0, y1, x1), score, category in zip(picture.boxes, picture.scores, picture.classes):
            document["annotations"].append({
                "id": len(document["annotations"]) + 1, "image_id": image_id, "category_id": int(category),
                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0, "score": float(score)})
    path = new_name(output_dir, "prelabels_coco", ".json")
    write_json(document, path)
    return path


def _csv(settings, pictures, names, label_map, output_dir):
    path = new_name(output_dir, "prelabels", ".csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        rows = csv.writer(f)
        for picture in pictures:
            name = os.path.basename(picture.path)
            if not len(picture.boxes):
                rows.writerow([name, "", "", "", "", ""])
            for (y0, x0, y1, x1), category in zip(picture.boxes, picture.classes):
                x0, y0 = round(x0), round(y0)  # integers: fizyr's reader refuses decimals
                rows.writerow([name, x0, y0, max(round(x1), x0 + 1), max(round(y1), y0 + 1), names[int(category)]])
    return path


def _labelstudio(settings, pictures, names, label_map, output_dir):
    tasks = []
    for picture in pictures:
        result = []
        for n, ((y0, x0, y1, x1), score, category) in enumerate(zip(picture.boxes, picture.scores, picture.classes)):
            result.append({
                "id": f"r{n + 1}", "from_name": settings.labelstudio_from_name,
                "to_name": settings.labelstudio_to_name, "type": "rectanglelabels",
                "original_width": picture.width, "original_height": picture.height, "image_rotation": 0,
                "value": {"x": 100 * float(x0) / picture.width, "y": 100 * float(y0) / picture.height,
                          "width": 100 * float(x1 - x0) / picture.width,
                          "height": 100 * float(y1 - y0) / picture.height, "rotation": 0,
                          "rectanglelabels": [names[int(category)]]},
                "score": float(score)})
        mean = float(np.mean(picture.scores)) if len(picture.scores) else 0.0
        tasks.append({"data": {settings.labelstudio_to_name: settings.labelstudio_image_url
                               + urllib.parse.quote(os.path.basename(picture.path))},
                      "predictions": [{"model_version": "keras_retina", "score": mean, "result": result}]})
    path = new_name(output_dir, "prelabels_labelstudio", ".json")
    write_json(tasks, path)
    return path


def _cvat(settings, pictures, names, label_map, output_dir):
    root = ElementTree.Element("annotations")
    ElementTree.SubElement(root, "version").text = "1.1"
    task = ElementTree.SubElement(ElementTree.SubElement(root, "meta"), "task")
    ElementTree.SubElement(task, "name").text = "keras_retina pre-labels"
    ElementTree.SubElement(task, "size").text = str(len(pictures))
    labels = ElementTree.SubElement(task, "labels")
    for entry in label_map:
        label = ElementTree.SubElement(labels, "label")
        ElementTree.SubElement(label, "name").text = entry["name"]
        ElementTree.SubElement(label, "attributes")
    for image_id, picture in enumerate(pictures):
        image = ElementTree.SubElement(root, "image", id=str(image_id), name=os.path.basename(picture.path),
                                       width=str(picture.width), height=str(picture.height))
        for (y0, x0, y1, x1), category in zip(picture.boxes, picture.classes):
            ElementTree.SubElement(image, "box", label=names[int(category)], source="auto", occluded="0",
                                   xtl=f"{x0:.2f}", ytl=f"{y0:.2f}", xbr=f"{x1:.2f}", ybr=f"{y1:.2f}", z_order="0")
    ElementTree.indent(root)
    path = new_name(output_dir, "prelabels_cvat", ".xml")
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path
