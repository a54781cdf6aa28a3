"""DataConfig: where the training and validation data come from, declared once.

Exactly one training source: COCO JSON (`train_annotations` + `train_images`), a TFDS dataset
(`tfds_name`), TFRecords (`train_tfrecord`) or the synthetic demo data (`demo_data`). The
command line's data flags and `config.json["data"]` (which `evaluate` reads to find the
validation data again) derive from these fields; `data.splits.open_sources` reads them.
"""

import dataclasses

from keras_retina.config_fields import check_fields, setting


@dataclasses.dataclass(frozen=True)
class DataConfig:
    demo_data: str = setting(None, "Generate (once) the synthetic demo dataset in this folder and use it.")
    train_annotations: str = setting(None, "COCO JSON for training.")
    train_images: str = setting(None, "Image folder for --train_annotations.")
    val_annotations: str = setting(None, "COCO JSON for validation.")
    val_images: str = setting(None, "Image folder for --val_annotations.")
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
                   if f.name not in ("tfds_train_split", "tfds_val_split", "skip_bad_examples"))
