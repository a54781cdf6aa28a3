"""What each `keras_retina` command does, from plain values (`cli` maps flags to them).

- `train`: data source -> `training.train` -> summary printed and in model_dir/summary.json.
- `evaluate`: model_dir (config.json, label_map.json, latest checkpoint) -> COCO metrics,
  printed and written as JSON.
- `check_data`: anchor coverage of the training data, with suggestions.
- `export`: model_dir -> a versioned SavedModel for TF Serving (`keras_retina.export`).
- `predict`: images -> pictures with boxes drawn, and detections in COCO results format.

`options` is a dict of every flag value, `model` the RetinaNet arguments,
`data` the data-source flags (saved in model_dir/config.json so `evaluate`
finds the validation data again).
"""

import json
import os
import sys

import keras
import tensorflow as tf

from keras_retina import evaluation, export as export_lib, training, visualize
from keras_retina.data import cleaning, coco_json, coverage, pipeline, synthetic, tfds_coco, tfrecord
from keras_retina.model import RetinaNet


class DataError(ValueError):
    """A data source flag is missing, inconsistent or points at nothing."""


def _json_source(annotations, images, flag, skip, reports):
    if not images:
        raise DataError(f"--{flag}_annotations={annotations} needs --{flag}_images (the image folder).")
    source = coco_json.read_coco_json(annotations, images, skip_bad_examples=skip)
    if reports is not None:
        reports[flag] = source.report
    return source


def _record_source(stream, split, name, num_classes, skip, decode, reports):
    """The dirty-data pass over a TFRecord/TFDS split's `records.RecordStream`
    (`cleaning.scan_records`): counted in `reports[split]`, undecodable records excluded
    from the stream; without --skip_bad_examples a bad annotation or image is an error.
    Returns the split's examples."""
    report = cleaning.DataReport(f"{split} {name}")
    print(f"[data] checking the annotations of {name}" + (" and decoding every image" if decode else "")
          + " ...", flush=True)
    try:
        report.total, excluded = cleaning.scan_records(stream.annotation_records(), report, num_classes,
                                                       decode=decode)
    except tf.errors.OpError as error:  # not a tf.Example, a missing field, a cut file
        reason = (error.message or str(error)).strip().splitlines()[0]
        raise DataError(f"{name}: a record cannot be read as an image with annotations ({reason}). "
                        f"Rewrite or remove the file.") from None
    if reports is not None:
        reports[split] = report
    report.raise_if_bad(skipping=skip)
    stream.exclude, stream.num_examples = tuple(excluded), report.total - len(excluded)
    if stream.num_examples == 0:  # as the COCO JSON reader says it
        raise DataError(f"{name}: no usable images.\n{report.format(skipping=skip)}")
    return stream.examples(skip_bad_examples=skip)


def sources(data, need_train=True, reports=None, load_train=None, verify_images=None):
    """Data flags -> (train examples or None, val examples or None, label map).

    `need_train`: exactly one training source is required. `load_train` (default: need_train):
    read the TFDS/TFRecord training split too. Every source's annotations are checked first
    (COCO JSON: while parsing; TFRecord, TFDS: one pass without decoding images), and every
    image is decoded up front under --skip_bad_examples (TFRecord, TFDS: also when
    `verify_images`); problems
    are an error (`cleaning.DataReport.raise_if_bad`) unless --skip_bad_examples, then
    skipped/dropped and counted. `reports`: a dict that gets each split's
    `cleaning.DataReport` ("train", "val")."""
    load_train = need_train if load_train is None else load_train
    skip = bool(data.get("skip_bad_examples"))
    decode = skip if verify_images is None else verify_images
    if data.get("demo_data"):
        paths = synthetic.write_coco_dataset(data["demo_data"])
        data = {**data, "train_annotations": paths["train"][0], "train_images": paths["train"][1],
                "val_annotations": paths["val"][0], "val_images": paths["val"][1]}
    chosen = [name for name in ("train_annotations", "tfds_name", "train_tfrecord") if data.get(name)]
    if need_train and len(chosen) != 1:
        raise DataError("Give exactly one training source: --train_annotations/--train_images "
                        "(COCO JSON), --tfds_name, --train_tfrecord, or --demo_data; got "
                        f"{', '.join('--' + c for c in chosen) or 'none'}.")
    train = val = label_map = None
    if data.get("train_annotations") or data.get("val_annotations"):
        if data.get("train_annotations"):
            source = _json_source(data["train_annotations"], data.get("train_images"), "train", skip, reports)
            train, label_map = source.dataset(), source.label_map
        if data.get("val_annotations"):
            val_source = _json_source(data["val_annotations"], data.get("val_images"), "val", skip, reports)
            if label_map is not None and val_source.label_map != label_map:
                raise DataError(f"--val_annotations={data['val_annotations']} has other categories "
                                f"than --train_annotations={data['train_annotations']}.")
            val, label_map = val_source.dataset(), label_map or val_source.label_map
    elif data.get("tfds_name"):
        name, data_dir = data["tfds_name"], data.get("tfds_data_dir")
        splits = {"train": data["tfds_train_split"] if load_train else None, "val": data.get("tfds_val_split")}
        found = {}
        for split, tfds_split in splits.items():
            if tfds_split:
                stream, label_map = tfds_coco.record_stream(name, tfds_split, data_dir)
                found[split] = _record_source(stream, split, f"{name} {tfds_split}", len(label_map), skip,
                                              decode, reports)
        train, val = found.get("train"), found.get("val")
    elif data.get("train_tfrecord") or data.get("val_tfrecord"):
        pattern = data.get("train_tfrecord") or data["val_tfrecord"]
        label_map = (tfrecord.read_label_map(data["label_map"]) if data.get("label_map")
                     else tfrecord.scan_label_map(pattern))
        found = {}
        for split in ("train", "val"):
            pattern = data.get(f"{split}_tfrecord")
            if pattern and (split == "val" or load_train):
                found[split] = _record_source(tfrecord.record_stream(pattern, label_map), split, pattern,
                                              len(label_map), skip, decode, reports)
        train, val = found.get("train"), found.get("val")
    if label_map is None:
        raise DataError("No data: give a training or validation source.")
    return train, val, label_map


