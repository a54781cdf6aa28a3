"""What each `keras_retina` command does, from configurations and plain values (`cli` maps
flags to them).

- `train`: sources -> `training.train` -> summary printed and in model_dir/summary.json.
- `evaluate`: model_dir (`RunDir`) -> COCO metrics, printed and written as JSON.
- `check_data`: every problem in the data and the anchor coverage, with suggestions.
- `export`: model_dir -> a versioned SavedModel for TF Serving (`keras_retina.export`).
- `convert`: published torchvision / detectron2 weights -> a model_dir (`keras_retina.convert`).
- `predict` lives in `predict`.

Each takes `configs` ({"model": ModelConfig, "train": TrainConfig, "data": DataConfig}) and
`options` (the flags of the commands themselves: model_dir, export_dir, ...).
"""

import dataclasses
import os

import keras
import tensorflow as tf

from keras_retina import convert as convert_lib, evaluation, export as export_lib, fine_tuning, resize_policy, training
from keras_retina.builder import anchor_generator
from keras_retina.data import cleaning, coverage, pipeline
from keras_retina.config_fields import from_dict
from keras_retina.data.data_config import DataConfig
from keras_retina.data.sources import open_sources
from keras_retina.errors import DataError, UsageError
from keras_retina.optimization import is_chief, make_strategy
from keras_retina.precision import set_precision
from keras_retina.run_dir import RunDir, write_json


def train(configs, options):
    RunDir(options["model_dir"])  # a missing --model_dir is an error before any work
    weights = configs["model"].backbone_weights
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise DataError(f"--backbone_weights={weights!r}: no such weights file.")
    set_precision(configs["train"].mixed_precision)
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op (reading the data does).
    strategy = make_strategy(configs["train"].strategy)
    data = configs["data"]
    sources = open_sources(data)
    for report in sources.reports().values():
        print(report.format(skipping=data.skip_bad_examples), flush=True)
    model = configs["model"]
    if configs["train"].init_from:  # the anchors of the model it starts from
        model = fine_tuning.settings_from(model, configs["train"].init_from, options["model_dir"])
    try:
        report = coverage.anchor_coverage(sources.train, resize_policy.from_config(model), anchor_generator(model),
                                          max_images=min(options["max_images"], 500))
    except tf.errors.InvalidArgumentError:
        training.raise_if_undecodable(sources)
        raise  # not a data problem: TensorFlow's error and traceback
    print(coverage.format_coverage(report), flush=True)
    summary = training.train(options["model_dir"], model, configs["train"], sources, data, strategy,
                             allow_other_data=options["resume_with_other_data"])
    print(training.format_summary(summary), flush=True)
    if options["export_dir"] and is_chief(strategy):
        export(configs, options)
    return 0


def evaluate(configs, options):
    run = RunDir(options["model_dir"])
    set_precision(configs["train"].mixed_precision)
    net, label_map, config, checkpoint = run.load_model()
    data = configs["data"]
    if not data.sources_given():  # the run's own data, with this command's --skip_bad_examples
        saved = from_dict(DataConfig, config["data"], run.config_path)
        data = dataclasses.replace(saved, skip_bad_examples=data.skip_bad_examples)
    val = open_sources(data, need_train=False).val
    if val is None:
        raise UsageError("No validation data: give --val_annotations/--val_images, --tfds_name "
                         "(--tfds_val_split), --val_tfrecord or --demo_data.")
    if [e["id"] for e in val.label_map] != [e["id"] for e in label_map]:
        raise DataError(f"{val.name}: its categories differ from the model's {run.label_map_path}.")
    metrics = evaluation.evaluate_coco(
        net, pipeline.eval_dataset(val, net.resize_policy, configs["train"].batch_size), label_map)
    metrics["checkpoint"] = checkpoint
    print(f"COCO evaluation of {checkpoint} on {metrics['num_images']} images:")
    print(evaluation.format_metrics(metrics))
    path = options["output"] or run.metrics_path(checkpoint.rsplit("-", 1)[-1])
    write_json(metrics, path)
    print(f"Metrics written to {path}")
    return 0


def check_data(configs, options):
    """Reads every example (full image decode included) and reports every problem, what
    training would do with it (with and without --skip_bad_examples), then anchor coverage."""
    data, model = configs["data"], configs["model"]
    # Count everything rather than stop at the first bad image; say at the end what training does.
    sources = open_sources(dataclasses.replace(data, skip_bad_examples=True), need_train=False, load_train=True,
                           verify_images=True)
    label_map = sources.label_map
    problems = 0
    for split, source in (("train", sources.train), ("val", sources.val)):
        if source is None:
            continue
        print(f"[{split}] {len(label_map)} classes: {', '.join(e['name'] for e in label_map[:20])}"
              + (" ..." if len(label_map) > 20 else ""))
        count = source.num_examples if source.decoded else cleaning.count_examples(source.examples())
        print(f"[{split}] read and decoded {count} images")
        print(source.report.format(skipping=data.skip_bad_examples))
        problems += len(source.report.problems())
        report = coverage.anchor_coverage(source, resize_policy.from_config(model), anchor_generator(model),
                                          max_images=options["max_images"])
        print(coverage.format_coverage(report))
    if problems and not data.skip_bad_examples:
        print("Training on this data stops with an error listing the problems above; fix them or "
              "pass --skip_bad_examples.")
    return 0


def postprocess_overrides(options):
    return {"score_threshold": options.get("nms_score_threshold"), "pre_nms_top_k": options.get("pre_nms_top_k"),
            "nms_iou_threshold": options.get("nms_iou_threshold"), "max_detections": options.get("max_detections")}


def export(configs, options):
    if not options["model_dir"] or not options["export_dir"]:
        raise UsageError("export needs --model_dir (the trained model) and --export_dir "
                         "(e.g. serving/retinanet; versions go in numbered subfolders).")
    set_precision(configs["train"].mixed_precision)
    net, label_map, _, checkpoint = RunDir(options["model_dir"]).load_model()
    path = export_lib.export_saved_model(net, label_map, options["export_dir"], options["version"],
                                         **postprocess_overrides(options))
    base = os.path.abspath(options["export_dir"])
    precision = keras.mixed_precision.global_policy().name
    print(f"Exported {checkpoint} ({precision}) to {path}\n"
          f"  signatures: serving_default (encoded image bytes), serving_image_tensor (uint8)\n"
          f"  serve with: tensorflow_model_server --port=8500 --rest_api_port=8501 "
          f"--model_name={os.path.basename(base.rstrip('/'))} --model_base_path={base}")
    return 0


def convert(configs, options):
    if not options["model_dir"] or not options["source"] or not options["weights"]:
        raise UsageError("convert needs --source (torchvision or detectron2), --weights (the downloaded file) and "
                         "--model_dir (a new folder).")
    summary = convert_lib.convert(options["source"], options["weights"], options["model_dir"])
    print(convert_lib.format_summary(summary), flush=True)
    return 0
