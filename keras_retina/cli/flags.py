"""The command line's flags: the only place flag names are known (besides each command's module).

The data, model and training flags are the fields of `DataConfig`, `ModelConfig` and
`TrainConfig` (their defaults, help texts and checks: `config_fields`); the commands' own flags
are OPTIONS below. `COMMAND_FLAGS` says which flags each command reads (its --help shows
those); `build_configs` turns flag values into the three configs.
"""

import dataclasses

from keras_retina.deploy.metadata import EXPORT_FORMATS, QUANTIZE
from keras_retina.inference.tiling import CHECKS as TILE_CHECKS
from keras_retina.inference.tiling import MERGES as TILE_MERGES
from keras_retina.inference.video import CHECKS as VIDEO_CHECKS
from keras_retina.modeling.detection_decoder import CHECKS as POSTPROCESS_CHECKS
from keras_retina.modeling.detection_decoder import SETTINGS as POSTPROCESS_SETTINGS
from keras_retina.modeling.detection_decoder import PostprocessSettings
from keras_retina.ops.drawing import DRAW_THRESHOLD
from keras_retina.ops.tiles import MAX_TILES

COMMANDS = {
    "train": ("Train (or resume) a detector, evaluate it and export it.",
              "keras_retina train --flagfile=configs/demo.flags"),
    "evaluate": ("COCO metrics of a model_dir's latest checkpoint (or a --model file), per-class AP table.",
                 "keras_retina evaluate --model_dir=runs/demo"),
    "check-data": ("Every problem in the data, what training will do with it, and anchor coverage.",
                   "keras_retina check-data --train_annotations=train.json --train_images=images/"),
    "export": ("A versioned SavedModel for TF Serving, or a LiteRT / ONNX file; decoding and NMS inside.",
               "keras_retina export --model_dir=runs/demo --export_dir=serving/demo"),
    "predict": ("Detections drawn on your pictures (large ones by --tile) or videos, and their detections as JSON.",
                "keras_retina predict --saved_model=serving/demo/1 photo.jpg clip.mp4 --output_dir=out"),
    "tile-data": ("Large annotated pictures (any format, tiled TIFFs of any size) -> tiles with their boxes, as "
                  "COCO JSON, so train sees small objects at their real size.",
                  "keras_retina tile-data --train_annotations=labels/ --val_fraction=0.1 --tile=800 --tiles_dir=tiles"),
    "models": ("The registered weights: COCO detectors and ImageNet backbones, by name, and which are cached.",
               "keras_retina models"),
    "convert": ("A COCO RetinaNet from torchvision (.pth) or detectron2 (.pkl) weights -> a model_dir.",
                "keras_retina convert --source=torchvision --weights=retinanet_resnet50_fpn_v2_coco-5905b1c5.pth "
                "--model_dir=runs/coco_v2"),
}

