"""Training: build the model in the strategy's scope, resume from the run folder, fit, summarise.

`train(model_dir, model_config, train_config, sources)` trains (or resumes) a RetinaNet:
config.json and label_map.json go to the model_dir (`RunDir`), the model and optimizer
(whose `iterations` is the global step and so fixes the learning rate) are checkpointed every
`checkpoint_every_steps` steps (one Keras "epoch" = that many steps), and running the same
command again restores the latest checkpoint and continues at its step. A checkpoint becomes
"latest" only after all its files are written, so a kill while saving leaves the previous one.
A resumed run must ask for the same model (`resolve_model_settings`).
"""

import dataclasses
import math
import os
import time

import keras
import tensorflow as tf

from keras_retina import callbacks as cb, evaluation, fine_tuning
from keras_retina.data import cleaning, pipeline
from keras_retina.config_fields import from_dict
from keras_retina.data.data_config import DataConfig
from keras_retina.errors import DataError, UsageError
from keras_retina.model import RetinaNet
from keras_retina.model_config import ModelConfig, upgrade_settings
from keras_retina.optimization import is_chief, make_optimizer, make_strategy
from keras_retina.run_dir import RunDir, exclusive, replace_atomically


def resolve_model_settings(model_config, previous, model_dir):
    """The ModelConfig a run trains: `model_config` with an unset `freeze_backbone_at` taken from
    the resumed run (`previous`, config.json's "model" dict, or None for a new run) or from
    `backbone.default_freeze_at`. Any other difference from `previous` (but backbone_weights,
    which only initialises a new run) is a UsageError."""
    if previous is None:
        return model_config.resolved()
    previous = from_dict(ModelConfig, upgrade_settings(previous), f"{model_dir}/config.json")
    if model_config.freeze_backbone_at is None:
        model_config = dataclasses.replace(model_config, freeze_backbone_at=previous.freeze_backbone_at)
    changed = sorted(f.name for f in dataclasses.fields(ModelConfig) if f.name != "backbone_weights"
                     and getattr(previous, f.name) != getattr(model_config, f.name))
    if changed:
        differences = "; ".join(f"{name}: {getattr(previous, name)!r} there, {getattr(model_config, name)!r} asked"
                                for name in changed)
        raise UsageError(f"--model_dir={model_dir} holds a model with different settings ({differences}); "
                         f"give its settings to resume it, or a new --model_dir to start over.")
    return model_config


def train(model_dir, model_config, train_config, sources, data_config=None, strategy=None, allow_other_data=False):
    """Trains (or resumes) a RetinaNet; returns the summary dict. An image that fails to decode
    while training or evaluating is a DataError naming it (`raise_if_undecodable`).

    Args:
      model_dir: the run folder.
      model_config: ModelConfig (num_classes is taken from the label map).
      train_config: TrainConfig.
      sources: `data.sources.Sources` (train, optional val, label map).
      data_config: DataConfig kept in config.json, so `evaluate` finds the data again.
      strategy: a tf.distribute strategy; default `make_strategy(train_config.strategy)`.
        A multi-worker strategy must be made before TensorFlow runs any op.
      allow_other_data: resume on another label map or other data flags (`check_same_data`).

    The model_dir is locked (`run_dir.exclusive`) while training: a second run on it stops with
    a UsageError naming the first.
    """
    strategy = strategy or make_strategy(train_config.strategy)
    chief = is_chief(strategy)
    run = RunDir(model_dir, None if chief else strategy.cluster_resolver.task_id)
    with exclusive(run.write_path, "keras_retina train"):  # one writer per model_dir
        try:
            return _train(run, chief, model_config, train_config, sources, data_config or DataConfig(), strategy,
                          allow_other_data)
        except tf.errors.InvalidArgumentError:
            raise_if_undecodable(sources)
            raise  # not a data problem: TensorFlow's error and traceback


