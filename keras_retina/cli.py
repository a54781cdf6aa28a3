"""`keras_retina` command line: the only user of absl.flags (flags -> plain values -> library calls).

    keras_retina train --flagfile=configs/demo.flags
    keras_retina train --flagfile=configs/r50.flags --model_dir=runs/r50
    keras_retina evaluate --model_dir=runs/r50
    keras_retina check-data --flagfile=configs/r50.flags
    keras_retina export --model_dir=runs/r50 --export_dir=serving/retinanet
    keras_retina predict --saved_model=serving/retinanet/1 photo.jpg --output_dir=out

Flagfiles may include others (`--flagfile=configs/r50.flags` inside a file).
A flagfile named relative to the current folder that does not exist there is
looked up in the installed configs, includes too (so `--flagfile=configs/r101.flags`
works from any folder). Bad flag values are rejected, naming the flag, before any
work starts.
"""

import os
import sys

from absl import app, flags, logging

from keras_retina import anchors as anchor_lib
from keras_retina import losses as loss_lib
from keras_retina import training as recipe
from keras_retina.backbone import BACKBONES, DEFAULT_BACKBONE, MAX_FREEZE_AT, RESNETS
from keras_retina.training import OPTIMIZERS, STRATEGIES
from keras_retina.visualize import DRAW_SCORE_THRESHOLD

COMMANDS = ("train", "evaluate", "check-data", "export", "predict")
FLAGS = flags.FLAGS

# Output and model.
flags.DEFINE_string("model_dir", None, "Where checkpoints, logs, metrics and the model go.")
flags.DEFINE_enum("backbone", DEFAULT_BACKBONE, BACKBONES, "Backbone network.")
flags.DEFINE_string("backbone_weights", None, "'imagenet', a weights file path, or empty for random init.")
flags.DEFINE_integer("freeze_backbone_at", None,
                     "Freeze the ResNet stem and stages conv2..convK (Detectron's FREEZE_AT; 0: train "
                     "everything). Default: 2 with --backbone_weights, 0 without.", lower_bound=0,
                     upper_bound=MAX_FREEZE_AT)
flags.DEFINE_integer("image_size", 640, "Square model input size in pixels (multiple of 32).")
flags.DEFINE_integer("fpn_filters", 256, "FPN channels (paper: 256).")
flags.DEFINE_integer("head_filters", 256, "Subnet channels (paper: 256).")
flags.DEFINE_integer("head_convs", 4, "Hidden convs per subnet (paper: 4).")
flags.DEFINE_enum("p6_input", "C5", ["C5", "P5"], "P6 from C5 (paper) or P5 (Model Garden).")
flags.DEFINE_float("anchor_size", anchor_lib.ANCHOR_SIZE, "Anchor side in strides (4: 32^2..512^2).")
flags.DEFINE_integer("num_scales", anchor_lib.NUM_SCALES, "Anchor scales per octave.")
flags.DEFINE_list("aspect_ratios", [str(r) for r in anchor_lib.ASPECT_RATIOS], "Anchor width/height ratios.")
flags.DEFINE_float("focal_alpha", loss_lib.FOCAL_ALPHA, "Focal loss alpha.")
flags.DEFINE_float("focal_gamma", loss_lib.FOCAL_GAMMA, "Focal loss gamma.")
# Optimisation.
flags.DEFINE_integer("batch_size", recipe.REFERENCE_BATCH_SIZE, "Global batch size (all replicas together).")
flags.DEFINE_integer("reference_batch_size", recipe.REFERENCE_BATCH_SIZE,
                     "Batch size for which --learning_rate and the step flags are given; they are "
                     "scaled linearly to --batch_size.")
