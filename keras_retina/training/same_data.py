"""A resumed model_dir trains on the data it was made with: the split it was made with
(`as_made`) and the same label map and data flags (`check_same_data`)."""

import dataclasses
import os

import tensorflow as tf

from keras_retina.data.data_config import DataConfig, saved_data_settings
from keras_retina.errors import DataError, UsageError


def as_made(run, data_config):
    """A resumed model_dir made before --val_split existed keeps the split it was made with (by name)."""
    if not data_config.val_fraction or not run.has_config():
        return data_config
    saved = run.read_config().get("data", {})
    if "val_split" not in saved and data_config.val_split != "names":
        print(f"[data] --model_dir={run.path} was split by file name (made before --val_split): it resumes on that "
              f"split (--val_split=names); a new --model_dir splits by scene.", flush=True)
        return dataclasses.replace(data_config, val_split="names")
    return data_config


def check_same_data(run, label_map, data_config):
    """A resumed run must train on the data it started with: the same label map (same ids and
    names) and the same data flags; otherwise a UsageError naming what changed."""
    if not tf.io.gfile.exists(run.label_map_path):
        raise DataError(f"--model_dir={run.path} has checkpoints but no label_map.json; use a new --model_dir.")
    previous = run.read_label_map()
    if previous != label_map:
        shown = lambda entries: ", ".join(f"{e['id']}:{e['name']}" for e in entries[:6])  # noqa: E731
        raise UsageError(f"--model_dir={run.path} was trained on other categories ({shown(previous)}) than this "
                         f"data's ({shown(label_map)}); use a new --model_dir, or --resume_with_other_data to "
                         f"continue this model on the new data.")
    saved = {**dataclasses.asdict(DataConfig()), **saved_data_settings(run.read_config()["data"])}
    same = lambda a, b: a == b or (isinstance(a, str) and isinstance(b, str)  # noqa: E731
                                   and os.path.normpath(a) == os.path.normpath(b))
    changed = sorted(k for k, v in dataclasses.asdict(data_config).items()
                     if k != "skip_bad_examples" and not same(saved.get(k), v))
    if changed:
        raise UsageError(f"--model_dir={run.path} was trained on other data ({', '.join(changed)} differ from its "
                         f"config.json); use a new --model_dir, or --resume_with_other_data to continue it on "
                         f"this data.")
