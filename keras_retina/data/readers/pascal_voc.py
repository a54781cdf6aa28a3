"""Pascal VOC XML (labelImg, CVAT, most aerial and ecology datasets) -> a source.

`read_pascal_voc(path, images_dir=None, label_map=None, classes=None, skip_bad_examples=False)`:
`path` is a folder of `.xml` files, one per picture (its `<filename>` in `images_dir`, default the
XML folder; pictures there without an XML are negatives), or a list file `ImageSets/Main/*.txt`
of a VOC-layout folder (`Annotations/<id>.xml`, pictures in `JPEGImages/` unless `images_dir`).
Objects: `<name>`, `<bndbox>` with VOC's 1-based pixel corners (xmin, ymin become 0-based, as
detectron2 reads VOC), `<difficult>` 1: kept as a crowd box, never a positive and ignored when
scoring (VOC's evaluation). Classes: `label_map` (a training split's, for its validation split),
else `classes` (`data.label_map.read_class_names`), else the names found, sorted, ids 1..K.

XML is parsed by defusedxml: no entity expansion, no external entity or DTD is ever fetched; a
file over MAX_XML_BYTES, not XML, or holding such constructs is a bad annotation file. Every
problem is named (file, object number), counted and reported as `picture_source` does.
"""

import os

import numpy as np

from keras_retina.data import cleaning
from keras_retina.data.readers import picture_source
from keras_retina.errors import DataError
from keras_retina.ops import images as image_lib

MAX_XML_BYTES = 16 << 20


def _parse(path):
    """The XML's root element; ValueError with the reason for a file we refuse."""
    import xml.etree.ElementTree as ElementTree

    import defusedxml
    import defusedxml.ElementTree as SafeTree

    if os.path.getsize(path) > MAX_XML_BYTES:
        raise ValueError(f"larger than {MAX_XML_BYTES >> 20} MB")
    try:
        return SafeTree.parse(path, forbid_dtd=True).getroot()
    except defusedxml.DefusedXmlException as error:
        raise ValueError(f"refused: {type(error).__name__}") from None
    except ElementTree.ParseError as error:
        raise ValueError(f"not XML ({error})") from None


def _number(element, tag):
    text = element.findtext(tag)
    value = float(text)  # ValueError / TypeError on a missing or malformed number
    if not np.isfinite(value):
        raise ValueError(f"{tag} {text}")
    return value


def _objects(root, where):
    """[(name, yxyx pixel box or None when malformed, difficult, message name)] of an annotation."""
    found = []
    for number, obj in enumerate(root.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        label = f"{where} object {number} ({name or 'no name'})"
        difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true", "True")
        box = obj.find("bndbox")
        try:
            xmin, ymin, xmax, ymax = (_number(box, tag) for tag in ("xmin", "ymin", "xmax", "ymax"))
            found.append((name, [ymin - 1.0, xmin - 1.0, ymax, xmax], difficult, label))
        except (ValueError, TypeError, AttributeError):
            found.append((name, None, difficult, label))
    return found


def _files(path, images_dir):
    """[xml path], images folder, name for messages."""
    if os.path.isfile(path):  # ImageSets/Main/<split>.txt of a VOC layout
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path))))
        images_dir = images_dir or os.path.join(root, "JPEGImages")
        with open(path, encoding="utf-8") as f:
            ids = [line.split()[0] for line in f if line.strip()]
        annotations = os.path.join(root, "Annotations")
        outside = [i for i in ids if not picture_source.inside(annotations, os.path.join(annotations, f"{i}.xml"))]
        if outside:
            raise DataError(f"{path}: ids {outside[:3]} name files outside {annotations}; an ImageSets list holds "
                            f"plain ids (2008_000008).")
        return [os.path.join(annotations, f"{i}.xml") for i in ids], images_dir, path
    images_dir = images_dir or path
    xmls = sorted(os.path.join(path, n) for n in os.listdir(path) if n.lower().endswith(".xml"))
    return xmls, images_dir, path


