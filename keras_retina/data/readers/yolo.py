"""YOLO txt labels (Roboflow, CVAT, Label Studio, Ultralytics) -> a source.

`read_yolo(path, split="train", images_dir=None, skip_bad_examples=False)`: `path` is an
Ultralytics `data.yaml` (`path`: the root, `train` / `val`: a folder of pictures, a .txt list of
pictures, or a list of either, relative to the root; `names`: a list or a {id: name} dict) read
with PyYAML's safe loader, or a folder of `.txt` label files with a `classes.txt` / `obj.names`
(one name per line) in it or beside it and the pictures in `images_dir` (default: the sibling
`images/` folder, else the label folder). A picture's label file is the Ultralytics one: the last
`images` folder of its path replaced by `labels`, suffix `.txt`.

A line is `class cx cy w h`, normalised to the picture as viewers show it (Ultralytics applies
EXIF orientation), or `class x1 y1 x2 y2 x3 y3 ...` (a polygon of a segmentation dataset: its
bounding box). Sizes come from the pictures' headers; nothing is decoded. Category id = YOLO
class index, name from `names`. A picture without a label file, or with an empty one, is a
negative; values outside 0..1, malformed lines, unknown classes, label files without a picture
are named (file and line) and counted (`picture_source`).
"""

import os

import numpy as np

from keras_retina.data import cleaning
from keras_retina.data.readers import picture_source
from keras_retina.errors import DataError
from keras_retina.ops import images as image_lib

NAMES_FILES = ("classes.txt", "obj.names")
MAX_YAML_BYTES = 1 << 20
MAX_LABEL_BYTES = 16 << 20


def _label_path(picture):
    """Ultralytics' img2label_paths: .../images/x.jpg -> .../labels/x.txt (the last `images`)."""
    head, name = os.path.split(picture)
    parts = head.split(os.sep)
    if "images" in parts:
        index = len(parts) - 1 - parts[::-1].index("images")
        parts[index] = "labels"
    return os.path.join(os.sep.join(parts), os.path.splitext(name)[0] + ".txt")


def _read_yaml(path):
    import yaml

    class NoAliases(yaml.SafeLoader):
        """PyYAML's safe loader without aliases: a few hundred bytes of nested aliases expand to
        gigabytes (a "billion laughs"), and a dataset file has no use for them."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, f"an alias (*{event.anchor}): aliases are not taken in "
                                                  f"a dataset file", event.start_mark)
            return super().compose_node(parent, index)

    try:
        if os.path.getsize(path) > MAX_YAML_BYTES:
            raise DataError(f"{path}: {os.path.getsize(path):,} bytes; a data.yaml is a few hundred (refused above "
                            f"{MAX_YAML_BYTES:,}).")
        with open(path, encoding="utf-8") as f:
            document = yaml.load(f, Loader=NoAliases)  # noqa: S506 - a SafeLoader, without aliases
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise DataError(f"{path}: not a YAML file we take ({' '.join(str(error).split())[:200]}).") from None
    if not isinstance(document, dict):
        raise DataError(f"{path}: not an Ultralytics data.yaml (a mapping with names, train and val).")
    return document


def _names(names, where):
    """YOLO `names` (a list, or a dict of index -> name) -> a label map, ids = indices."""
    if isinstance(names, dict) and all(isinstance(k, int) and k >= 0 for k in names):
        pairs = sorted(names.items())
    elif isinstance(names, list):
        pairs = list(enumerate(names))
    else:
        raise DataError(f"{where}: 'names' must be a list of class names or a {{index: name}} mapping.")
    for i, name in pairs:
        if not isinstance(name, str) or not name.strip():
            shown = repr(name) if len(repr(name)) < 60 else f"a {type(name).__name__} of {len(repr(name)):,} characters"
            raise DataError(f"{where}: class {i}'s name is {shown}; class names are non-empty text.")
    return [{"id": int(i), "name": n} for i, n in pairs]


def read_yolo_names(path):
    """The label map (ids = YOLO class indices) of a data.yaml's `names`, or of a classes.txt /
    obj.names file (one name per line)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file; give a data.yaml or a classes.txt.")
    if os.path.splitext(path)[1].lower() in (".yaml", ".yml"):
        document = _read_yaml(path)
        if not isinstance(document, dict) or "names" not in document:
            raise DataError(f"{path}: no 'names' key; an Ultralytics data.yaml has one.")
        return _names(document["names"], path)
    with open(path, encoding="utf-8") as f:
        return _names([line.strip() for line in f if line.strip()], path)


def _pictures(entry, root, where):
    """Picture paths of a data.yaml split entry (folder, .txt list, or a list of them)."""
    found = []
    for item in entry if isinstance(entry, list) else [entry]:
        full = os.path.join(root, str(item))
        if os.path.isdir(full):
            for folder, _, files in sorted(os.walk(full)):
                found += [os.path.join(folder, n) for n in sorted(files)
                          if os.path.splitext(n)[1].lower() in image_lib.picture_extensions()]
        elif os.path.isfile(full):
            with open(full, encoding="utf-8") as f:
                lines = [line.strip() for line in f if line.strip()]
            found += [line if os.path.isabs(line) else os.path.join(os.path.dirname(full), line) for line in lines]
        else:
            raise DataError(f"{where}: {item!r} is neither a folder of pictures nor a list file ({full}).")
    return found, root


