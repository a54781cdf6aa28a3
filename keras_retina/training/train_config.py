"""TrainConfig: the training recipe, declared once with the paper's defaults (section 4.1).

SGD with momentum 0.9 and weight decay 1e-4, learning rate 0.01 for a global batch of 16
scaled linearly with the batch, 90k iterations at batch 16 with the rate divided by 10 at 60k
and 80k, a 500-step linear warm-up from 1/3 of the rate (Detectron), horizontal flip.
`learning_rate`, `train_steps`, `lr_boundaries` and `warmup_steps` are given for
`reference_batch_size` and scaled to `batch_size` (`scaled()`). The command line's training
flags and `config.json["train"]` derive from these fields.
"""

import dataclasses

from keras_retina.config_fields import NOT_NEGATIVE, POSITIVE, UNIT, as_tuples, check_fields, setting
from keras_retina.data.augment import PRESETS
from keras_retina.errors import UsageError
from keras_retina.modeling.precision import PRECISIONS

REFERENCE_BATCH_SIZE = 16
STRATEGIES = ("mirrored", "multi_worker", "one_device")
OPTIMIZERS = ("sgd", "adamw")
_POSITIVE, _NOT_NEGATIVE, _UNIT = POSITIVE, NOT_NEGATIVE, UNIT


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    batch_size: int = setting(REFERENCE_BATCH_SIZE, "Global batch size (all replicas together).", _POSITIVE)
    reference_batch_size: int = setting(
        REFERENCE_BATCH_SIZE, "Batch size for which --learning_rate and the step flags are given; they are "
        "scaled linearly to --batch_size.", _POSITIVE)
    train_steps: int = setting(90000, "Training steps at --reference_batch_size (paper 4.1: 90k).", _POSITIVE)
    learning_rate: float = setting(0.01, "Learning rate at --reference_batch_size (paper 4.1: 0.01).", _POSITIVE)
    warmup_steps: int = setting(500, "Linear warm-up steps from 1/3 of the rate (Detectron: 500).", _NOT_NEGATIVE)
    lr_boundaries: tuple = setting(
        (60000, 80000), "Steps where the rate drops 10x (paper 4.1: 60k, 80k).",
        (lambda v: list(v) == sorted(set(v)) and all(b > 0 for b in v), "must be increasing positive steps."))
    optimizer: str = setting("sgd", "sgd (paper) or adamw (for backbones trained from scratch).", choices=OPTIMIZERS)
    clipnorm: float = setting(0.0, "Clip the global gradient norm to this (0: off, as in the paper).", _NOT_NEGATIVE)
    momentum: float = setting(0.9, "SGD momentum (paper 4.1: 0.9).", (lambda v: 0 <= v < 1, "must be in [0, 1)."))
    weight_decay: float = setting(1e-4, "Weight decay (paper 4.1: 1e-4).", _NOT_NEGATIVE)
    strategy: str = setting("mirrored", "tf.distribute strategy: every local device, workers from TF_CONFIG, "
                            "or one device.", choices=STRATEGIES)
    mixed_precision: str = setting(
        "none", "Compute precision of train, evaluate, export and predict (variables stay float32, so "
        "checkpoints work either way). bfloat16's speed on a CPU depends on the CPU, not on its flags (1.9x faster "
        "on an AMD Zen 4, 1.5x slower on a Xeon with the same avx512_bf16 flag, 3-5x faster with AMX); auto times "
        "this model in both once per machine (cached in $KERAS_RETINA_HOME/precision) and runs bfloat16 where it "
        "is at least 10% faster; on a GPU, bfloat16 from compute capability 8.0. float16 is for GPUs.",
        choices=PRECISIONS)
    init_from: str = setting(
        None, "Start a new run from this model_dir's weights (a converted COCO model, any trained one, or a "
        "registered detector's name: keras_retina models): its architecture, every weight, and the classifier rows of "
        "classes whose names match (fine_tuning.py).")
    ema_momentum: float = setting(
        0.0, "Keep an exponential moving average of the weights with this momentum (e.g. 0.999; 0: off). Evaluation "
        "during training, model_dir/best/, model.keras, export, predict and evaluate use the averaged weights; "
        "checkpoints/ keep the raw ones too, for a resume (training/weight_averaging.py).",
        (lambda v: 0 <= v < 1, "must be in [0, 1)."))
    seed: int = setting(0, "Random seed.")
    deterministic: bool = setting(
        False, "Bit-exact training: deterministic ops and a data order that is a function of the step, so a "
        "resumed run ends with the same weights as an uninterrupted one (somewhat slower).")
    flip: bool = setting(True, "Random horizontal flip (the paper's augmentation).")
    scale_min: float = setting(1.0, "Scale jitter (paper 5.2): the shorter side is drawn from [scale_min, "
                               "scale_max] x --image_size, the longer side still capped (1.0 = none; the "
                               "paper's 640-800 at S=800: 0.8); with --resize=square the whole scale is.",
                               _POSITIVE)
    scale_max: float = setting(1.0, "Scale jitter upper bound (above 1: pictures beyond the largest canvas are "
                               "randomly cropped to it).", _POSITIVE)
    augment: str = setting(
        "none", "Augmentations for the pictures' kind: none (the paper's flip and scale jitter), photos "
        "(colour jitter, random crops and zoom-outs) or overhead (as photos, plus vertical flips and quarter turns: "
        "aerial, satellite and microscopy pictures have no up or down). The flags below override a preset.",
        choices=tuple(PRESETS))
    vertical_flip: float = setting(None, "Probability of an upside-down flip (default: --augment's).", _UNIT)
    rotate90: float = setting(None, "Probability of a quarter turn, 90, 180 or 270 degrees (default: --augment's).",
                              _UNIT)
    color_jitter: float = setting(None, "Brightness, contrast and saturation scaled within 1 -/+ this, hue "
                                  "shifted by up to a tenth of it (default: --augment's).", _UNIT)
    random_crop: float = setting(None, "Probability of keeping a random 50-100% window of each side; boxes are "
                                 "clipped to it, those left without area dropped (default: --augment's).", _UNIT)
    zoom_out: float = setting(None, "Probability of placing the picture on a canvas up to twice its sides, filled "
                              "with its mean colour (default: --augment's).", _UNIT)
    best_metric: str = setting("AP", "With validation data, the checkpoint with the best value of this COCO metric "
                               "is kept in model_dir/best/ and used by export, predict, evaluate and --init_from.",
                               choices=("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"))
    early_stopping_evals: int = setting(0, "Stop after this many evaluations (--eval_every_steps) without a better "
                                        "--best_metric (0: never).", _NOT_NEGATIVE)
    checkpoint_every_steps: int = setting(1000, "Save a checkpoint every N steps.", _POSITIVE)
    eval_every_steps: int = setting(0, "Evaluate every N steps (0: only at the end).", _NOT_NEGATIVE)
    report: bool = setting(True, "With validation data, the final evaluation (and evaluate) also writes the "
                           "evaluation report beside its metrics: an HTML page, PNG figures and report.json with PR "
                           "curves, per-class thresholds, the confusion matrix, the errors and the worst pictures.")
    report_pictures: int = setting(12, "The report's pictures with the most mistakes.", _NOT_NEGATIVE)
    report_score_threshold: float = setting(0.0, "The report's confusion matrix and pictures keep detections scoring "
                                            "at least this (0: the score with the best F1 over all classes).",
                                            (lambda v: 0 <= v <= 1, "must be in [0, 1]."))
    verbose: int = setting(1, "0 silent, 1 progress bar, 2 one line per checkpoint interval, 3 as 2 and "
                           "TensorFlow's own start-up and log lines.", (lambda v: 0 <= v <= 3, "must be 0 to 3."))

    def __post_init__(self):
        object.__setattr__(self, "lr_boundaries", tuple(int(b) for b in as_tuples(self.lr_boundaries)))
        check_fields(self)
        if self.scale_min > self.scale_max:
            raise UsageError(f"scale_min={self.scale_min} is above scale_max={self.scale_max}.")
        if self.early_stopping_evals and not self.eval_every_steps:
            raise UsageError(f"early_stopping_evals={self.early_stopping_evals} counts evaluations during training: "
                             f"give eval_every_steps too.")
        if any(b >= self.train_steps for b in self.lr_boundaries):
            raise UsageError(f"lr_boundaries={list(self.lr_boundaries)}: every step must be below "
                             f"train_steps={self.train_steps}.")

    def scaled(self):
        """(learning rate, train steps, boundaries, warm-up steps) for the real batch."""
        ratio = self.batch_size / self.reference_batch_size
        steps = lambda s: max(int(round(s / ratio)), 1)  # noqa: E731
        return (self.learning_rate * ratio, steps(self.train_steps), [steps(b) for b in self.lr_boundaries],
                int(round(self.warmup_steps / ratio)))

    def augmentation(self):
        """The augmentation settings (`data.augment`): --augment's preset, the flags given on top."""
        from keras_retina.data import augment

        return augment.settings(self.augment, rotate90=self.rotate90, vertical_flip=self.vertical_flip,
                                color=self.color_jitter, zoom_out=self.zoom_out, crop=self.random_crop)

    def to_json(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