PRECISION_POLICIES = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


def _set_precision(options):
    """--mixed_precision for every model the command builds from here on (variables stay
    float32; the label encoder, losses and decoder always compute in float32)."""
    keras.mixed_precision.set_global_policy(PRECISION_POLICIES[options.get("mixed_precision") or "none"])


def train(options, model, data):
    if not options["model_dir"]:
        raise DataError("--model_dir is required: where checkpoints, logs and the model go.")
    _set_precision(options)
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op (reading the data does).
    strategy = training.make_strategy(options["strategy"])
    reports = {}
    train_examples, val_examples, label_map = sources(data, reports=reports)
    for report in reports.values():
        print(report.format(skipping=bool(data.get("skip_bad_examples"))), flush=True)
    config = training.TrainConfig(
        model_dir=options["model_dir"], model=model, batch_size=options["batch_size"],
        reference_batch_size=options["reference_batch_size"],
        learning_rate=options["learning_rate"], train_steps=options["train_steps"],
        lr_boundaries=[int(b) for b in options["lr_boundaries"]],
        warmup_steps=options["warmup_steps"], optimizer=options["optimizer"],
        clipnorm=options["clipnorm"],
        momentum=options["momentum"],
        weight_decay=options["weight_decay"],
        checkpoint_every_steps=options["checkpoint_every_steps"],
        eval_every_steps=options["eval_every_steps"], strategy=options["strategy"],
        seed=options["seed"], deterministic=options["deterministic"], flip=options["flip"],
        scale_min=options["scale_min"], scale_max=options["scale_max"], verbose=options["verbose"], data=data)
    try:
        report = coverage.anchor_coverage(
            train_examples, model["image_size"], model["num_scales"], model["aspect_ratios"],
            model["anchor_size"], max_images=min(options["max_images"], 500))
        print(coverage.format_coverage(report), flush=True)
        summary = training.train(config, train_examples, label_map, val_examples, strategy,
                                 data_reports=reports)
    except tf.errors.InvalidArgumentError as error:
        message = _undecodable_message(error, train_examples, val_examples)
        if message is None:  # not a data problem: keep TensorFlow's error and traceback
            raise
        raise DataError(message) from error
    print(training.format_summary(summary), flush=True)
    if options["export_dir"] and training.is_chief(strategy):
        export(options, model, data)
    return 0


def _undecodable_message(error, *datasets):
    """Names the files behind an image decode error (COCO JSON sources) or gives TF's reason;
    None when the error is not about decoding input data."""
    text = error.message or str(error)
    reason = text.strip().splitlines()[0]
    if not any(word in text for word in ("Decode", "decode", "JPEG", "PNG", "image format", "Uncompress")):
        return None  # before the search below, which decodes every image
    bad = {}
    for dataset in datasets:
        source = getattr(dataset, "coco_source", None)
        if source is not None:
            bad.update(source.find_undecodable())
    if bad:
        shown = "; ".join(str(e) for e in list(bad.values())[:5]) + (" ..." if len(bad) > 5 else "")
        return (f"training stopped: {len(bad)} image(s) cannot be decoded: {shown}. Fix or remove "
                f"them, or pass --skip_bad_examples to skip them.")
    return (f"training stopped on an image that cannot be decoded ({reason}). `keras_retina "
            f"check-data` lists the problems; --skip_bad_examples skips undecodable records.")