# The commands' own flags: name -> (kind, default, help, group).
OPTIONS = {
    "model_dir": ("string", None, "The run folder: checkpoints, logs, metrics, the model (check-data: a trained "
                  "model whose confident detections on no label point at labels that may be missing).", "run"),
    "resume_with_other_data": ("boolean", False, "train: continue a model_dir on another label map or other "
                               "data flags than it was trained on (refused otherwise).", "run"),
    "max_images": ("integer", 1000, "Images for the anchor-coverage report (check-data reads every image).", "run"),
    "checkpoint": ("enum", ("best", ["best", "latest"]), "evaluate, export, predict: the model_dir's best "
                   "checkpoint (its best validation metric; the latest when none was kept) or its latest.", "run"),
    "report_dir": ("string", None, "check-data: write the data report page (counts, box sizes and shapes against "
                   "the anchors, samples of each class, labels to look at, copies across splits) into this folder.",
                   "run"),
    "write_coco": ("string", None, "check-data: also write the training annotations (any format) as this COCO JSON "
                   "file, and the validation ones beside it (-val before the suffix).", "run"),
    "output": ("string", None, "evaluate: JSON file for the metrics (default model_dir/eval, or FILE.metrics.json "
               "for --model=FILE); export --format=tflite|onnx: the file to write; check-data: JSON file for the "
               "counts, problems and anchor coverage of each split.", "run"),
    "export_dir": ("string", None, "SavedModel base folder; versions go in numbered subfolders, as TF Serving "
                   "expects (train exports at the end when set).", "export"),
    "version": ("integer", None, "Version number (default: one more than the latest).", "export"),
    "format": ("enum", (EXPORT_FORMATS[0], list(EXPORT_FORMATS)), "saved_model (TF Serving), tflite "
               "(LiteRT flatbuffer, builtin ops only) or onnx (standard ops, any batch); the last two have a "
               "fixed --input_size and are written to --output or into --export_dir.", "export"),
    "input_size": ("string", None, "tflite/onnx: the fixed input, HEIGHT,WIDTH (multiples of 32) or one side for "
                   "a square (default: a square of the model's longer side L rounded up to 32, so pictures of either "
                   "orientation keep the model's scale: 128 for the demo, 1344 at 800/1333; resize=square "
                   "models: their square).", "export"),
    "quantize": ("enum", (QUANTIZE[0], list(QUANTIZE)), "tflite: none (float32), float16 "
                 "(weights), dynamic (int8 weights) or int8 (network int8, calibrated; postprocessing float).",
                 "export"),
    "calibration_images": ("string", None, "tflite int8: a folder of pictures to calibrate on (default: the "
                           "model_dir's training data, else its validation data).", "export"),
    "calibration_count": ("integer", 200, "tflite int8: pictures to calibrate on.", "export"),
    "nms_score_threshold": ("float", None, "Score threshold (default: the model's, 0.05).", "export"),
    "pre_nms_top_k": ("integer", None, "Candidates per level (default: the model's, 1000).", "export"),
    "nms_iou_threshold": ("float", None, "NMS IoU (default: the model's, 0.5).", "export"),
    "max_detections": ("integer", None, "Detections per image (default: the model's, 100).", "export"),
    "box_voting_sigma": ("float", None, "Score voting after NMS: 0 (off) or its sigma, 0.025 PAA's (default: the "
                         "model's, 0: off; modeling/detection_decoder.py).", "export"),
    "saved_model": ("string", None, "An exported SavedModel version folder.", "predict"),
    "model": ("string", None, "predict: a registered detector's name (keras_retina models), or, for predict and "
              "evaluate, a .tflite or .onnx file from keras_retina export (run with "
              "ai-edge-litert / onnxruntime).", "predict"),
    "output_dir": ("string", "predictions", "Where pictures and detections.json go.", "predict"),
    "draw_threshold": ("float", DRAW_THRESHOLD, "Draw (and print) detections scoring at least this; the "
                       "decoder's own cut is --nms_score_threshold.", "predict"),
    "save_annotations": ("string", None, "Also write the detections as pre-labels a labelling tool imports: "
                         "voc, yolo, coco, csv, labelstudio or cvat (inference/prelabels.py), at each class's "
                         "labelling threshold.", "predict"),
    "prelabel_threshold": ("float", None, "--save_annotations: one score threshold for every class (default: per "
                           "class, the score that still finds 90% of its validation objects in the model_dir's "
                           "evaluation report; else 0.3).", "predict"),
    "prelabel_classes": ("string", None, "--save_annotations=yolo: your project's data.yaml or classes.txt, whose "
                         "class indices the labels use (default: the model's order).", "predict"),
    "labelstudio_from_name": ("string", "label", "--save_annotations=labelstudio: the RectangleLabels name of your "
                              "labelling config.", "predict"),
    "labelstudio_to_name": ("string", "image", "--save_annotations=labelstudio: the Image name of your labelling "
                            "config (also the task's data key).", "predict"),
    "labelstudio_image_url": ("string", "/data/local-files/?d=", "--save_annotations=labelstudio: what goes before a "
                              "picture's file name in its task's URL (your storage's prefix).", "predict"),
    "score_threshold": ("float", None, "Renamed --draw_threshold (the same meaning); this name goes in the next "
                        "release.", "predict"),
    "tiles_dir": ("string", None, "tile-data: the folder for the tiles (train/, val/) and their annotations "
                  "(train.json, val.json).", "tiling"),
    "tile_rule": ("enum", ("visible", ["visible", "centre"]), "tile-data: a box goes to a tile when at least "
                  "--tile_min_visible of its area is inside it (visible) or its centre is (centre); it is clipped.",
                  "tiling"),
    "tile_min_visible": ("float", 0.6, "tile-data --tile_rule=visible: the share of a box's area a tile must hold.",
                         "tiling"),
    "tile_cut": ("enum", ("ignore", ["ignore", "drop"]), "tile-data: a box a tile cuts but does not take becomes a "
                 "crowd box there (evaluation ignores detections on it) or is dropped.", "tiling"),
    "tile_empty": ("enum", ("keep", ["keep", "drop"]), "tile-data: tiles without boxes are kept (background "
                   "examples) or left out.", "tiling"),
    "tile_format": ("enum", ("jpg", ["jpg", "png"]), "tile-data: the tiles' picture format.", "tiling"),
    "tile": ("integer", 0, "predict: detect on large pictures (aerial, satellite, scans; tiled TIFFs of any size) "
             "by overlapping tiles of this many model pixels, boxes mapped back to the picture (0: the whole picture "
             "at the model's scale). The model's training --image_size is a good tile.", "predict"),
    "tile_overlap": ("float", 0.2, "predict --tile, tile-data: the share of a tile its neighbours overlap.",
                     "predict"),
    "tile_scale": ("float", 1.0, "predict --tile: shrink the picture by this first (0.5: a tile covers twice "
                   "its size).", "predict"),
    "tile_merge": ("enum", (TILE_MERGES[0], list(TILE_MERGES)), "predict --tile: nms removes an object's copies from "
                   "overlapping tiles; merge also joins the parts of an object cut by a tile's border; wbf averages "
                   "the copies (weighted box fusion, weighted by score) and joins the parts.", "predict"),
    "tile_merge_iou": ("float", 0.5, "predict --tile: the overlap at which boxes are one object (IoU for nms "
                       "and wbf, of the smaller box for merge and wbf's cut parts).", "predict"),
    "max_tiles": ("integer", MAX_TILES, "predict --tile: refuse a picture needing more tiles than this (its header "
                  "alone decides the count; raise it for a real picture that large, which takes time in "
                  "proportion).", "predict"),
    "tile_whole_picture": ("boolean", False, "predict --tile: also detect on the whole picture (objects larger "
                           "than a tile).", "predict"),
    "every_nth_frame": ("integer", 1, "predict on videos: detect on every Nth frame (the others show the latest "
                        "detections).", "predict"),
    "max_frames": ("integer", 0, "predict on videos: stop after this many frames (0: all).", "predict"),
    "detect_batch_size": ("integer", 4, "predict: video frames or tiles per call of the model.", "predict"),
    "source": ("enum", (None, ["torchvision", "detectron2"]), "Where the weights come from: torchvision "
               "(retinanet_resnet50_fpn[_v2] .pth) or detectron2 (model zoo RetinaNet .pkl).", "convert"),
    "weights": ("string", None, "The downloaded weight file, or a registered detector's name (keras_retina models); "
                "never executed: only tensors are read.", "convert"),
}
_OPTION_CHECKS = {
    "max_images": (lambda v: v > 0, "must be positive."),
    "version": (lambda v: v > 0, "must be positive."),
    "calibration_count": (lambda v: v > 0, "must be positive."),
    "draw_threshold": (lambda v: 0 <= v <= 1, "must be in [0, 1]."),
    "score_threshold": (lambda v: 0 <= v <= 1, "must be in [0, 1]."),
    "tile": (lambda v: v >= 0, "must be 0 (off) or a tile size in pixels."),
    "tile_min_visible": (lambda v: 0 < v <= 1, "must be in (0, 1]."),
    "every_nth_frame": VIDEO_CHECKS["every_nth_frame"],  # VideoSettings' rule; --max_frames' 0 is its None
    "max_frames": (lambda v: v >= 0, "must be 0 (all) or positive."),
}
# The command-line flag of each postprocessing setting (detection_decoder.SETTINGS), checked by the
# decoder's own rules (`detection_decoder.CHECKS`).
POSTPROCESS_FLAGS = dict(zip(("nms_score_threshold", "pre_nms_top_k", "nms_iou_threshold", "max_detections",
                              "box_voting_sigma"), POSTPROCESS_SETTINGS, strict=True))
