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
import sys

import keras
import tensorflow as tf

from keras_retina import convert as convert_lib, deployed_model, evaluation, export as export_lib, fine_tuning
from keras_retina import fixed_size_detector, images as image_lib, litert_export, onnx_export, postprocess
from keras_retina import resize_policy, training
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
    if options["export_dir"]:  # it exports at the end: its flags are checked now, not after training
        check_export_options(options)
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
    policy = resize_policy.from_config(model)
    if options["export_dir"] and options["format"] != "saved_model":
        export_file_path(options, policy)  # not written over after training
    try:
        report = coverage.anchor_coverage(sources.train, policy, anchor_generator(model),
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


_NO_VALIDATION_DATA = ("No validation data: give --val_annotations/--val_images, --tfds_name (--tfds_val_split), "
                       "--val_tfrecord or --demo_data")


def _validation_source(data, run):
    """The validation source of the data flags, else of `run`'s own config (with this command's
    --skip_bad_examples)."""
    if not data.sources_given():
        if run is None:
            raise UsageError(f"{_NO_VALIDATION_DATA}, or --model_dir (its data).")
        saved = from_dict(DataConfig, run.read_config()["data"], run.config_path)
        data = dataclasses.replace(saved, skip_bad_examples=data.skip_bad_examples)
    val = open_sources(data, need_train=False).val
    if val is None:
        raise UsageError(f"{_NO_VALIDATION_DATA}.")
    return val


def evaluate(configs, options):
    if options["model"]:
        return _evaluate_file(configs, options)
    run = RunDir(options["model_dir"])
    set_precision(configs["train"].mixed_precision)
    net, label_map, config, checkpoint = run.load_model()
    val = _validation_source(configs["data"], run)
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


def _evaluate_file(configs, options):
    """evaluate --model=FILE.tflite|.onnx: the file through its runtime, pictures letterboxed."""
    deployed = deployed_model.load(options["model"])
    val = _validation_source(configs["data"], RunDir(options["model_dir"]) if options["model_dir"] else None)
    metrics = evaluation.evaluate_deployed(deployed, val.examples(), val.label_map)
    metrics["model"] = options["model"]
    size = deployed.input_size
    print(f"COCO evaluation of {options['model']} ({deployed.metadata['quantize']}, input {size[0]}x{size[1]}) "
          f"on {metrics['num_images']} images of {val.name}:")
    print(evaluation.format_metrics(metrics))
    path = options["output"] or options["model"] + ".metrics.json"
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


# The command-line flag of each postprocessing setting (postprocess.SETTINGS).
POSTPROCESS_FLAGS = dict(zip(("nms_score_threshold", "pre_nms_top_k", "nms_iou_threshold", "max_detections"),
                             postprocess.SETTINGS))


def postprocess_overrides(options):
    return {setting: options.get(flag) for flag, setting in POSTPROCESS_FLAGS.items()}


def check_export_options(options):
    """Every export flag checked before any work (train calls this before training when it will
    export at the end)."""
    fmt = options["format"]
    if not options["model_dir"] or not (options["export_dir"] or (fmt != "saved_model" and options["output"])):
        raise UsageError("export needs --model_dir (the trained model) and --export_dir (e.g. serving/retinanet; "
                         "SavedModel versions go in numbered subfolders; --format=tflite|onnx may give --output=FILE "
                         "instead).")
    if options["quantize"] != "none" and fmt != "tflite":
        raise UsageError(f"--quantize={options['quantize']} is for --format=tflite (got --format={fmt}).")
    if options["calibration_images"] and options["quantize"] != "int8":
        raise UsageError("--calibration_images is for --format=tflite --quantize=int8.")
    if options["calibration_images"] and not os.path.isdir(options["calibration_images"]):
        raise DataError(f"--calibration_images={options['calibration_images']}: no such folder.")
    if fmt == "saved_model":
        for name in ("input_size", "output"):
            if options[name]:
                raise UsageError(f"--{name}={options[name]} is for --format=tflite|onnx; a SavedModel takes pictures "
                                 f"of any size and goes into --export_dir.")
        return None
    if options["version"]:
        raise UsageError(f"--version={options['version']} numbers SavedModels; a {fmt} file is named by --output.")
    if options["input_size"]:
        fixed_size_detector.parse_input_size(options["input_size"])
    if fmt == "onnx":
        onnx_export.require_converter()
    path = options["output"]
    if path and os.path.splitext(path)[1].lower() != f".{fmt}":
        raise UsageError(f"--output={path}: a --format={fmt} file ends in .{fmt}.")
    if "://" in (path or options["export_dir"]):
        raise UsageError(f"LiteRT and ONNX files are written to a local path; got {path or options['export_dir']}.")


def export_file_path(options, policy):
    """Where --format=tflite|onnx writes: --output, else export_dir/retinanet_HxW[_quantize].FORMAT
    (the input size: --input_size or the policy's default); refused when it exists."""
    fmt, quantize = options["format"], options["quantize"]
    size = (fixed_size_detector.parse_input_size(options["input_size"]) if options["input_size"]
            else fixed_size_detector.default_input_size(policy))
    suffix = "" if quantize == "none" else f"_{quantize}"
    path = options["output"] or os.path.join(options["export_dir"], f"retinanet_{size[0]}x{size[1]}{suffix}.{fmt}")
    if os.path.exists(path):
        raise UsageError(f"{path} exists already; remove it or give another --output / --export_dir.")
    return path, size


def export(configs, options):
    check_export_options(options)
    fmt = options["format"]
    # LiteRT and ONNX files compute in float32 (or their own quantisation), whatever the training precision.
    set_precision(configs["train"].mixed_precision if fmt == "saved_model" else "none")
    run = RunDir(options["model_dir"])
    net, label_map, config, checkpoint = run.load_model()
    if fmt != "saved_model":
        return _export_file(fmt, run, net, label_map, config, checkpoint, options)
    path = export_lib.export_saved_model(net, label_map, options["export_dir"], options["version"],
                                         **postprocess_overrides(options))
    base = os.path.abspath(options["export_dir"])
    precision = keras.mixed_precision.global_policy().name
    print(f"Exported {checkpoint} ({precision}) to {path}\n"
          f"  signatures: serving_default (encoded image bytes), serving_image_tensor (uint8)\n"
          f"  serve with: tensorflow_model_server --port=8500 --rest_api_port=8501 "
          f"--model_name={os.path.basename(base.rstrip('/'))} --model_base_path={base}")
    return 0


def _export_file(fmt, run, net, label_map, config, checkpoint, options):
    """--format=tflite|onnx: one file with the fixed input size (see fixed_size_detector)."""
    path, size = export_file_path(options, net.resize_policy)
    quantize = options["quantize"]
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise DataError(f"cannot make {folder} for {path} ({error.strerror or error}); check --output / "
                        f"--export_dir.") from None
    if not os.access(folder, os.W_OK):
        raise DataError(f"cannot write {path}: {folder} is not writable; check --output / --export_dir.")
    if fmt == "onnx":
        summary = onnx_export.export_onnx(net, label_map, path, size, **postprocess_overrides(options))
        runtime = 'pip install "keras-retina[onnx]" (onnxruntime)'
    else:
        calibration = None
        if quantize == "int8":
            calibration = calibration_inputs(run, config, options, size, net.resize_policy)
        summary = litert_export.export_litert(net, label_map, path, size, quantize, calibration,
                                              **postprocess_overrides(options))
        runtime = 'pip install "keras-retina[litert]" (ai-edge-litert)'
    calibrated = summary.get("calibration_images")
    print(f"Exported {checkpoint} to {path} ({summary['bytes'] / 2**20:.1f} MiB, {fmt}"
          f"{', ' + quantize if fmt == 'tflite' else ''}"
          f"{f', calibrated on {calibrated} pictures' if calibrated else ''})"
          f"\n  input: images uint8 [{'1' if fmt == 'tflite' else 'N'}, {size[0]}, {size[1]}, 3] RGB; pictures of "
          f"other sizes letterboxed (the model's scale, or less to fit; top left, padded)\n"
          f"  outputs: detection_boxes (normalised to the input), detection_scores, detection_classes, "
          f"num_detections; class names in the file's metadata\n"
          f"  {len(summary['ops'])} op types, all {'builtin' if fmt == 'tflite' else 'standard ONNX'}: "
          f"{', '.join(summary['ops'])}\n"
          f"  run with: keras_retina predict --model={path} photo.jpg  (needs {runtime})")
    return 0


def calibration_inputs(run, config, options, input_size, policy):
    """--calibration_count letterboxed uint8 inputs for int8 calibration: the first pictures (by
    name) of --calibration_images, else pictures of the model_dir's training data (its validation
    data when it has no training source) in a fixed shuffled order."""
    count = options["calibration_count"]
    pictures = []
    if options["calibration_images"]:
        folder = options["calibration_images"]
        try:
            names = sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in image_lib.EXTENSIONS)
        except OSError as error:
            raise DataError(f"--calibration_images={folder}: cannot list it ({error.strerror or error}).") from None
        skipped = 0
        for name in names[:count * 2]:
            if len(pictures) == count:
                break
            try:
                pictures.append(image_lib.read_picture(os.path.join(folder, name)).numpy())
            except (image_lib.BadImage, tf.errors.InvalidArgumentError) as error:
                print(f"{os.path.join(folder, name)}: cannot read this image ({str(error).splitlines()[0][:120]}); "
                      f"not used for calibration.", file=sys.stderr)
                skipped += 1
        source_name = f"{folder} ({skipped} unreadable skipped)" if skipped else folder
    else:
        data = from_dict(DataConfig, config["data"], run.config_path)
        try:  # no dirty-data pass over the whole split: a few hundred pictures are read
            sources = open_sources(data, need_train=False, load_train=True, verify_images=False)
        except UsageError as error:
            raise UsageError(f"{error} (int8 calibration reads the model_dir's data; give --calibration_images=FOLDER "
                             f"for a model without any)") from None
        source = sources.train or sources.val
        for example in source.examples(shuffle=True, seed=0).take(count):
            pictures.append(example["image"].numpy())
        source_name = source.name
    if not pictures:
        raise DataError(f"no pictures to calibrate int8 on in {source_name}; give --calibration_images=FOLDER.")
    print(f"Calibrating int8 on {len(pictures)} pictures of {source_name}", flush=True)
    return [fixed_size_detector.letterbox(p, input_size, policy)[0] for p in pictures]


def convert(configs, options):
    if not options["model_dir"] or not options["source"] or not options["weights"]:
        raise UsageError("convert needs --source (torchvision or detectron2), --weights (the downloaded file) and "
                         "--model_dir (a new folder).")
    summary = convert_lib.convert(options["source"], options["weights"], options["model_dir"])
    print(convert_lib.format_summary(summary), flush=True)
    return 0