def check_same_data(run, label_map, data_config):
    """A resumed run must train on the data it started with: the same label map (same ids and
    names) and the same data flags; otherwise a UsageError naming what changed."""
    if not tf.io.gfile.exists(run.label_map_path):
        raise DataError(f"--model_dir={run.path} has checkpoints but no label_map.json; use a new --model_dir.")
    previous = run.read_label_map()
    if previous != label_map:
        shown = lambda entries: ", ".join(f"{e['id']}:{e['name']}" for e in entries[:6])  # noqa: E731
        raise UsageError(f"--model_dir={run.path} was trained on other categories ({shown(previous)}) than this "
                         f"data's ({shown(label_map)}); use a new --model_dir, or --resume_with_other_data to "
                         f"continue this model on the new data.")
    saved = run.read_config()["data"]
    same = lambda a, b: a == b or (isinstance(a, str) and isinstance(b, str)  # noqa: E731
                                   and os.path.normpath(a) == os.path.normpath(b))
    changed = sorted(k for k, v in dataclasses.asdict(data_config).items()
                     if k != "skip_bad_examples" and not same(saved.get(k), v))
    if changed:
        raise UsageError(f"--model_dir={run.path} was trained on other data ({', '.join(changed)} differ from its "
                         f"config.json); use a new --model_dir, or --resume_with_other_data to continue it on "
                         f"this data.")


