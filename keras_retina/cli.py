"""`keras_retina` command line: the only user of absl.flags (flags -> configurations -> commands).

    keras_retina --help                      the commands, one line each
    keras_retina train --help                the flags `train` uses, grouped, with defaults
    keras_retina train --flagfile=configs/demo.flags

The data, model and training flags are the fields of `DataConfig`, `ModelConfig` and
`TrainConfig` (their defaults, help texts and checks); the commands' own flags are below.
Flagfiles may include others (`--flagfile=configs/r50.flags` inside a file). A flagfile named
relative to the current folder that does not exist there is looked up in the installed configs,
includes too. Bad flag values are rejected, naming the flag, before any work starts. A data or
usage problem is one line on stderr and exit status 2; a NaN loss exit status 3; anything else
is a bug and keeps its traceback. The `keras_retina` launcher (bin/keras_retina) hides
TensorFlow's start-up lines unless --verbose=3.
"""

import dataclasses
import errno
import os
import sys

from keras_retina.deploy_metadata import EXPORT_FORMATS, QUANTIZE
from keras_retina.visualize import DRAW_SCORE_THRESHOLD

COMMANDS = {
    "train": ("Train (or resume) a detector, evaluate it and export it.",
              "keras_retina train --flagfile=configs/demo.flags"),
    "evaluate": ("COCO metrics of a model_dir's latest checkpoint (or a --model file), per-class AP table.",
                 "keras_retina evaluate --model_dir=runs/demo"),
    "check-data": ("Every problem in the data, what training will do with it, and anchor coverage.",
                   "keras_retina check-data --train_annotations=train.json --train_images=images/"),
    "export": ("A versioned SavedModel for TF Serving, or a LiteRT / ONNX file; decoding and NMS inside.",
               "keras_retina export --model_dir=runs/demo --export_dir=serving/demo"),
    "predict": ("Detections drawn on your pictures, and detections.json (COCO results).",
                "keras_retina predict --saved_model=serving/demo/1 photo.jpg --output_dir=out"),
    "convert": ("A COCO RetinaNet from torchvision (.pth) or detectron2 (.pkl) weights -> a model_dir.",
                "keras_retina convert --source=torchvision --weights=retinanet_resnet50_fpn_v2_coco-5905b1c5.pth "
                "--model_dir=runs/coco_v2"),
}

# The commands' own flags: name -> (kind, default, help, group).
OPTIONS = {
    "model_dir": ("string", None, "The run folder: checkpoints, logs, metrics, the model.", "run"),
    "resume_with_other_data": ("boolean", False, "train: continue a model_dir on another label map or other "
                               "data flags than it was trained on (refused otherwise).", "run"),
    "max_images": ("integer", 1000, "Images for the anchor-coverage report (check-data reads every image).", "run"),
    "output": ("string", None, "evaluate: JSON file for the metrics (default model_dir/eval, or FILE.metrics.json "
               "for --model=FILE); export --format=tflite|onnx: the file to write.", "run"),
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
    "saved_model": ("string", None, "An exported SavedModel version folder.", "predict"),
    "model": ("string", None, "predict, evaluate: a .tflite or .onnx file from keras_retina export (run with "
              "ai-edge-litert / onnxruntime).", "predict"),
    "output_dir": ("string", "predictions", "Where pictures and detections.json go.", "predict"),
    "score_threshold": ("float", DRAW_SCORE_THRESHOLD, "Draw detections at or above this score.", "predict"),
    "source": ("enum", (None, ["torchvision", "detectron2"]), "Where the weights come from: torchvision "
               "(retinanet_resnet50_fpn[_v2] .pth) or detectron2 (model zoo RetinaNet .pkl).", "convert"),
    "weights": ("string", None, "The downloaded weight file (never executed: only tensors are read).", "convert"),
}
_OPTION_CHECKS = {
    "max_images": (lambda v: v > 0, "must be positive."),
    "version": (lambda v: v > 0, "must be positive."),
    "pre_nms_top_k": (lambda v: v > 0, "must be positive."),
    "max_detections": (lambda v: v > 0, "must be positive."),
    "calibration_count": (lambda v: v > 0, "must be positive."),
    "nms_score_threshold": (lambda v: 0 <= v < 1, "must be in [0, 1)."),
    "nms_iou_threshold": (lambda v: 0 < v <= 1, "must be in (0, 1]."),
    "score_threshold": (lambda v: 0 <= v <= 1, "must be in [0, 1]."),
}
# The flags each command reads, by group (None: the whole group); its --help shows these.
COMMAND_FLAGS = {
    "train": {"run": {"model_dir", "max_images", "resume_with_other_data"}, "data": None, "model": None, "training": None,
              "export": None},
    "evaluate": {"run": {"model_dir", "output"}, "predict": {"model"}, "data": None,
                 "training": {"batch_size", "mixed_precision"}},
    "check-data": {"run": {"max_images"}, "data": None,
                   "model": {"image_size", "max_image_size", "resize", "resize_rounding", "canvas", "num_scales",
                             "aspect_ratios", "anchor_size", "anchor_geometry"}},
    "export": {"run": {"model_dir", "output"}, "export": None, "training": {"mixed_precision"}},
    "convert": {"run": {"model_dir"}, "convert": None},
    "predict": {"run": {"model_dir"}, "predict": None,
                "export": {"nms_score_threshold", "pre_nms_top_k", "nms_iou_threshold", "max_detections"},
                "training": {"mixed_precision"}},
}


