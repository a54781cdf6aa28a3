"""A CSV of boxes in fizyr/keras-retinanet's format -> a source.

`read_csv_annotations(path, label_map=None, classes=None, skip_bad_examples=False)`: one box a
row, `path,x1,y1,x2,y2,class` (a first row whose four corners are all words, not numbers, is a
header and skipped), pixel corners of the picture as stored (fizyr
reads pictures without applying EXIF orientation); `path,,,,,` for a picture without objects.
Picture paths are relative to the CSV file's folder and must stay inside it. Classes:
`label_map` (a training split's, for its validation split), else `classes`
(`data.label_map.read_class_names`: fizyr's `name,id` lines), else the names found, sorted, ids
1..K. Malformed rows, unknown classes and bad boxes are named by file and line and counted
(`picture_source`).
"""

import csv
import os

import numpy as np

from keras_retina.data import cleaning
from keras_retina.data.readers import picture_source
from keras_retina.errors import DataError


def _is_header(row):
    """A row of six cells whose four corner cells are all words (x1, xmin, ...), none a number."""
    if len(row) != 6:
        return False
    for cell in row[1:5]:
        try:
            float(cell)
            return False
        except ValueError:
            if not cell.strip():
                return False
    return True


def read_csv_annotations(path, label_map=None, classes=None, skip_bad_examples=False):
    if not os.path.isfile(path):
        raise DataError(f"CSV annotations not found: {path}")
    folder = os.path.dirname(os.path.abspath(path))
    report = cleaning.DataReport(path)
    rows = {}  # picture -> [(box or None, class name, where)]
    first = True
    try:
        with open(path, encoding="utf-8", newline="") as f:
            for number, row in enumerate(csv.reader(f), start=1):
                where = f"{path} line {number}"
                if not row or not "".join(row).strip():
                    continue
                if first and _is_header(row):
                    first = False
                    continue
                first = False
                if len(row) != 6 or not row[0].strip():
                    report.add("malformed_annotation", f"{where}: {len(row)} columns, expected "
                                                       f"path,x1,y1,x2,y2,class ({','.join(row)[:80]!r})")
                    continue
                picture = os.path.join(folder, row[0].strip())
                boxes = rows.setdefault(picture, [])
                if not any(cell.strip() for cell in row[1:]):
                    continue  # a picture without objects
                try:
                    x1, y1, x2, y2 = (float(cell) for cell in row[1:5])
                    box = [y1, x1, y2, x2]
                except ValueError:
                    report.add("malformed_annotation", f"{where}: corners {row[1:5]} are not numbers")
                    continue
                boxes.append((box, row[5].strip(), where))
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: not a CSV text file ({error}).") from None
    if label_map is None:
        names = sorted({cls for boxes in rows.values() for _, cls, _ in boxes})
        label_map = classes if classes is not None else [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    class_of = {entry["name"]: index for index, entry in enumerate(label_map)}
    entries, pending = [], []
    for number, (picture, boxes) in enumerate(sorted(rows.items()), start=1):
        entry = {"id": number, "file": picture, "bad": None, "anns": []}
        entries.append(entry)
        if not picture_source.inside(folder, picture):
            entry["bad"] = "outside_folder"
            report.add("outside_folder", f"{path}: {os.path.relpath(picture, folder)}")
            continue
        picture_source.check_picture(entry, None, report, orientation="stored")
        if entry["bad"] is None:
            pending.append((entry, boxes, np.array([b for b, _, _ in boxes], np.float64).reshape(-1, 4)))
    judged = picture_source.judge([(entry["hw"], pixels) for entry, _, pixels in pending])
    for (entry, boxes, _), (clipped, verdicts) in zip(pending, judged):
        for (box, cls, where), fixed, verdict in zip(boxes, clipped, verdicts):
            if cls not in class_of:
                report.add("unknown_category", f"{where}: class {cls!r}")
            elif picture_source.report_box(report, verdict, f"{where}: box {np.round(box, 1).tolist()}",
                                           entry["hw"]):
                area = float((fixed[2] - fixed[0]) * (fixed[3] - fixed[1]))
                entry["anns"].append((fixed, class_of[cls], False, area))
    return picture_source.finish(path, label_map, entries, report, skip_bad_examples)
