"""Training: strategy, optimizer and schedule, checkpoints and resume, the fit loop, the summary.

Recipe (paper section 4.1, "Optimization"): SGD with momentum 0.9 and weight
decay 1e-4, learning rate 0.01 for a global batch of 16 scaled linearly with
the batch, 90k iterations at batch 16 with the rate divided by 10 at 60k and
80k, plus a short linear warm-up (common practice: Detectron starts at 1/3 of
the rate for 500 iterations). `reference_batch_size` says for which batch
`learning_rate`, `train_steps`, `lr_boundaries` and `warmup_steps` are given;
they are scaled to the real global batch (lr x B/ref, steps x ref/B).

Weight decay is Keras' decoupled form (w -= lr * wd * w each step).
`optimizer="adamw"` is for networks trained from scratch (the tiny demo
backbone), where the paper's SGD recipe, made for ImageNet-initialised ResNets,
learns far more slowly.

Resume: the model and optimizer (whose `iterations` is the global step and so
fixes the learning rate) are saved with `tf.train.CheckpointManager` in
`model_dir/checkpoints` every `checkpoint_every_steps` steps (one Keras
"epoch" = that many steps). Running the same command again restores the
latest checkpoint and continues at its step. A checkpoint becomes "latest" only
after all its files are written, so a kill while saving leaves the previous one.
"""

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import keras
import tensorflow as tf

from keras_retina import evaluation, visualize
from keras_retina.data import cleaning, pipeline
from keras_retina.backbone import DEFAULT_BACKBONE, default_freeze_at
from keras_retina.model import RetinaNet

# The paper's recipe (section 4.1), for a global batch of REFERENCE_BATCH_SIZE images.
REFERENCE_BATCH_SIZE = 16
LEARNING_RATE = 0.01
TRAIN_STEPS = 90000
LR_BOUNDARIES = (60000, 80000)
WARMUP_STEPS = 500  # Detectron's linear warm-up from 1/3 of the rate
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4

STRATEGIES = ("mirrored", "multi_worker", "one_device")
OPTIMIZERS = ("sgd", "adamw")
# Model settings added after model_dirs were first written, with the value those runs used.
ADDED_MODEL_SETTINGS = {"freeze_backbone_at": 0}