def _from_folder(path, images_dir):
    """(pictures, label map, images folder) of a folder of label files with a names file."""
    names_file = next((os.path.join(folder, n) for folder in (path, os.path.dirname(os.path.abspath(path)))
                       for n in NAMES_FILES if os.path.isfile(os.path.join(folder, n))), None)
    if names_file is None:
        raise DataError(f"{path}: YOLO labels need their class names: {' or '.join(NAMES_FILES)} in {path} or "
                        f"its parent folder (or give a data.yaml).")
    with open(names_file, encoding="utf-8") as f:
        label_map = _names([line.strip() for line in f if line.strip()], names_file)
    sibling = os.path.join(os.path.dirname(os.path.abspath(path)), "images")
    images_dir = images_dir or (sibling if os.path.isdir(sibling) else path)
    pictures = sorted(os.path.join(images_dir, n) for n in os.listdir(images_dir)
                      if os.path.splitext(n)[1].lower() in image_lib.picture_extensions())
    return pictures, label_map, images_dir


def _boxes(label_file, classes, report):
    """[(class index, normalised yxyx box, line name)] of a label file; problems reported."""
    found = []
    if os.path.getsize(label_file) > MAX_LABEL_BYTES:
        report.add("unreadable_annotations", f"{label_file}: larger than {MAX_LABEL_BYTES >> 20} MB")
        return None
    with open(label_file, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{label_file} line {number}"
            try:
                cls, values = int(fields[0]), np.array([float(v) for v in fields[1:]], np.float64)
            except ValueError:
                report.add("malformed_annotation", f"{where}: {line.strip()[:80]!r}")
                continue
            if len(values) == 4:
                cx, cy, w, h = values
                box = [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]
            elif len(values) >= 6 and len(values) % 2 == 0:  # a polygon: its bounding box
                xs, ys = values[0::2], values[1::2]
                box = [ys.min(), xs.min(), ys.max(), xs.max()]
            else:
                report.add("malformed_annotation", f"{where}: {len(fields)} values ({line.strip()[:80]!r})")
                continue
            if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
                report.add("out_of_range", f"{where}: {line.strip()[:80]!r}")
                continue
            if cls not in classes:
                report.add("unknown_category", f"{where}: class {cls}")
                continue
            found.append((classes[cls], box, where))
    return found


def read_yolo(path, split="train", images_dir=None, skip_bad_examples=False):
    if not os.path.exists(path):
        raise DataError(f"YOLO annotations not found: {path}")
    if os.path.isfile(path):
        document = _read_yaml(path)
        for key in ("names", split):
            if key not in document:
                raise DataError(f"{path}: no {key!r} key; an Ultralytics data.yaml has names, train and val.")
        label_map = _names(document["names"], path)
        root = os.path.join(os.path.dirname(os.path.abspath(path)), str(document.get("path") or ""))
        pictures, images_dir = _pictures(document[split], root, path)
        name = f"{path} {split}"
    else:
        pictures, label_map, images_dir = _from_folder(path, images_dir)
        name = path
    classes = {entry["id"]: index for index, entry in enumerate(label_map)}
    report = cleaning.DataReport(name)
    entries, used, pending = [], set(), []
    for number, picture in enumerate(sorted(pictures), start=1):
        entry = {"id": number, "file": picture, "bad": None, "anns": []}
        entries.append(entry)
        if not picture_source.inside(images_dir, picture):
            entry["bad"] = "outside_folder"
            report.add("outside_folder", f"{name}: {picture}")
            continue
        label_file = _label_path(picture) if os.path.isfile(path) else os.path.join(
            path, os.path.splitext(os.path.basename(picture))[0] + ".txt")
        used.add(os.path.normpath(label_file))
        picture_source.check_picture(entry, None, report, orientation="shown")
        if entry["bad"] is not None:
            continue
        if not os.path.isfile(label_file):
            report.add("no_annotation_file", picture)
            continue
        found = _boxes(label_file, classes, report)
        if found is None:
            entry["bad"] = "unreadable_annotations"
            continue
        height, width = entry["hw"]
        scale = np.array([height, width, height, width], np.float64)
        pending.append((entry, found, np.array([b for _, b, _ in found], np.float64).reshape(-1, 4) * scale))
    judged = picture_source.judge([(entry["hw"], pixels) for entry, _, pixels in pending])
    for (entry, found, pixels), (clipped, verdicts) in zip(pending, judged):
        for (cls, _, where), box, fixed, verdict in zip(found, pixels, clipped, verdicts):
            if picture_source.report_box(report, verdict, f"{where}: box {np.round(box, 1).tolist()}", entry["hw"]):
                entry["anns"].append((fixed, cls, False, float((fixed[2] - fixed[0]) * (fixed[3] - fixed[1]))))
    if os.path.isdir(path):  # label files that name no picture
        for label in sorted(os.listdir(path)):
            full = os.path.normpath(os.path.join(path, label))
            if label.endswith(".txt") and label not in NAMES_FILES and full not in used:
                report.add("orphan_annotations", full)
    return picture_source.finish(name, label_map, entries, report, skip_bad_examples)