def load_trained_model(model_dir, checkpoint=None):
    """model_dir -> (RetinaNet with the latest (or given) checkpoint restored, label map, config)."""
    config_path = os.path.join(model_dir, "config.json")
    if not tf.io.gfile.exists(config_path):
        raise DataError(f"--model_dir={model_dir}: no config.json; is this a keras_retina model_dir?")
    config = training.load_json(config_path)
    label_map = training.load_json(os.path.join(model_dir, "label_map.json"))
    model = RetinaNet(**{**config["model"], "backbone_weights": None})
    checkpoint = checkpoint or tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if checkpoint is None:
        raise DataError(f"--model_dir={model_dir}: no checkpoint in {model_dir}/checkpoints yet.")
    status = tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()  # optimizer slots unused
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:  # never evaluate or export a half-random network
        raise DataError(
            f"{checkpoint} does not hold every weight of the model in {config_path} (was it written by "
            f"another version of keras_retina, or is config.json edited?): "
            f"{str(error).split(':', 1)[0]}.") from None
    return model, label_map, config, checkpoint


def evaluate(options, model, data):
    if not options["model_dir"]:
        raise DataError("--model_dir is required: the trained model to evaluate.")
    _set_precision(options)
    net, label_map, config, checkpoint = load_trained_model(options["model_dir"])
    given = {k: v for k, v in data.items() if v and k not in ("tfds_train_split", "tfds_val_split")}
    data = data if given else config["train"]["data"]
    _, val_examples, data_label_map = sources(data, need_train=False)
    if val_examples is None:
        raise DataError("No validation data: give --val_annotations/--val_images, --tfds_name "
                        "(--tfds_val_split), --val_tfrecord or --demo_data.")
    if [e["id"] for e in data_label_map] != [e["id"] for e in label_map]:
        raise DataError("The validation data's categories differ from the model's label_map.json.")
    size = config["model"]["image_size"]
    metrics = evaluation.evaluate_coco(
        net, pipeline.eval_dataset(val_examples, size, options["batch_size"]), label_map)
    metrics["checkpoint"] = checkpoint
    print(f"COCO evaluation of {checkpoint} on {metrics['num_images']} images:")
    print(evaluation.format_metrics(metrics))
    step = checkpoint.rsplit("-", 1)[-1]
    path = options["output"] or os.path.join(options["model_dir"], "eval", f"metrics-{step}.json")
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    evaluation.write_metrics(metrics, path)
    print(f"Metrics written to {path}")
    return 0


def check_data(options, model, data):
    """Reads every example (full image decode included) and reports every problem, what
    training would do with it (with and without --skip_bad_examples), then anchor coverage."""
    skip = bool(data.get("skip_bad_examples"))
    reports = {}
    # Count everything rather than stop at the first bad image; say at the end what training does.
    train_examples, val_examples, label_map = sources({**data, "skip_bad_examples": True}, need_train=False,
                                                      reports=reports, load_train=True, verify_images=True)
    problems = 0
    for split, examples in (("train", train_examples), ("val", val_examples)):
        if examples is None:
            continue
        print(f"[{split}] {len(label_map)} classes: {', '.join(e['name'] for e in label_map[:20])}"
              + (" ..." if len(label_map) > 20 else ""))
        report = reports[split]
        if report.total is not None:  # TFRecord / TFDS: every record decoded by the pass
            count = examples.record_stream.num_examples
        else:  # COCO JSON: files checked while reading; decode what the reader keeps
            count = cleaning.count_examples(examples)
        print(f"[{split}] read and decoded {count} images")
        print(report.format(skipping=skip))
        problems += len(report.problems())
        report = coverage.anchor_coverage(
            examples, model["image_size"], model["num_scales"], model["aspect_ratios"],
            model["anchor_size"], max_images=options["max_images"])
        print(coverage.format_coverage(report))
    if problems and not skip:
        print("Training on this data stops with an error listing the problems above; fix them or "
              "pass --skip_bad_examples.")
    return 0


def _postprocess_overrides(options):
    return {"score_threshold": options["nms_score_threshold"],
            "pre_nms_top_k": options["pre_nms_top_k"],
            "nms_iou_threshold": options["nms_iou_threshold"],
            "max_detections": options["max_detections"]}