flags.DEFINE_integer("train_steps", recipe.TRAIN_STEPS, "Training steps at --reference_batch_size.")
flags.DEFINE_float("learning_rate", recipe.LEARNING_RATE, "Learning rate at --reference_batch_size.")
flags.DEFINE_integer("warmup_steps", recipe.WARMUP_STEPS, "Linear warm-up steps (from 1/3 of the rate).")
flags.DEFINE_list("lr_boundaries", [str(b) for b in recipe.LR_BOUNDARIES], "Steps where the rate drops 10x.")
flags.DEFINE_enum("optimizer", "sgd", OPTIMIZERS, "sgd (paper) or adamw (for backbones trained from scratch).")
flags.DEFINE_float("clipnorm", 0.0, "Clip the global gradient norm to this (0: off, as in the paper).")
flags.DEFINE_float("momentum", recipe.MOMENTUM, "SGD momentum.")
flags.DEFINE_float("weight_decay", recipe.WEIGHT_DECAY, "Weight decay.")
flags.DEFINE_enum("strategy", "mirrored", STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_enum("mixed_precision", "none", ["none", "float16", "bfloat16"],
                  "Compute precision of train, evaluate, export and predict (variables stay float32, "
                  "so checkpoints work either way). bfloat16 runs about 3-5x faster on CPUs with "
                  "AVX512-BF16/AMX and on TPUs; float16 is for GPUs.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_boolean("deterministic", False,
                     "Bit-exact training: deterministic ops and a data order that is a function of "
                     "the step, so a resumed run ends with the same weights as an uninterrupted one "
                     "(COCO JSON, TFRecord and TFDS sources; somewhat slower).")
flags.DEFINE_integer("eval_every_steps", 0, "Evaluate every N steps (0: only at the end).")
flags.DEFINE_integer("checkpoint_every_steps", 1000, "Save a checkpoint every N steps.")
flags.DEFINE_boolean("flip", True, "Random horizontal flip (the paper's augmentation).")
flags.DEFINE_float("scale_min", 1.0, "Scale jitter lower bound (1.0 = none).")
flags.DEFINE_float("scale_max", 1.0, "Scale jitter upper bound.")
flags.DEFINE_integer("verbose", 1, "0 silent, 1 progress bar, 2 one line per checkpoint interval.")
# Data sources: exactly one for training.
flags.DEFINE_string("demo_data", None, "Generate (once) the synthetic demo dataset here and use it.")
flags.DEFINE_string("train_annotations", None, "COCO JSON for training.")
flags.DEFINE_string("train_images", None, "Image folder for --train_annotations.")
flags.DEFINE_string("val_annotations", None, "COCO JSON for validation.")
flags.DEFINE_string("val_images", None, "Image folder for --val_annotations.")
flags.DEFINE_string("tfds_name", None, "TFDS dataset, e.g. coco/2017.")
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir.")
flags.DEFINE_string("tfds_train_split", "train", "TFDS training split.")
flags.DEFINE_string("tfds_val_split", "validation", "TFDS validation split.")
flags.DEFINE_string("train_tfrecord", None, "TFRecord file pattern (TF OD API layout) for training.")
flags.DEFINE_string("val_tfrecord", None, "TFRecord file pattern for validation.")
flags.DEFINE_boolean("skip_bad_examples", False,
                     "Skip unreadable/missing images and drop broken annotations (each counted and "
                     "reported) instead of stopping with an error that lists them. Every image is "
                     "decoded once before training to find them.")
flags.DEFINE_string("label_map", None, "Label map for TFRecords (.json or .pbtxt); default: scan ids.")
flags.DEFINE_string("output", None, "evaluate: JSON file for the metrics.")
# Export and prediction.
flags.DEFINE_string("export_dir", None, "export (and train, when set): SavedModel base folder; "
                    "versions go in numbered subfolders, as TF Serving expects.")
flags.DEFINE_integer("version", None, "export: version number (default: one more than the latest).")
flags.DEFINE_float("nms_score_threshold", None, "export: score threshold (default: the model's, 0.05).")
flags.DEFINE_integer("pre_nms_top_k", None, "export: candidates per level (default 1000).")
flags.DEFINE_float("nms_iou_threshold", None, "export: NMS IoU (default 0.5).")
flags.DEFINE_integer("max_detections", None, "export: detections per image (default 100).")
flags.DEFINE_string("saved_model", None, "predict: an exported SavedModel version folder.")
flags.DEFINE_string("output_dir", "predictions", "predict: where pictures and detections.json go.")
flags.DEFINE_float("score_threshold", DRAW_SCORE_THRESHOLD, "predict: draw detections at or above this score.")
flags.DEFINE_integer("max_images", 1000, "check-data: images for the anchor-coverage report "
                     "(the data check itself reads every image).")

_OUR_FLAGS = [flag.name for flag in FLAGS.get_key_flags_for_module(sys.modules[__name__])]

_POSITIVE = ("image_size", "fpn_filters", "head_filters", "batch_size", "reference_batch_size",
             "train_steps", "num_scales", "checkpoint_every_steps", "max_images")
for _name in _POSITIVE:
    flags.register_validator(_name, lambda v: v > 0, f"--{_name} must be positive.")
flags.register_validator("image_size", lambda v: v % anchor_lib.SIZE_MULTIPLE == 0,
                         f"--image_size must be a multiple of {anchor_lib.SIZE_MULTIPLE}.")
flags.register_validator("learning_rate", lambda v: v > 0, "--learning_rate must be positive.")
flags.register_validator("momentum", lambda v: 0 <= v < 1, "--momentum must be in [0, 1).")
flags.register_validator("weight_decay", lambda v: v >= 0, "--weight_decay must be >= 0.")
flags.register_validator("focal_alpha", lambda v: 0 <= v <= 1, "--focal_alpha must be in [0, 1].")
flags.register_validator("focal_gamma", lambda v: v >= 0, "--focal_gamma must be >= 0.")
flags.register_validator("clipnorm", lambda v: v >= 0, "--clipnorm must be >= 0.")
flags.register_validator("warmup_steps", lambda v: v >= 0, "--warmup_steps must be >= 0.")
flags.register_validator("eval_every_steps", lambda v: v >= 0, "--eval_every_steps must be >= 0.")
flags.register_validator("head_convs", lambda v: v >= 0, "--head_convs must be >= 0.")
flags.register_validator("anchor_size", lambda v: v > 0, "--anchor_size must be positive.")
flags.register_validator("score_threshold", lambda v: 0 <= v <= 1, "--score_threshold must be in [0, 1].")
flags.register_validator("nms_score_threshold", lambda v: v is None or 0 <= v < 1,
                         "--nms_score_threshold must be in [0, 1).")
flags.register_validator("nms_iou_threshold", lambda v: v is None or 0 < v <= 1,
                         "--nms_iou_threshold must be in (0, 1].")
for _name in ("pre_nms_top_k", "max_detections", "version"):
    flags.register_validator(_name, lambda v: v is None or v > 0, f"--{_name} must be positive.")


def _numbers(values, cast):
    try:
        return [cast(v) for v in values]
    except ValueError:
        return None


flags.register_validator(
    "lr_boundaries", lambda v: (n := _numbers(v, int)) is not None and n == sorted(set(n))
    and all(b > 0 for b in n), "--lr_boundaries must be increasing positive integers, e.g. 60000,80000.")
flags.register_validator(
    "aspect_ratios", lambda v: (n := _numbers(v, float)) is not None and bool(n) and all(r > 0 for r in n),
    "--aspect_ratios must be positive numbers, e.g. 0.5,1.0,2.0.")
flags.register_multi_flags_validator(
    ["scale_min", "scale_max"], lambda f: 0 < f["scale_min"] <= f["scale_max"],
    "Need 0 < --scale_min <= --scale_max.")
flags.register_multi_flags_validator(
    ["backbone", "freeze_backbone_at"], lambda f: not f["freeze_backbone_at"] or f["backbone"] in RESNETS,
    "--freeze_backbone_at needs a ResNet --backbone; tiny trains from scratch (use 0).")
flags.register_multi_flags_validator(
    ["train_steps", "lr_boundaries"],
    lambda f: all(int(b) < f["train_steps"] for b in (_numbers(f["lr_boundaries"], int) or [])),
    "Every --lr_boundaries step must be below --train_steps.")


def model_kwargs():
    weights = FLAGS.backbone_weights or None
    # None: resolved by training.train (the resumed run's value, or default_freeze_at).
    return dict(backbone=FLAGS.backbone, image_size=FLAGS.image_size, backbone_weights=weights,
                freeze_backbone_at=FLAGS.freeze_backbone_at,
                fpn_filters=FLAGS.fpn_filters, head_filters=FLAGS.head_filters,
                head_convs=FLAGS.head_convs, p6_input=FLAGS.p6_input, anchor_size=FLAGS.anchor_size,
                num_scales=FLAGS.num_scales, aspect_ratios=[float(r) for r in FLAGS.aspect_ratios],
                focal_alpha=FLAGS.focal_alpha, focal_gamma=FLAGS.focal_gamma)


def data_flags():
    names = ("demo_data", "train_annotations", "train_images", "val_annotations", "val_images",
             "tfds_name", "tfds_data_dir", "tfds_train_split", "tfds_val_split", "train_tfrecord",
             "val_tfrecord", "label_map", "skip_bad_examples")
    return {name: getattr(FLAGS, name) for name in names}


def main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS or (len(argv) > 2) != (argv[1] == "predict"):
        raise app.UsageError(f"usage: keras_retina {{{','.join(COMMANDS)}}} [--flagfile=FILE] [--flag=value ...]"
                             " (predict also takes IMAGE ...)"
                             + (f"; unexpected arguments {argv[1:]}" if len(argv) > 1 else ""))
    from keras_retina import commands

    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines would drown the progress
    if os.environ.get("KERAS_RETINA_TRACEBACK"):
        import keras

        keras.config.disable_traceback_filtering()

    options = {name: FLAGS[name].value for name in _OUR_FLAGS}
    try:
        if argv[1] == "predict":
            return commands.predict(options, argv[2:])
        return getattr(commands, argv[1].replace("-", "_"))(options, model_kwargs(), data_flags())
    except (commands.DataError, FileNotFoundError, ValueError) as error:
        if os.environ.get("KERAS_RETINA_TRACEBACK"):  # for bug reports
            raise
        print(f"keras_retina {argv[1]}: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:  # NaN/Inf loss: message names the step and the cause
        print(f"keras_retina {argv[1]}: error: {error}", file=sys.stderr)
        return 3


def _find_flagfile(path):
    """A flagfile as given, else relative to the installed configs (`configs/demo.flags`)."""
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


def run():
    try:
        argv = _resolve_flagfiles(sys.argv)
    except (app.UsageError, OSError) as error:
        sys.exit(f"keras_retina: error: {error}")
    app.run(main, argv=argv)


if __name__ == "__main__":
    run()