@keras.saving.register_keras_serializable(package="keras_retina")
class WarmupPiecewiseSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `warmup_factor * rate` to `rate` over `warmup_steps`, then
    `rate * decay^i` after the i-th of `boundaries` (steps)."""

    def __init__(self, rate, boundaries=(), decay=0.1, warmup_steps=0, warmup_factor=1 / 3):
        self.rate = float(rate)
        self.boundaries = [int(b) for b in boundaries]
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)
        self.warmup_factor = float(warmup_factor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rate = tf.constant(self.rate, tf.float32)
        for boundary in self.boundaries:
            rate = tf.where(step >= boundary, rate * self.decay, rate)
        if self.warmup_steps:
            progress = tf.minimum(step / self.warmup_steps, 1.0)
            rate = rate * (self.warmup_factor + (1.0 - self.warmup_factor) * progress)
        return rate

    def get_config(self):
        return {"rate": self.rate, "boundaries": self.boundaries, "decay": self.decay,
                "warmup_steps": self.warmup_steps, "warmup_factor": self.warmup_factor}


@dataclass
class TrainConfig:
    """Plain values for one training run (the CLI fills them from flags)."""

    model_dir: str
    model: dict  # RetinaNet constructor arguments (num_classes filled from the data)
    batch_size: int = REFERENCE_BATCH_SIZE
    reference_batch_size: int = REFERENCE_BATCH_SIZE
    learning_rate: float = LEARNING_RATE
    train_steps: int = TRAIN_STEPS
    lr_boundaries: list = field(default_factory=lambda: list(LR_BOUNDARIES))
    warmup_steps: int = WARMUP_STEPS
    optimizer: str = "sgd"
    clipnorm: float = 0.0  # clip the global gradient norm (0: off, as in the paper)
    momentum: float = MOMENTUM
    weight_decay: float = WEIGHT_DECAY
    checkpoint_every_steps: int = 1000
    eval_every_steps: int = 0  # 0: only at the end
    strategy: str = "mirrored"
    seed: int = 0
    flip: bool = True
    scale_min: float = 1.0
    scale_max: float = 1.0
    shuffle_buffer: int = pipeline.SHUFFLE_BUFFER
    deterministic: bool = False
    verbose: int = 1
    data: dict = field(default_factory=dict)  # the data-source flags, kept for `evaluate`

    def scaled(self):
        """(learning rate, train steps, boundaries, warm-up steps) for the real batch."""
        ratio = self.batch_size / self.reference_batch_size
        steps = lambda s: max(int(round(s / ratio)), 1)  # noqa: E731
        return (self.learning_rate * ratio, steps(self.train_steps),
                [steps(b) for b in self.lr_boundaries],
                int(round(self.warmup_steps / ratio)))


def make_strategy(name):
    """'mirrored' (all local devices), 'multi_worker' (from TF_CONFIG) or 'one_device'."""
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()  # NCCL all-reduce
        # CPU only: plain reduction. The default collective all-reduce keys its ops by
        # process-global counters, so a second strategy in one process (a notebook, the tests)
        # can collide with the first ("Shape mismatch in the collective instance").
        return tf.distribute.MirroredStrategy(cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    raise ValueError(f"--strategy={name!r}: choose one of {STRATEGIES}.")


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (
        not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def build_model(config, strategy):
    """RetinaNet + SGD with the paper's schedule, built and compiled in the strategy scope."""
    rate, steps, boundaries, warmup = config.scaled()
    with strategy.scope():
        model = RetinaNet(**config.model)
        schedule = WarmupPiecewiseSchedule(rate, boundaries, 0.1, warmup)
        clip = {"global_clipnorm": config.clipnorm} if config.clipnorm else {}
        if config.optimizer == "sgd":
            optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum,
                                             weight_decay=config.weight_decay or None, **clip)
        elif config.optimizer == "adamw":  # for backbones trained from scratch (the demo)
            optimizer = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay, **clip)
        else:
            raise ValueError(f"--optimizer={config.optimizer!r}: choose one of {OPTIMIZERS}.")
        model.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)
    return model


