"""Data flags (`DataConfig`) -> the training and validation sources and their label map.

`open_sources(config)` reads each named source and runs its dirty-data pass (annotation files:
while parsing; TFRecord, TFDS: `RecordSource.checked`, one pass without decoding images, every
image decoded too under --skip_bad_examples or `verify_images`). Problems are a DataError listing
them unless --skip_bad_examples, then skipped or dropped and counted in each source's `report`.
With `val_fraction`, the training pictures whose file name hashes below it become the validation
source (`held_out`: stable when pictures are added, the same on every run and in `evaluate`); with
`val_split="scenes"` (the default) copies and overlapping views of one scene (`near_duplicates`)
all follow the name that comes first among them, so no scene is on both sides.
"""

import dataclasses
import hashlib
import os

from keras_retina.data import near_duplicates, synthetic
from keras_retina.data.label_map import read_class_names, read_label_map
from keras_retina.data.readers import tfds_coco, tfrecord
from keras_retina.data.readers.annotation_files import read_annotations
from keras_retina.errors import DataError, UsageError


@dataclasses.dataclass(frozen=True)
class Sources:
    train: object  # a source (`data.source`) or None
    val: object
    label_map: list

    def reports(self):
        """{"train"/"val": DataReport} of the sources read."""
        return {split: source.report for split, source in (("train", self.train), ("val", self.val))
                if source is not None and source.report is not None}


def open_sources(config, need_train=True, load_train=None, verify_images=None):
    """`need_train`: exactly one training source is required. `load_train` (default:
    need_train): read the TFDS/TFRecord training split too. `verify_images` (default:
    --skip_bad_examples): decode every TFRecord/TFDS image in the pass."""
    load_train = need_train if load_train is None else load_train
    skip = config.skip_bad_examples
    decode = skip if verify_images is None else verify_images
    _refuse_mixed_kinds(config)
    if config.demo_data:
        paths = synthetic.write_coco_dataset(config.demo_data)
        config = dataclasses.replace(config, train_annotations=paths["train"][0], train_images=paths["train"][1],
                                     val_annotations=paths["val"][0], val_images=paths["val"][1])
    if need_train and not any(getattr(config, name) for name in ("train_annotations", "tfds_name", "train_tfrecord")):
        raise UsageError("Give exactly one training source: --train_annotations (COCO JSON, Pascal VOC, YOLO, "
                         "CSV), --tfds_name, --train_tfrecord, or --demo_data; got none.")
    found = {}
    if config.train_annotations or config.val_annotations:
        classes = read_class_names(config.classes) if config.classes else None
        label_map = None
        named = {"train": config.train_annotations, "val": config.val_annotations}
        if not named["val"] and not config.val_fraction and _is_yaml(named["train"]):
            named["val"] = named["train"]  # an Ultralytics data.yaml names its validation split too
        for split, annotations in named.items():
            if annotations:
                found[split] = read_annotations(annotations, getattr(config, f"{split}_images"),
                                                config.annotation_format, split, label_map, classes,
                                                skip_bad_examples=skip, flag=f"--{split}_annotations")
                label_map = found[split].label_map  # the validation split takes the training split's classes
        if len(found) == 2 and found["train"].label_map != found["val"].label_map:
            raise DataError(f"--val_annotations={config.val_annotations} has other categories "
                            f"than --train_annotations={config.train_annotations}.")
    elif config.tfds_name:
        splits = {"train": config.tfds_train_split if load_train else None, "val": config.tfds_val_split}
        for split, tfds_split in splits.items():
            if tfds_split:
                found[split] = tfds_coco.tfds_source(config.tfds_name, tfds_split, config.tfds_data_dir).checked(
                    skip, decode)
    elif config.train_tfrecord or config.val_tfrecord:
        pattern = config.train_tfrecord or config.val_tfrecord
        label_map = read_label_map(config.label_map) if config.label_map else tfrecord.scan_label_map(pattern)
        for split in ("train", "val"):
            pattern = getattr(config, f"{split}_tfrecord")
            if pattern and (split == "val" or load_train):
                found[split] = tfrecord.tfrecord_source(pattern, label_map).checked(skip, decode)
    if not found:
        raise UsageError("No data: give a training or validation source.")
    if config.val_fraction:
        found = _hold_out(found, config)
    label_map = next(iter(found.values())).label_map
    return Sources(found.get("train"), found.get("val"), label_map)