_OPTION_CHECKS.update({flag: POSTPROCESS_CHECKS[setting] for flag, setting in POSTPROCESS_FLAGS.items()})
# The TileSettings field of each tiling flag, checked by its rules (`inference.tiling.CHECKS`).
TILE_FLAGS = {"tile_overlap": "overlap", "tile_scale": "scale", "detect_batch_size": "batch_size",
              "tile_merge": "merge", "tile_merge_iou": "merge_iou", "tile_whole_picture": "whole_picture",
              "max_tiles": "max_tiles"}
_OPTION_CHECKS.update({flag: TILE_CHECKS[field] for flag, field in TILE_FLAGS.items() if field in TILE_CHECKS})
# The flags each command reads, by group (None: the whole group); its --help shows these.
COMMAND_FLAGS = {
    "train": {"run": {"model_dir", "max_images", "resume_with_other_data"}, "data": None, "model": None,
              "training": None,
              "export": None},
    "evaluate": {"run": {"model_dir", "output", "checkpoint"}, "predict": {"model"}, "data": None,
                 "training": {"batch_size", "mixed_precision", "report", "report_pictures", "report_score_threshold"},
                 "export": set(POSTPROCESS_FLAGS)},
    "check-data": {"run": {"max_images", "write_coco", "output", "report_dir", "model_dir"}, "data": None,
                   "model": {"image_size", "max_image_size", "resize", "resize_rounding", "canvas", "num_scales",
                             "aspect_ratios", "anchor_size", "anchor_geometry"}},
    "export": {"run": {"model_dir", "output", "checkpoint"}, "export": None, "training": {"mixed_precision"}},
    "convert": {"run": {"model_dir"}, "convert": None},
    "models": {},
    "tile-data": {"tiling": None, "predict": {"tile", "tile_overlap"}, "data": None},
    "predict": {"run": {"model_dir", "checkpoint"}, "predict": None,
                "export": set(POSTPROCESS_FLAGS),
                "training": {"mixed_precision"}},
}


