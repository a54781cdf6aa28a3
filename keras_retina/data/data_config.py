"""DataConfig: where the training and validation data come from, declared once.

Exactly one training source: annotation files (`train_annotations`: COCO JSON, Pascal VOC, YOLO
or CSV, `readers.annotation_files`), a TFDS dataset (`tfds_name`), TFRecords (`train_tfrecord`)
or the synthetic demo data (`demo_data`). `val_fraction` holds out part of the training
pictures for validation when no validation data is given (`val_split`: by scene, or by name as
before; `saved_data_settings` reads an older config.json as it was made). The
command line's data flags and `config.json["data"]` (which `evaluate` reads to find the
validation data again) derive from these fields; `data.splits.open_sources` reads them.
"""

import dataclasses

from keras_retina.config_fields import check_fields, setting
from keras_retina.data.readers.annotation_files import FORMATS

VAL_SPLITS = ("scenes", "names")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    demo_data: str = setting(None, "Generate (once) the synthetic demo dataset in this folder and use it.")
    train_annotations: str = setting(
        None, "Training annotations: a COCO JSON file, a folder of Pascal VOC .xml files (or a VOC "
        "ImageSets/Main/*.txt list), an Ultralytics data.yaml or a folder of YOLO .txt labels, or a CSV "
        "(path,x1,y1,x2,y2,class).")
    train_images: str = setting(None, "Picture folder for --train_annotations (COCO JSON; VOC and YOLO folders "
                                "default to the labels' own or sibling images/ folder).")
    val_annotations: str = setting(None, "Validation annotations, in any format --train_annotations takes.")
    val_images: str = setting(None, "Picture folder for --val_annotations.")
    annotation_format: str = setting("auto", "The annotations' format; auto recognises it from the path and its "
                                     "contents.", choices=FORMATS)
    classes: str = setting(None, "Pascal VOC / CSV: a classes file, `name,id` lines (fizyr's) or one name per line; "
                           "default: the names found, sorted, ids 1..K.")
    val_fraction: float = setting(
        0.0, "Hold out this share of the training pictures for validation when no validation data is given: "
        "chosen by a hash of each file name, so the split stays when pictures are added.",
        (lambda v: 0 <= v < 1, "must be in [0, 1)."))
    val_split: str = setting(
        "scenes", "--val_fraction: scenes (copies and overlapping views of one scene, e.g. tiles of one picture, stay "
        "on one side: data/near_duplicates.py) or names (each picture by its file name alone: how model_dirs made "
        "before keras_retina 0.3 were split, and resume).", choices=VAL_SPLITS)
    tfds_name: str = setting(None, "TFDS dataset, e.g. coco/2017.")
    tfds_data_dir: str = setting(None, "TFDS data_dir.")
    tfds_train_split: str = setting("train", "TFDS training split.")
    tfds_val_split: str = setting("validation", "TFDS validation split.")
    train_tfrecord: str = setting(None, "TFRecord file pattern (TF OD API layout) for training.")
    val_tfrecord: str = setting(None, "TFRecord file pattern for validation.")
    label_map: str = setting(None, "Label map for TFRecords (.json or .pbtxt); default: scan the ids.")
    skip_bad_examples: bool = setting(
        False, "Skip unreadable/missing images and drop broken annotations (each counted and reported) "
        "instead of stopping with an error that lists them. Every image is decoded once before training.")

    def __post_init__(self):
        check_fields(self)

    def sources_given(self):
        """Whether any data source is named (evaluate falls back to the model_dir's otherwise)."""
        return any(getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name not in ("tfds_train_split", "tfds_val_split", "skip_bad_examples", "annotation_format",
                                     "classes", "val_fraction", "val_split"))


def saved_data_settings(values):
    """Data settings as a config.json holds them -> the same data: a model_dir made before
    `val_split` existed held its --val_fraction pictures out by name."""
    if isinstance(values, dict) and "val_split" not in values:
        values = {**values, "val_split": "names" if values.get("val_fraction") else "scenes"}
    return values
