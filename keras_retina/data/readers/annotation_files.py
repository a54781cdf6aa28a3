"""Which reader a path of annotations needs, and reading it: COCO JSON, Pascal VOC, YOLO or CSV.

`detect_format(path)` recognises the format from the path and what it holds: a `.json` file
(COCO), a `.yaml` / `.yml` (an Ultralytics data.yaml), a `.csv` (fizyr's CSV), a VOC
`ImageSets/Main/*.txt` list, a folder of `.xml` files (Pascal VOC) or of `.txt` label files
(YOLO); anything else is one DataError saying what was found. `read_annotations(path, ...)`
reads it with the format's reader (`FORMATS`, or the forced `annotation_format`) and returns a
`picture_source.PictureSource`. `split` names the data.yaml split of a YOLO dataset.
"""

import os

from keras_retina.errors import DataError, UsageError

FORMATS = ("auto", "coco", "voc", "yolo", "csv")
_SUFFIXES = {".json": "coco", ".yaml": "yolo", ".yml": "yolo", ".csv": "csv"}


def detect_format(path, flag="--train_annotations"):
    if os.path.isfile(path):
        suffix = os.path.splitext(path)[1].lower()
        parts = os.path.abspath(path).split(os.sep)
        if suffix in _SUFFIXES:
            return _SUFFIXES[suffix]
        if suffix == ".txt" and parts[-3:-1] == ["ImageSets", "Main"]:
            return "voc"
        raise DataError(f"{flag}={path}: a {suffix or 'suffix-less'} file is none of the annotation formats: COCO "
                        f"JSON (.json), an Ultralytics data.yaml (.yaml), a CSV (.csv) or a Pascal VOC list "
                        f"(ImageSets/Main/*.txt); give --annotation_format to force one.")
    if os.path.isdir(path):
        names = os.listdir(path)
        counts = {kind: sum(n.lower().endswith(kind) for n in names) for kind in (".xml", ".txt", ".json")}
        if counts[".xml"]:
            return "voc"
        if counts[".txt"]:
            return "yolo"
        raise DataError(f"{flag}={path}: a folder without .xml (Pascal VOC) or .txt (YOLO) label files; it holds "
                        f"{len(names)} entries ({', '.join(sorted(names)[:5]) or 'nothing'}"
                        f"{' ...' if len(names) > 5 else ''}).")
    raise DataError(f"{flag}={path}: no such file or folder.")


def read_annotations(path, images_dir=None, annotation_format="auto", split="train", label_map=None,
                     classes=None, *, skip_bad_examples=False, flag="--train_annotations"):
    """A source of `path` (module docstring); `label_map`: the training split's, for validation."""
    if annotation_format not in FORMATS:
        raise UsageError(f"--annotation_format={annotation_format}: choose one of {', '.join(FORMATS)}.")
    kind = detect_format(path, flag) if annotation_format == "auto" else annotation_format
    if kind == "coco":
        from keras_retina.data.readers.coco_json import read_coco_json

        if not images_dir:
            raise UsageError(f"{flag}={path} needs {flag.replace('annotations', 'images')} (the image folder).")
        return read_coco_json(path, images_dir, skip_bad_examples=skip_bad_examples)
    if kind == "voc":
        from keras_retina.data.readers.pascal_voc import read_pascal_voc

        return read_pascal_voc(path, images_dir, label_map, classes, skip_bad_examples)
    if kind == "yolo":
        from keras_retina.data.readers.yolo import read_yolo

        return read_yolo(path, split, images_dir, skip_bad_examples)
    from keras_retina.data.readers.csv_annotations import read_csv_annotations

    return read_csv_annotations(path, label_map, classes, skip_bad_examples)
