"""The command line's flags: the only place flag names are known (besides each command's module).

The data, model and training flags are the fields of `DataConfig`, `ModelConfig` and
`TrainConfig` (their defaults, help texts and checks: `config_fields`); the commands' own flags
are `cli.options`. `COMMAND_FLAGS` says which flags each command reads (its --help shows
those); `build_configs` turns flag values into the three configs.
"""

import dataclasses

from keras_retina.cli.options import OPTION_CHECKS, OPTIONS, POSTPROCESS_FLAGS
from keras_retina.modeling.detection_decoder import PostprocessSettings

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
    "detect-batch": ("predict over archives larger than one machine: pictures, videos and large pictures as an "
                     "Apache Beam pipeline (local processes, Dataflow, Flink, Spark), sharded JSON lines a rerun "
                     "resumes.",
                     "keras_retina detect-batch --model_dir=runs/mine 'survey/*.jpg' --output_dir=found --shards=16"),
    "write-records": ("Annotation files (COCO JSON, VOC, YOLO, CSV) -> sharded TFRecords (the TF Object Detection "
                      "API layout) with the same checks and counts as training, as an Apache Beam pipeline.",
                      "keras_retina write-records --train_annotations=labels/ --val_fraction=0.1 --records_dir=tfr"),
    "rank": ("Unlabelled pictures ordered by how much a label would teach the model (what to label next), as CSV.",
             "keras_retina rank --model_dir=runs/demo unlabelled/ --output=ranking.csv"),
    "tile-data": ("Large annotated pictures (any format, tiled TIFFs of any size) -> tiles with their boxes, as "
                  "COCO JSON, so train sees small objects at their real size.",
                  "keras_retina tile-data --train_annotations=labels/ --val_fraction=0.1 --tile=800 --tiles_dir=tiles"),
    "models": ("The registered weights: COCO detectors and ImageNet backbones, by name, and which are cached.",
               "keras_retina models"),
    "convert": ("A COCO RetinaNet from torchvision (.pth) or detectron2 (.pkl) weights -> a model_dir.",
                "keras_retina convert --source=torchvision --weights=retinanet_resnet50_fpn_v2_coco-5905b1c5.pth "
                "--model_dir=runs/coco_v2"),
}

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
    "detect-batch": {"run": {"model_dir", "checkpoint"}, "batch": {"runner", "workers", "shards", "beam_options",
                                                                   "input_list"},
                     "predict": {"model", "saved_model", "output_dir", "tile", "tile_overlap", "tile_scale",
                                 "tile_merge", "tile_merge_iou", "max_tiles", "tile_whole_picture", "every_nth_frame",
                                 "max_frames", "detect_batch_size"},
                     "export": set(POSTPROCESS_FLAGS), "training": {"mixed_precision"}},
    "write-records": {"batch": {"runner", "workers", "shards", "beam_options", "records_dir"}, "data": None},
    "rank": {"run": {"model_dir", "checkpoint", "output"}, "predict": {"model", "saved_model"}, "rank": None,
             "export": set(POSTPROCESS_FLAGS), "training": {"mixed_precision"}},
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
        if name in OPTION_CHECKS:
            _validate(name, lambda v: v, OPTION_CHECKS[name])
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
              "tiling": "tiling", "batch": "batch pipeline (Apache Beam)", "rank": "rank"}
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