def _configs():
    from keras_retina.data.data_config import DataConfig
    from keras_retina.model_config import ModelConfig
    from keras_retina.train_config import TrainConfig

    return {"data": DataConfig, "model": ModelConfig, "training": TrainConfig}


def _define_flags():
    """Every flag: the configs' fields with `flag=True`, then OPTIONS. Returns {name: group}."""
    from absl import flags

    groups = {}
    for group, cls in _configs().items():
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


def _build_configs(values):
    """Flag values -> {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}."""
    out = {}
    for group, cls in _configs().items():
        kwargs = {f.name: _convert(f, values[f.name]) for f in dataclasses.fields(cls) if f.metadata.get("flag")}
        out["train" if group == "training" else group] = cls(**kwargs)
    return out


def _print_commands():
    lines = ["keras-retina: RetinaNet (\"Focal Loss for Dense Object Detection\") on Keras 3 / TensorFlow.", "",
             "usage: keras_retina COMMAND [--flagfile=FILE] [--flag=value ...]", "", "commands:"]
    for name, (text, example) in COMMANDS.items():
        lines.append(f"  {name:<11} {text}")
    lines += ["", "examples:"] + [f"  {example}" for _, example in COMMANDS.values()]
    lines += ["", "keras_retina COMMAND --help lists the flags a command uses; --helpfull lists every flag."]
    print("\n".join(lines))


def _print_command_help(command, groups):
    from absl import flags

    titles = {"run": "run folder and reports", "data": "data (exactly one training source)",
              "model": "model (the paper's defaults)", "training": "training (the paper's recipe by default)",
              "export": "export and postprocessing", "predict": "predict", "convert": "convert"}
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


def main(argv):
    from absl import app, flags, logging

    command = argv[1] if len(argv) > 1 else None
    if command not in COMMANDS or (len(argv) > 2) != (command == "predict"):
        raise app.UsageError(f"usage: keras_retina {{{','.join(COMMANDS)}}} [--flagfile=FILE] [--flag=value ...]"
                             " (predict also takes IMAGE ...)"
                             + (f"; unexpected arguments {argv[1:]}" if len(argv) > 1 else ""))
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines would drown the progress
    from keras_retina import commands, predict
    from keras_retina.errors import DataError, UsageError

    values = {name: flags.FLAGS[name].value for name in _GROUPS}
    try:
        configs = _build_configs(values)
        options = {name: values[name] for name in OPTIONS}
        if command == "predict":
            return predict.predict(configs, options, argv[2:])
        return getattr(commands, command.replace("-", "_"))(configs, options)
    except (DataError, UsageError) as error:
        if os.environ.get("KERAS_RETINA_TRACEBACK"):  # for bug reports
            raise
        print(f"keras_retina {command}: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # NaN/Inf loss: message names the step and the cause
        print(f"keras_retina {command}: error: {error}", file=sys.stderr)
        return 3
    except Exception as error:  # noqa: BLE001 - only a full disk is handled here; the rest re-raised
        if not _disk_full(error):
            raise
        where = getattr(error, "filename", None) or str(error).strip().splitlines()[0][:300]
        print(f"keras_retina {command}: error: the disk is full ({where}); files written so far are whole "
              f"(written under temporary names); free space and run the same command again.", file=sys.stderr)
        return 2


def _disk_full(error):
    """An OSError with ENOSPC/EDQUOT, or TensorFlow's report of one (its file writers raise
    OpErrors that carry the operating system's text, not its number)."""
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return type(error).__module__.startswith("tensorflow") and "No space left on device" in str(error)


def _find_flagfile(path):
    """A flagfile as given, else relative to the installed configs (`configs/demo.flags`)."""
    from absl import app

    if os.path.exists(path):
        return path
    roots = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
             os.path.join(sys.prefix, "share", "keras_retina")]
    for root in roots:
        if os.path.isfile(os.path.join(root, path)):
            return os.path.join(root, path)
    raise app.UsageError(f"--flagfile={path}: no such file here or in the installed configs.")


def _resolve_flagfiles(argv, depth=0):
    """Replaces every --flagfile=F (nested ones too) by F's flags, in place and in order, so
    later flags still override earlier ones and includes work from any folder."""
    from absl import app

    if depth > 10:
        raise app.UsageError("--flagfile includes nest more than 10 deep (a cycle?).")
    resolved = []
    for arg in argv:
        if not arg.startswith("--flagfile="):
            resolved.append(arg)
            continue
        with open(_find_flagfile(arg.split("=", 1)[1])) as f:
            lines = [line.strip() for line in f]
        resolved += _resolve_flagfiles([l for l in lines if l and not l.startswith("#")], depth + 1)
    return resolved


_GROUPS = {}


def run():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        _print_commands()
        sys.exit(0)
    from absl import app

    try:
        argv = _resolve_flagfiles(sys.argv)
    except (app.UsageError, OSError) as error:
        sys.exit(f"keras_retina: error: {error}")
    _GROUPS.update(_define_flags())
    if any(a in ("-h", "--help") for a in argv[2:]) and argv[1] in COMMANDS:
        _print_command_help(argv[1], _GROUPS)
        sys.exit(0)
    app.run(main, argv=argv)


if __name__ == "__main__":
    run()