def save_json(data, path):
    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def load_json(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


class _NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers the step."""

    def __init__(self):
        super().__init__()
        self.bad_step = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.bad_step = int(self.model.optimizer.iterations.numpy())
            self.model.stop_training = True


class _Checkpointer(keras.callbacks.Callback):
    """Saves model + optimizer at every epoch end (= every checkpoint_every_steps steps)."""

    def __init__(self, manager, train_steps, nan_guard):
        super().__init__()
        self.manager = manager
        self.train_steps = train_steps
        self.nan_guard = nan_guard

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.train_steps:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.bad_step is not None:  # never checkpoint a broken model
            return
        step = int(self.model.optimizer.iterations.numpy())
        if self.manager.latest_checkpoint != f"{self.manager.directory}/ckpt-{step}":
            self.manager.save(checkpoint_number=step)


class _LearningRateLogger(keras.callbacks.Callback):
    def __init__(self, writer, every):
        super().__init__()
        self.writer, self.every = writer, max(every, 1)

    def _write(self, logs):
        with self.writer.as_default(step=int(self.model.optimizer.iterations.numpy())):
            tf.summary.scalar("learning_rate", self.model.optimizer.learning_rate)
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"train/{name}", value)

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) % self.every == 0:
            self._write(logs)

    def on_epoch_end(self, epoch, logs=None):  # short runs and every checkpoint interval
        self._write(logs)


def _image_writer(writer, dataset, label_map, count=4):
    images, _ = next(iter(dataset.take(1)))
    images = images[:count]

    def write(model, step):
        out = model.detect(images)
        size = tf.cast(tf.shape(images)[1:3], tf.float32)
        boxes = out["boxes"] / tf.concat([size, size], 0)
        keep = tf.cast(out["scores"] >= visualize.DRAW_SCORE_THRESHOLD, tf.float32)[..., None]
        drawn = tf.image.draw_bounding_boxes(images / 255.0, boxes * keep,
                                             tf.constant([[1.0, 0.2, 0.2, 1.0]]))
        with writer.as_default(step=step):
            tf.summary.image("eval/detections", drawn, max_outputs=count)

    return write


def resolve_model_settings(model, previous, model_dir):
    """Fills unset settings of `model` (a RetinaNet kwargs dict, in place) and checks a resumed run.

    `previous`: the model settings in model_dir's config.json, or None for a new run. An unset
    `freeze_backbone_at` keeps the resumed run's value (0 for model_dirs written before it
    existed) or, in a new run, takes `backbone.default_freeze_at`. Any other difference from
    `previous` (except backbone_weights, which only initialises a new run) is an error.
    """
    if previous is not None:
        previous = {**ADDED_MODEL_SETTINGS, **previous}
    if model.get("freeze_backbone_at") is None:
        model["freeze_backbone_at"] = previous["freeze_backbone_at"] if previous else default_freeze_at(
            model.get("backbone", DEFAULT_BACKBONE), model.get("backbone_weights"))
    if previous:
        changed = sorted(k for k in set(previous) | set(model)
                         if k != "backbone_weights" and previous.get(k) != model.get(k))
        if changed:
            raise ValueError(f"--model_dir={model_dir} holds a model with different settings "
                             f"({', '.join(changed)}); use a new --model_dir to start over.")


def train(config, train_examples, label_map, val_examples=None, strategy=None, data_reports=None):
    """Trains (or resumes) a RetinaNet; returns the summary dict.

    Args:
      config: TrainConfig.
      train_examples / val_examples: `tf.data.Dataset`s of reader examples.
      label_map: [{"id", "name"}] per contiguous class.
      strategy: a tf.distribute strategy; default `make_strategy(config.strategy)`.
        A multi-worker strategy must be made before TensorFlow runs any op.
    """
    start = time.time()
    ordered = getattr(train_examples, "coco_source", None) or getattr(train_examples, "record_stream", None)
    if config.deterministic and getattr(ordered, "num_examples", None) is None:
        raise ValueError("--deterministic needs a source whose examples can be numbered: a COCO JSON, "
                         "TFRecord or TFDS source read by keras_retina (--train_annotations, "
                         "--train_tfrecord, --tfds_name or --demo_data).")
    strategy = strategy or make_strategy(config.strategy)
    chief = is_chief(strategy)
    model_dir = config.model_dir
    write_dir = model_dir if chief else os.path.join(model_dir, "tmp", f"worker_{strategy.cluster_resolver.task_id}")
    config.model["num_classes"] = len(label_map)
    saved_config = os.path.join(model_dir, "config.json")
    previous = load_json(saved_config)["model"] if tf.io.gfile.exists(saved_config) else None
    resolve_model_settings(config.model, previous, model_dir)
    if chief:
        save_json({"model": config.model, "train": asdict(config)}, saved_config)
        save_json(label_map, os.path.join(model_dir, "label_map.json"))

    keras.utils.set_random_seed(config.seed)
    model = build_model(config, strategy)
    rate, train_steps, boundaries, warmup = config.scaled()
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(write_dir, "checkpoints"),
                                         max_to_keep=3)
    step = 0
    if manager.latest_checkpoint:
        try:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        except AssertionError as error:
            raise ValueError(
                f"{manager.latest_checkpoint} does not hold every weight of this model (written by "
                f"another version of keras_retina?): {str(error).split(':', 1)[0]}. Use a new "
                f"--model_dir to start over.") from None
        step = int(model.optimizer.iterations.numpy())
        print(f"Resuming from {manager.latest_checkpoint} at step {step} "
              f"(learning rate {float(model.optimizer.learning_rate):.5g}).", flush=True)

    per_epoch = max(1, min(config.checkpoint_every_steps, train_steps))
    if config.deterministic:
        # Same ops in the same order on the same data from any resume step: equal weights to an
        # uninterrupted run (tested), at some cost in speed.
        tf.config.experimental.enable_op_determinism()
        train_ds = pipeline.deterministic_train_dataset(
            ordered, model.label_encoder, config.model["image_size"], config.batch_size, config.seed,
            start_step=step, flip=config.flip, scale_range=(config.scale_min, config.scale_max),
            shuffle_buffer=config.shuffle_buffer)
    else:
        train_ds = pipeline.train_dataset(
            train_examples, model.label_encoder, config.model["image_size"], config.batch_size,
            flip=config.flip, scale_range=(config.scale_min, config.scale_max),
            shuffle_buffer=config.shuffle_buffer, seed=config.seed + step)
    log_dir = os.path.join(write_dir, "logs")
    writer = tf.summary.create_file_writer(log_dir)
    nan_guard = _NanGuard()
    callbacks = [nan_guard, _Checkpointer(manager, train_steps, nan_guard),
                 _LearningRateLogger(writer, 10)]
    evaluator = None
    if val_examples is not None and chief:
        val_ds = pipeline.eval_dataset(val_examples, config.model["image_size"], config.batch_size)
        evaluator = evaluation.CocoEvaluation(
            val_ds, label_map, config.eval_every_steps, os.path.join(model_dir, "eval"), writer,
            _image_writer(writer, val_ds, label_map))
        callbacks.append(evaluator)

    if step >= train_steps:
        print(f"Already trained to step {step} (>= {train_steps} steps asked for); not training.",
              flush=True)
    else:
        print(f"Training RetinaNet ({config.model['backbone']}, {config.model['image_size']} px, "
              f"{len(label_map)} classes) for {train_steps} steps at global batch "
              f"{config.batch_size} on {strategy.num_replicas_in_sync} replica(s); lr {rate:.5g}, "
              f"boundaries {boundaries}, warm-up {warmup}.", flush=True)
        model.fit(train_ds, steps_per_epoch=per_epoch, epochs=math.ceil(train_steps / per_epoch),
                  initial_epoch=step // per_epoch, callbacks=callbacks, verbose=config.verbose,
                  shuffle=False)
    final_step = int(model.optimizer.iterations.numpy())
    if nan_guard.bad_step is not None:
        raise FloatingPointError(
            f"Training stopped at step {nan_guard.bad_step}: the loss became NaN/Inf. The last good "
            f"checkpoint is {manager.latest_checkpoint}. Likely causes: a learning rate too high "
            f"for this batch size (try a lower --learning_rate or a longer --warmup_steps) or "
            f"broken boxes in the data (run keras_retina check-data).")
    if not (manager.latest_checkpoint or "").endswith(f"-{final_step}"):
        manager.save(checkpoint_number=final_step)

    summary = {"steps": final_step, "batch_size": config.batch_size,
               "seconds_this_run": round(time.time() - start, 1),
               "model_dir": model_dir, "checkpoint": manager.latest_checkpoint}
    if data_reports:  # what the readers fixed, skipped or dropped (cleaning.DataReport)
        summary["data"] = {split: report.as_dict() for split, report in data_reports.items()}
    if chief:
        keras_path = os.path.join(model_dir, "model.keras")
        model.save(keras_path)
        summary["keras_model"] = keras_path
        if evaluator is not None:
            evaluator.set_model(model)  # also when fit did not run (nothing left to train)
            metrics = evaluator.run()
            summary["metrics"] = {k: metrics[k] for k in evaluation.METRIC_NAMES}
            summary["per_class_AP"] = metrics["per_class_AP"]
        save_json(summary, os.path.join(model_dir, "summary.json"))
    return summary


_SKIPPED_KINDS = {kind for kind, (severity, _) in cleaning.KINDS.items() if severity != "fixed"}


def format_summary(summary, label_map=None):
    minutes, seconds = divmod(int(summary["seconds_this_run"]), 60)
    lines = ["", "=" * 72,
             f"Trained {summary['steps']} steps at batch {summary['batch_size']} "
             f"({minutes}m{seconds:02d}s this run).",
             f"Model:       {summary.get('keras_model', '-')}",
             f"Checkpoint:  {summary['checkpoint']}",
             f"TensorBoard: tensorboard --logdir {os.path.join(summary['model_dir'], 'logs')}"]
    for split, kinds in summary.get("data", {}).items():
        skipped = {kind: v["count"] for kind, v in kinds.items() if kind in _SKIPPED_KINDS}
        if skipped:
            lines.append(f"Data ({split}): skipped or dropped " + ", ".join(
                f"{n} x {kinds[k]['outcome']}" for k, n in skipped.items()) + " (see summary.json)")
    if "metrics" in summary:
        lines.append(evaluation.format_metrics({**summary["metrics"],
                                                "per_class_AP": summary["per_class_AP"]}))
    lines.append("=" * 72)
    return "\n".join(lines)