def _train(run, chief, model_config, train_config, sources, data_config, strategy, allow_other_data):
    start = time.time()
    model_dir = run.path
    label_map = sources.label_map
    model_config = dataclasses.replace(model_config, num_classes=len(label_map))
    if train_config.init_from:
        model_config = fine_tuning.settings_from(model_config, train_config.init_from, run.path)
    previous = run.read_config()["model"] if run.has_config() else None
    model_config = resolve_model_settings(model_config, previous, model_dir)
    if previous is not None and RunDir(run.path).latest_checkpoint() and not allow_other_data:
        check_same_data(run, label_map, data_config)
    if chief:  # the label map first: a config.json never exists without it
        run.write_label_map(label_map)
        run.write_config({"model": model_config.to_json(), "train": train_config.to_json(),
                          "data": dataclasses.asdict(data_config)})

    keras.utils.set_random_seed(train_config.seed)
    with strategy.scope():
        model = RetinaNet(**dataclasses.asdict(model_config))
        model.compile(optimizer=make_optimizer(train_config))
        model.optimizer.build(model.trainable_variables)
    rate, train_steps, boundaries, warmup = train_config.scaled()
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = run.checkpoint_manager(checkpoint)
    run.remove_partial_checkpoints()  # of a run that died while saving (this one holds the lock)
    step = 0
    init_report = None
    # Every worker resumes from the chief's latest checkpoint (a worker's own temporary ones may be
    # lost or a step behind), so all replicas start at the same step with the same weights.
    latest = RunDir(run.path).latest_checkpoint()
    if latest:
        run.restore(checkpoint, latest)
        step = int(model.optimizer.iterations.numpy())
        print(f"Resuming from {latest} at step {step} "
              f"(learning rate {float(model.optimizer.learning_rate):.5g}).", flush=True)
    elif train_config.init_from:
        init_report = fine_tuning.initialise(model, train_config.init_from, label_map)
        print(fine_tuning.format_report(init_report), flush=True)

    per_epoch = max(1, min(train_config.checkpoint_every_steps, train_steps))
    policy = model.resize_policy
    scale_range = (train_config.scale_min, train_config.scale_max)
    if train_config.deterministic:
        # Same ops in the same order on the same data from any resume step: equal weights to an
        # uninterrupted run (tested), at some cost in speed.
        tf.config.experimental.enable_op_determinism()
        train_ds = pipeline.deterministic_train_dataset(
            sources.train, model.label_encoder, policy, train_config.batch_size, train_config.seed,
            start_step=step, flip=train_config.flip, scale_range=scale_range)
    else:
        train_ds = pipeline.train_dataset(
            sources.train, model.label_encoder, policy, train_config.batch_size, flip=train_config.flip,
            scale_range=scale_range, seed=train_config.seed + step)
    writer = tf.summary.create_file_writer(run.log_dir)
    nan_guard = cb.NanGuard()
    callbacks = [nan_guard, cb.Checkpointer(manager, train_steps, nan_guard), cb.LearningRateLogger(writer, 10)]
    evaluator = None
    if sources.val is not None and chief:
        val_ds = pipeline.eval_dataset(sources.val, policy, train_config.batch_size)
        evaluator = evaluation.CocoEvaluation(val_ds, label_map, train_config.eval_every_steps, run, writer,
                                              cb.image_writer(writer, val_ds, label_map))
        callbacks.append(evaluator)

    if step >= train_steps:
        print(f"Already trained to step {step} (>= {train_steps} steps asked for); not training.", flush=True)
    else:
        print(f"Training RetinaNet ({model_config.backbone}, {_describe(policy)}, {len(label_map)} classes) for "
              f"{train_steps} steps at global batch {train_config.batch_size} on "
              f"{strategy.num_replicas_in_sync} replica(s); lr {rate:.5g}, boundaries {boundaries}, "
              f"warm-up {warmup}.", flush=True)
        model.fit(train_ds, steps_per_epoch=per_epoch, epochs=math.ceil(train_steps / per_epoch),
                  initial_epoch=step // per_epoch, callbacks=callbacks, verbose=min(train_config.verbose, 2),
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

    summary = {"steps": final_step, "batch_size": train_config.batch_size,
               "seconds_this_run": round(time.time() - start, 1),
               "model_dir": run.path, "checkpoint": manager.latest_checkpoint}
    if init_report is not None:
        summary["init_from"] = init_report
    reports = sources.reports()
    if reports:  # what the readers fixed, skipped or dropped (cleaning.DataReport)
        summary["data"] = {split: report.as_dict() for split, report in reports.items()}
    if chief:
        replace_atomically(run.keras_path, model.save)
        summary["keras_model"] = run.keras_path
        if evaluator is not None:
            evaluator.set_model(model)  # also when fit did not run (nothing left to train)
            metrics = evaluator.run()
            summary["metrics"] = {k: metrics[k] for k in evaluation.METRIC_NAMES}
            summary["per_class_AP"] = metrics["per_class_AP"]
        run.write_summary(summary)
    return summary


def _describe(policy):
    if policy.policy == "square":
        return f"{policy.size[0]}x{policy.size[1]} square inputs"
    canvases = "each side padded to a multiple of 32" if policy.tight else f"{len(policy.buckets)} bucket shapes"
    return f"shorter side {policy.size[0]} px, longer at most {policy.size[1]} px, {canvases}"


def raise_if_undecodable(sources):
    """After TensorFlow stopped on invalid input: a DataError naming the images of `sources` that
    do not decode (each source checks all of its images), or nothing when every image decodes."""
    print("[data] training stopped on invalid input; checking whether an image fails to decode ...", flush=True)
    bad = [str(name) for source in (sources.train, sources.val) if source is not None
           for name in source.find_undecodable()]
    if bad:
        shown = "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise DataError(f"training stopped: {len(bad)} image(s) cannot be decoded: {shown}. Fix or remove "
                        f"them, or pass --skip_bad_examples to skip them.") from None


_SKIPPED_KINDS = {kind for kind, (severity, _) in cleaning.KINDS.items() if severity != "fixed"}


def format_summary(summary, label_map=None):
    minutes, seconds = divmod(int(summary["seconds_this_run"]), 60)
    lines = ["", "=" * 72,
             f"Trained {summary['steps']} steps at batch {summary['batch_size']} "
             f"({minutes}m{seconds:02d}s this run).",
             f"Model:       {summary.get('keras_model', '-')}",
             f"Checkpoint:  {summary['checkpoint']}",
             f"TensorBoard: tensorboard --logdir {RunDir(summary['model_dir']).log_dir}"]
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
