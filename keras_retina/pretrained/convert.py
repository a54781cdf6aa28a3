"""`keras_retina convert`: a published COCO RetinaNet (torchvision `.pth`, detectron2 `.pkl`) -> a
model_dir that `predict`, `evaluate`, `export` and `train --init_from` take.

    convert("torchvision", "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth", "runs/coco_v2")

reads the file without torch (`weight_files`, never running pickled code), recognises the
variant and builds our RetinaNet with that variant's settings (`published_weights`), assigns
every tensor after checking all of them, writes model_dir/config.json (its ModelConfig, an empty
"train" section, default data), label_map.json (the 80 COCO categories: `data.coco_categories`),
checkpoints/ (step 0, as training writes them), summary.json (what was converted, from which
file) and model.keras, and returns the summary dict. UsageError: an unknown source, no weights,
a model_dir that holds a model already (never overwritten). Nothing is written until every
tensor has been checked; a conversion that fails while writing removes the folder it made.
"""

import dataclasses
import hashlib
import os
import shutil
import time

import tensorflow as tf

from keras_retina.data import coco_categories
from keras_retina.data.data_config import DataConfig
from keras_retina.errors import UsageError
from keras_retina.files import exclusive, replace_atomically
from keras_retina.model_dir import ModelDir
from keras_retina.modeling.retinanet import RetinaNet
from keras_retina.pretrained import published_weights
from keras_retina.pretrained.weight_files import read_weights


def build_converted(source: str, weights: str) -> tuple[RetinaNet, published_weights.Variant, int]:
    """(RetinaNet holding the converted weights, Variant, tensors assigned) of a weight file."""
    state = published_weights.normalise_keys(source, read_weights(weights), weights)
    variant = published_weights.recognise(source, state, weights)
    model = RetinaNet(num_classes=len(coco_categories.LABEL_MAP), **variant.settings)
    count = published_weights.load(variant, state, model, weights)
    return model, variant, count


def convert(source: str, weights: str, model_dir: str) -> dict:
    """Converts `weights` of `source` ("torchvision" or "detectron2") into a new `model_dir`;
    returns the summary dict (module docstring)."""
    start = time.time()
    if source not in published_weights.SOURCES:
        raise UsageError(f"--source={source!r}: choose one of {', '.join(published_weights.SOURCES)}.")
    if not weights:
        raise UsageError("convert needs --weights: the downloaded .pth (torchvision) or .pkl (detectron2) file.")
    run = ModelDir(model_dir)
    if run.has_config() or run.latest_checkpoint():
        raise UsageError(f"--model_dir={model_dir} already holds a model; give a new folder to convert into.")
    model, variant, count = build_converted(source, weights)
    created = not os.path.exists(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    try:
        return _write(run, model, variant, count, source, weights, start=start)
    except BaseException:  # a full disk, an interrupt: leave no half-written model_dir behind
        if created:
            shutil.rmtree(model_dir, ignore_errors=True)
        raise


def _write(run, model, variant, count, source, weights, *, start):
    with exclusive(run.write_path, "keras_retina convert"):
        run.write_label_map(coco_categories.LABEL_MAP)
        # "train" is empty: this model was converted, not trained here
        run.write_config({"model": model.config.to_json(), "train": {},
                          "data": dataclasses.asdict(DataConfig())})
        checkpoint = run.checkpoint_manager(tf.train.Checkpoint(model=model)).save(checkpoint_number=0)
        replace_atomically(run.keras_path, model.save)
        summary = {"converted_from": os.path.abspath(weights), "sha256_prefix": _sha256_prefix(weights),
                   "source": source, "variant": variant.name, "tensors": count,
                   "parameters": int(model.count_params()), "classes": len(coco_categories.LABEL_MAP),
                   "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in variant.settings.items()},
                   "model_dir": run.path, "checkpoint": checkpoint, "keras_model": run.keras_path,
                   "seconds": round(time.time() - start, 1)}
        run.write_summary(summary)
    return summary


def _sha256_prefix(path):
    """The first 8 hex digits of the file's SHA-256: torchvision names its files with them."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:8]


def format_summary(summary):
    settings = summary["settings"]
    return "\n".join([
        "", "=" * 72,
        f"Converted {summary['variant']} from {summary['converted_from']} (sha256 {summary['sha256_prefix']}...):",
        f"  {summary['tensors']} tensors, {summary['parameters']:,} parameters, {summary['classes']} COCO classes "
        f"({summary['seconds']:.0f} s).",
        f"  settings: backbone {settings['backbone']}, anchors {settings['anchor_geometry']}, P6 from "
        f"{settings['p6_input']}, heads norm {settings['head_norm']}, shorter side {settings['image_size']} "
        f"(longer at most {settings['max_image_size']}), {settings['max_detections']} detections per image.",
        f"Model dir:   {summary['model_dir']}",
        f"Checkpoint:  {summary['checkpoint']}",
        f"Model:       {summary['keras_model']}",
        f"Next: keras_retina predict --model_dir={summary['model_dir']} photo.jpg | export --model_dir=... "
        f"--export_dir=... | train --init_from={summary['model_dir']} ...",
        "=" * 72])