def configs():
    from keras_retina.data.data_config import DataConfig
    from keras_retina.modeling.model_config import ModelConfig
    from keras_retina.training.train_config import TrainConfig

    return {"data": DataConfig, "model": ModelConfig, "training": TrainConfig}


def define_flags():
    """Every flag: the configs' fields with `flag=True`, then OPTIONS. Returns {name: group}."""
    from absl import flags

    groups = {}
    for group, cls in configs().items():
        for field in dataclasses.fields(cls):
            meta = field.metadata
            if not meta.get("flag"):
                continue
            name, default, text = field.name, field.default, meta["help"]
            if meta.get("choices"):
                flags.DEFINE_enum(name, default, [str(c) for c in meta["choices"]], text)
            elif isinstance(default, bool):
                flags.DEFINE_boolean(name, default, text)
            elif isinstance(default, tuple):
                flags.DEFINE_list(name, [str(v) for v in default], text)
            elif field.type is int or name == "image_size":
                flags.DEFINE_integer(name, default, text)
            elif field.type is float:
                flags.DEFINE_float(name, default, text)
            else:
                flags.DEFINE_string(name, default, text)
            if meta.get("check"):
                _validate(name, lambda v, f=field: _convert(f, v), meta["check"])
            groups[name] = group
    for name, (kind, default, text, group) in OPTIONS.items():
        if kind == "enum":
            flags.DEFINE_enum(name, default[0], default[1], text)
        else:
            getattr(flags, f"DEFINE_{kind}")(name, default, text)
        if name in _OPTION_CHECKS:
            _validate(name, lambda v: v, _OPTION_CHECKS[name])
        groups[name] = group
    return groups