def read_pascal_voc(path, images_dir=None, label_map=None, classes=None, skip_bad_examples=False):
    if not os.path.exists(path):
        raise DataError(f"Pascal VOC annotations not found: {path}")
    files, images_dir, name = _files(path, images_dir)
    if not os.path.isdir(images_dir):
        raise DataError(f"images folder not found: {images_dir} (for {path})")
    report = cleaning.DataReport(name)
    parsed, unreadable = [], set()  # (picture path, declared hw, objects, xml path); stems of broken XMLs
    for xml_path in files:
        where = os.path.basename(xml_path)
        try:
            root = _parse(xml_path)
        except (OSError, ValueError) as error:
            report.add("unreadable_annotations", f"{xml_path}: {getattr(error, 'strerror', None) or error}")
            unreadable.add(os.path.splitext(where)[0])
            continue
        filename = (root.findtext("filename") or "").strip() or os.path.splitext(where)[0] + ".jpg"
        size = root.find("size")
        try:
            declared = (int(float(size.findtext("height"))), int(float(size.findtext("width"))))
            declared = declared if min(declared) > 0 else None  # labelImg writes 0 when it does not know
        except (AttributeError, TypeError, ValueError):
            declared = None
        parsed.append((os.path.join(images_dir, filename), declared, _objects(root, where), xml_path))
    names = sorted({o[0] for _, _, objects, _ in parsed for o in objects if o[0]})
    label_map = label_map or (classes if classes is not None else [{"id": i + 1, "name": n}
                                                                   for i, n in enumerate(names)])
    class_of = {entry["name"]: index for index, entry in enumerate(label_map)}
    entries, by_file = [], {}
    for picture, _, _, xml_path in parsed:
        by_file.setdefault(os.path.normpath(picture), []).append(xml_path)
    pending = []  # (entry, objects, boxes) of the pictures whose headers read
    for picture, declared, objects, xml_path in parsed:
        entry = {"file": picture, "bad": None, "anns": []}
        entries.append(entry)
        if not picture_source.inside(images_dir, picture):
            entry["bad"] = "outside_folder"
            report.add("outside_folder", f"{xml_path}: filename {os.path.relpath(picture, images_dir)!r} is outside "
                                         f"{images_dir}")
            continue
        if len(by_file[os.path.normpath(picture)]) > 1:
            entry["bad"] = "duplicate_annotations"
            report.add("duplicate_annotations", f"{picture} ({', '.join(by_file[os.path.normpath(picture)])})")
            continue
        picture_source.check_picture(entry, declared, report)
        if entry["bad"] is None:
            boxes = np.array([o[1] if o[1] is not None else [np.nan] * 4 for o in objects], np.float64)
            pending.append((entry, objects, boxes.reshape(-1, 4)))
    judged = picture_source.judge([(entry["hw"], boxes) for entry, _, boxes in pending])
    for (entry, objects, _), (clipped, verdicts) in zip(pending, judged):
        for (obj_name, box, difficult, label), fixed, verdict in zip(objects, clipped, verdicts):
            if box is None:
                report.add("malformed_annotation", f"{label}: bndbox is not four numbers")
            elif obj_name not in class_of:
                report.add("unknown_category", f"{label}: class {obj_name!r}")
            elif picture_source.report_box(report, verdict, f"{label}: box {np.round(box, 1).tolist()}",
                                           entry["hw"]):
                if difficult:
                    report.add("difficult", label)
                area = float((fixed[2] - fixed[0]) * (fixed[3] - fixed[1]))
                entry["anns"].append((fixed, class_of[obj_name], difficult, area))
    if os.path.isdir(path):  # pictures of the folder no XML names: negatives, reported
        named = set(by_file)
        for picture in sorted(os.listdir(images_dir)):
            full = os.path.normpath(os.path.join(images_dir, picture))
            stem, suffix = os.path.splitext(picture)
            # a picture whose XML did not parse is not a negative: it is left out with its XML
            if suffix.lower() in image_lib.picture_extensions() and full not in named and stem not in unreadable:
                entry = {"file": full, "bad": None, "anns": []}
                report.add("no_annotation_file", full)
                picture_source.check_picture(entry, None, report)
                entries.append(entry)
    for number, entry in enumerate(sorted(entries, key=lambda e: e["file"]), start=1):
        entry["id"] = number
    return picture_source.finish(name, label_map, entries, report, skip_bad_examples)