def _is_yaml(path):
    return bool(path) and os.path.isfile(path) and os.path.splitext(path)[1].lower() in (".yaml", ".yml")


def held_out(file_name, fraction):
    """Whether a picture goes to the validation split: its file name's SHA-1 as a number in [0, 1)
    below `fraction` (independent of the other pictures, so adding pictures moves none)."""
    digest = hashlib.sha1(os.path.basename(file_name).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _hold_out(found, config):
    """{"train", "val"} with `config.val_fraction` of the training pictures moved to "val"."""
    if "val" in found and "train" in found:
        given = config.val_annotations or config.val_tfrecord or config.tfds_val_split
        raise UsageError(f"--val_fraction={config.val_fraction} holds out validation pictures from the training "
                         f"data, but validation data is given too ({given}); give one of them.")
    train = found.get("train") or found.get("val")
    if not hasattr(train, "subset"):
        raise UsageError(f"--val_fraction works with annotation files (COCO JSON, Pascal VOC, YOLO, CSV); "
                         f"{train.name} is a TFRecord / TFDS source: give its validation split instead.")
    files = [image["file"] for image in train.images]
    deciding = list(range(len(files)))  # the picture whose name decides each picture's side
    largest = []
    if config.val_split == "scenes":
        for group in near_duplicates.scene_groups(files):
            largest = max(largest, group, key=len)
            first = min(group, key=lambda i: os.path.basename(files[i]))
            for i in group:
                deciding[i] = first
    val = [i for i in range(len(files)) if held_out(files[deciding[i]], config.val_fraction)]
    chosen = set(val)
    moved = sum(held_out(files[i], config.val_fraction) != (i in chosen) for i in range(len(files)))
    if moved:
        print(f"[data] --val_fraction={config.val_fraction:g}: {moved} picture(s) follow a copy or an overlapping "
              f"view of their scene to its side (--val_split=scenes)", flush=True)
    if (not val or len(val) == len(train.images)) and len(largest) > len(files) // 2:
        raise UsageError(f"--val_fraction={config.val_fraction}: {len(largest)} of the {len(files)} pictures of "
                         f"{train.name} are one scene (copies or overlapping views of one another, e.g. "
                         f"{', '.join(os.path.basename(files[i]) for i in largest[:3])}: a fixed camera, tiles of one "
                         f"picture), which a split by scenes keeps on one side. Give validation pictures of other "
                         f"scenes (--val_annotations), or split by file name with --val_split=names (the metrics "
                         f"then measure pictures the model has nearly seen).")
    if not val or len(val) == len(train.images):
        raise UsageError(f"--val_fraction={config.val_fraction} holds out {len(val)} of {len(train.images)} "
                         f"pictures of {train.name}; choose a fraction that leaves both splits some.")
    return {"train": train.subset([i for i in range(len(train.images)) if i not in chosen], train.name),
            "val": train.subset(val, f"{train.name} (held out: {config.val_fraction:g})")}


_KINDS = {"--demo_data": ("demo_data",), "annotation files": ("train_annotations", "val_annotations"),
          "TFDS": ("tfds_name",), "TFRecord": ("train_tfrecord", "val_tfrecord")}


def _refuse_mixed_kinds(config):
    """Two kinds of source (a flagfile's --demo_data and a user's --train_annotations, say) are a
    UsageError naming the flags of both: never train on one of them silently."""
    given = {kind: [f"--{name}={getattr(config, name)}" for name in names if getattr(config, name)]
             for kind, names in _KINDS.items()}
    given = {kind: flags for kind, flags in given.items() if flags}
    if len(given) > 1:
        named = " and ".join(", ".join(flags) for flags in given.values())
        raise UsageError(f"{named} name different data sources; give one kind (clear a flagfile's flag with an "
                         f"empty value, e.g. --demo_data= or --tfds_name=).")