def _validate(name, convert, check):
    from absl import flags

    def valid(value):
        try:
            value = convert(value)
        except (TypeError, ValueError):
            return False
        return value is None or check[0](value)

    flags.register_validator(name, valid, f"--{name} {check[1]}")


def _convert(field, value):
    """A flag's value as its config field wants it ("" -> None; lists -> tuples of numbers)."""
    if value == "":
        return None
    if isinstance(field.default, tuple):
        cast = int if all(isinstance(v, int) for v in field.default) else float
        return tuple(cast(v) for v in value)
    return value


def build_configs(values):
    """Flag values -> {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}."""
    out = {}
    for group, cls in configs().items():
        kwargs = {f.name: _convert(f, values[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("flag")}
        out["train" if group == "training" else group] = cls(**kwargs)
    return out


def print_commands():
    lines = ["keras-retina: RetinaNet (\"Focal Loss for Dense Object Detection\") on Keras 3 / TensorFlow.", "",
             "usage: keras_retina COMMAND [--flagfile=FILE] [--flag=value ...]", "", "commands:"]
    for name, (text, _) in COMMANDS.items():
        lines.append(f"  {name:<11} {text}")
    lines += ["", "examples:"] + [f"  {example}" for _, example in COMMANDS.values()]
    lines += ["", "keras_retina COMMAND --help lists the flags a command uses; --helpfull lists every flag."]
    print("\n".join(lines))


def print_command_help(command, groups):
    from absl import flags

    titles = {"run": "run folder and reports", "data": "data (exactly one training source)",
              "model": "model (the paper's defaults)", "training": "training (the paper's recipe by default)",
              "export": "export and postprocessing", "predict": "predict", "convert": "convert",
              "tiling": "tiling"}
    text, example = COMMANDS[command]
    lines = [f"keras_retina {command}: {text}", f"  e.g. {example}"]
    for group, wanted in COMMAND_FLAGS[command].items():
        lines += ["", f"{titles[group]}:"]
        for name in (n for n, g in groups.items() if g == group and (wanted is None or n in wanted)):
            flag = flags.FLAGS[name]
            default = ",".join(flag.default) if isinstance(flag.default, list) else flag.default
            lines.append(f"  --{name}={'' if default is None else default}")
            lines.append(f"      {flag.help}")
    print("\n".join(lines))



# Flags renamed, old name -> new name (the same meaning), taken under the old name for one release.
RENAMED = {"score_threshold": "draw_threshold"}


def renamed_options(options, given):
    """`options` with each renamed flag's value under its new name, and one line for stderr per old
    name in `given` (the flags the user set); both names given is a UsageError."""
    from keras_retina.errors import UsageError

    options, notes = dict(options), []
    for old, new in RENAMED.items():
        value = options.pop(old, None)
        if old not in given:
            continue
        if new in given:
            raise UsageError(f"--{old} and --{new}: --{old} is the old name of --{new}; give --{new} alone.")
        options[new] = value
        notes.append(f"--{old} is now --{new} (the same meaning); the old name goes in the next release.")
    return options, notes


# The options `export` (and `train --export_dir`) hands to `deploy.export.export` as they are.
EXPORT_OPTIONS = ("export_dir", "format", "output", "version", "input_size", "quantize", "calibration_images",
                  "calibration_count")


def flag_message(error):
    """An error's text as the command line says it: a SettingsError names the flags of its settings."""
    from keras_retina.errors import SettingsError

    if not isinstance(error, SettingsError):
        return str(error)
    flag_of = {setting: flag for flag, setting in POSTPROCESS_FLAGS.items()}
    return f"{', '.join('--' + flag_of.get(name, name) for name in error.settings)}: {error.detail}"


def postprocess_settings(options):
    """The commands' PostprocessSettings (unset flags: the model's own values)."""
    return PostprocessSettings(**{setting: options.get(flag) for flag, setting in POSTPROCESS_FLAGS.items()})