def export(options, model=None, data=None):
    if not options["model_dir"] or not options["export_dir"]:
        raise DataError("export needs --model_dir (the trained model) and --export_dir "
                        "(e.g. serving/retinanet; versions go in numbered subfolders).")
    _set_precision(options)
    net, label_map, _, checkpoint = load_trained_model(options["model_dir"])
    path = export_lib.export_saved_model(net, label_map, options["export_dir"], options["version"],
                                         **_postprocess_overrides(options))
    base = os.path.abspath(options["export_dir"])
    precision = keras.mixed_precision.global_policy().name
    print(f"Exported {checkpoint} ({precision}) to {path}\n"
          f"  signatures: serving_default (encoded image bytes), serving_image_tensor (uint8)\n"
          f"  serve with: tensorflow_model_server --port=8500 --rest_api_port=8501 "
          f"--model_name={os.path.basename(base.rstrip('/'))} --model_base_path={base}")
    return 0


def predict(options, images):
    """Draws detections on each image; writes pictures and detections.json to --output_dir."""
    # Pictures go in as the user sees them (EXIF orientation applied), through the uint8
    # signature, so the boxes drawn and written match the picture.
    # (A CMYK/16-bit/palette picture is converted exactly as in training.)
    if options["saved_model"]:
        try:
            detect = tf.saved_model.load(options["saved_model"]).signatures["serving_image_tensor"]
        except (OSError, KeyError) as error:
            raise DataError(f"--saved_model={options['saved_model']}: not an exported keras_retina "
                            f"version folder ({type(error).__name__}: {str(error)[:200]}).") from None
    elif options["model_dir"]:
        _set_precision(options)
        net, label_map, _, _ = load_trained_model(options["model_dir"])
        # Keep the server referenced: a tf.function method holds its instance only weakly.
        server = export_lib.DetectionServer(net, label_map, **_postprocess_overrides(options))
        detect = server.serve_image_tensor
    else:
        raise DataError("predict needs --saved_model (an exported version folder) or --model_dir.")
    os.makedirs(options["output_dir"], exist_ok=True)
    results, failed = [], []
    for index, path in enumerate(images, start=1):
        try:  # TensorFlow's decoder (as in training) with the EXIF orientation applied
            orientation = cleaning.image_header(path)[2]
            with open(path, "rb") as f:
                pixels = coco_json.apply_orientation(coco_json.decode_image(tf.constant(f.read())),
                                                     tf.constant(orientation if orientation in range(1, 9) else 1))
            picture = visualize.Image.fromarray(pixels.numpy())
            out = {k: v.numpy()[0] for k, v in detect(inputs=pixels[None]).items()}
        except (OSError, tf.errors.InvalidArgumentError, cleaning.BadImage) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"{path}: cannot read this image ({message}); skipped.", file=sys.stderr)
            failed.append(path)
            continue
        n = int(out["num_detections"])
        boxes, scores = out["detection_boxes"][:n], out["detection_scores"][:n]
        names = [name.decode() for name in out["detection_class_names"][:n]]
        drawn = visualize.draw_detections(picture, boxes, scores, names, options["score_threshold"],
                                          out["detection_classes"][:n])
        stem, ext = os.path.splitext(os.path.basename(path))
        target = os.path.join(options["output_dir"], stem + (ext if ext.lower() in (".jpg", ".jpeg", ".png") else ".png"))
        drawn.save(target, **({"quality": 95} if target.lower().endswith((".jpg", ".jpeg")) else {}))
        width, height = picture.size
        image_id = int(stem) if stem.isdigit() else index
        pixel_boxes = boxes * ([height, width] * 2)
        for bbox, score, cls in zip(evaluation.coco_bboxes(pixel_boxes), scores, out["detection_classes"][:n]):
            results.append({"image_id": image_id, "file_name": os.path.basename(path),
                            "category_id": int(cls), "bbox": bbox, "score": float(score)})
        shown = [f"{nm} {sc:.2f}" for nm, sc in zip(names, scores) if sc >= options["score_threshold"]]
        print(f"{path}: {len(shown)} detection(s) >= {options['score_threshold']}"
              f"{': ' + ', '.join(shown[:8]) if shown else ''}{' ...' if len(shown) > 8 else ''} -> {target}")
    with open(os.path.join(options["output_dir"], "detections.json"), "w") as f:
        json.dump(results, f)
    print(f"Detections (COCO results format) written to {os.path.join(options['output_dir'], 'detections.json')}")
    return 1 if failed else 0
