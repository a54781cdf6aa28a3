"""Training a RetinaNet into a model_dir, in named steps: `keras_retina train` as a function.

`train(model_dir, model_config, train_config, data_config=DataConfig(...))` (or `sources=` a
`data.splits.Sources` of your own) trains or resumes and returns the summary dict, also written
to model_dir/summary.json. Its steps, each a function below:

    open_data        the sources and their dirty-data reports            (skipped when given)
    model_settings   (model_settings) the ModelConfig: classes from the label map, --init_from's
                     architecture, a resumed run's own settings (postprocessing may change;
                     any other difference: UsageError)
    coverage         how well the anchors cover the boxes (printed)
    build_model      the RetinaNet and its optimizer in the strategy's scope
    restore          the latest checkpoint (its step fixes the learning rate), else --init_from
    build_datasets   training batches (and validation batches on the chief)
    build_callbacks  NaN guard, checkpoints, learning rate, evaluation (keeps the best checkpoint
                     in model_dir/best, stops early after --early_stopping_evals without one)
    fit              `model.fit` from the restored step to train_steps
    summarise        (run_summary) final metrics, the best checkpoint, model.keras (the best model), the
                     evaluation report of that model, summary.json

The model_dir is locked while training (a second run on it is a UsageError naming the first).
An image that fails to decode while training is a DataError naming it (`raise_if_undecodable`).
"""

import dataclasses
import math
import os
import time

import keras
import tensorflow as tf

from keras_retina.data import coverage as coverage_lib
from keras_retina.data import near_duplicates, pipeline
from keras_retina.data.data_config import DataConfig
from keras_retina.data.splits import Sources, open_sources
from keras_retina.errors import DataError, UsageError, WorkerLost
from keras_retina.evaluation.callback import CocoEvaluation
from keras_retina.files import exclusive, write_json
from keras_retina.model_dir import ModelDir
from keras_retina.modeling.backbone import PYTORCH_RESNETS
from keras_retina.modeling.detection_decoder import PostprocessSettings
from keras_retina.modeling.model_config import ModelConfig
from keras_retina.modeling.precision import set_precision
from keras_retina.modeling.retinanet import RetinaNet
from keras_retina.pretrained import published_weights, registry
from keras_retina.training import callbacks as cb
from keras_retina.training import fine_tuning, weight_averaging
from keras_retina.training.model_settings import model_settings
from keras_retina.training.optimizer import make_optimizer
from keras_retina.training.run_summary import format_summary, summarise  # noqa: F401 - format_summary: cli.train
from keras_retina.training.same_data import as_made, check_same_data
from keras_retina.training.strategy import is_chief, make_strategy
from keras_retina.training.train_config import TrainConfig


def train(model_dir: str, model_config: ModelConfig, train_config: TrainConfig, sources: Sources | None = None,
          data_config: DataConfig | None = None, strategy: tf.distribute.Strategy | None = None,
          *, allow_other_data: bool = False, coverage_images: int = 500,
          postprocess: PostprocessSettings | None = None) -> dict:
    """Trains (or resumes) a RetinaNet (module docstring); returns the summary dict.

    Args:
      model_dir: the run folder.
      model_config: ModelConfig (num_classes comes from the label map).
      train_config: TrainConfig.
      sources: `data.splits.Sources`, or None to open `data_config`'s.
      data_config: DataConfig, kept in config.json so `evaluate` finds the data again.
      strategy: a tf.distribute strategy (default: train_config.strategy's; a multi-worker one
        must exist before TensorFlow runs any op).
      allow_other_data: resume on another label map or other data flags (`check_same_data`).
      coverage_images: pictures the anchor-coverage report reads (0: no report).
      postprocess: a `detection_decoder.PostprocessSettings` (or None): how the run decodes its
        detections (score voting, the score cut, ...), kept in its ModelConfig, so its evaluations,
        best checkpoint, `evaluate`, `predict` and `export` all decode that way; a resumed run
        keeps its own unless given others (`resolve_model_settings`).
    """
    data_config = data_config or DataConfig()
    weights = model_config.backbone_weights
    if weights not in (None, "imagenet") and not os.path.isfile(weights) and not registry.is_name(weights):
        raise DataError(f"--backbone_weights={weights!r}: no such weights file or registered weights "
                        f"(keras_retina models lists them).")
    if train_config.init_from:  # a registered detector: downloaded and converted once
        train_config = dataclasses.replace(train_config, init_from=registry.resolve_model_dir(train_config.init_from))
        if not ModelDir(train_config.init_from).has_config() and not ModelDir(model_dir).has_config():
            raise DataError(f"--init_from={train_config.init_from}: no config.json there; give a model_dir written "
                            f"by keras_retina train or convert, or a registered detector (keras_retina models).")
    strategy = strategy or make_strategy(train_config.strategy)
    resolver = getattr(strategy, "cluster_resolver", None)
    if train_config.ema_momentum and resolver is not None and resolver.task_type:
        raise UsageError("--ema_momentum works on one machine (its evaluations swap the averaged weights in on the "
                         "chief alone); train with --strategy=multi_worker without it.")
    if train_config.early_stopping_evals and resolver is not None and resolver.task_type:
        raise UsageError("--early_stopping_evals works on one machine (the evaluation runs on the chief alone); "
                         "with --strategy=multi_worker the best checkpoint is still kept in model_dir/best.")
    data_config = as_made(ModelDir(model_dir), data_config)
    sources = sources or open_data(data_config)
    chief = is_chief(strategy)
    run = ModelDir(model_dir, None if chief else strategy.cluster_resolver.task_id)
    with exclusive(run.write_path, "keras_retina train"):  # one writer per model_dir
        try:
            return _train(run, chief, model_config, train_config, sources, data_config, strategy=strategy,
                          allow_other_data=allow_other_data, coverage_images=coverage_images,
                          postprocess=postprocess)
        except tf.errors.InvalidArgumentError:
            raise_if_undecodable(sources)
            raise  # not a data problem: TensorFlow's error and traceback
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
            if getattr(strategy, "cluster_resolver", None) is None or not strategy.cluster_resolver.task_type:
                raise
            raise_worker_lost(error, model_dir)


def raise_worker_lost(error, model_dir):
    """A multi-worker run's collective ops aborted because a worker stopped (TensorFlow sees a crashed
    worker's connection close at once, a frozen one within its heartbeat timeout): WorkerLost, naming
    the checkpoint every worker resumes from when the same command runs again on each."""
    reason = next((line.strip() for line in str(error).splitlines() if "unhealthy" in line or "reset by peer" in line
                   or "aborted" in line.lower()), str(error).strip().splitlines()[0] if str(error).strip() else "")
    latest = ModelDir(model_dir).latest_checkpoint()
    resume = f"the chief's checkpoint {latest}" if latest else "the start (no checkpoint was written yet)"
    raise WorkerLost(f"a worker of the cluster stopped ({reason[:300]}); training stops here. Run the same command on "
                     f"every worker again: they resume from {resume}.") from None


def _train(run, chief, model_config, train_config, sources, data_config, *, strategy, allow_other_data,
           coverage_images, postprocess):
    start = time.time()
    model_config = model_settings(run, model_config, train_config, sources.label_map, postprocess)
    set_precision(train_config.mixed_precision, model_config, "training", strategy=strategy,
                  batch=max(1, train_config.batch_size // strategy.num_replicas_in_sync))
    if run.has_config() and ModelDir(run.path).latest_checkpoint() and not allow_other_data:
        check_same_data(run, sources.label_map, data_config)
    weight_averaging.check_resume(run, train_config)
    if chief:  # the label map first: a config.json never exists without it
        run.write_label_map(sources.label_map)
        run.write_config({"model": model_config.to_json(), "train": train_config.to_json(),
                          "data": dataclasses.asdict(data_config)})
        if data_config.val_fraction and sources.val is not None:  # --val_fraction's pictures, for people
            write_json({"val_fraction": data_config.val_fraction,
                        "validation_pictures": [image["file"] for image in sources.val.images]}, run.split_path)
    build_config, backbone_state = backbone_weights(model_config)
    model = build_model(build_config, train_config, strategy)
    if coverage_images:
        coverage(sources, model, coverage_images)
        if chief and sources.train is not None and sources.val is not None:
            warning = near_duplicates.split_warning(sources.train, sources.val)
            if warning:
                print(warning, flush=True)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                     **weight_averaging.checkpoint_parts(model))
    manager = run.checkpoint_manager(checkpoint)
    step, init_report = restore(run, model, checkpoint, train_config, sources.label_map, backbone_state,
                                backbone_name=model_config.backbone_weights)
    train_ds, val_ds = build_datasets(model, train_config, sources, step, chief)
    callbacks, evaluator, nan_guard = build_callbacks(run, model, manager, train_config, val_ds, sources.label_map)
    fit(model, train_ds, callbacks, train_config, strategy, step, num_classes=len(sources.label_map))
    final_step = int(model.optimizer.iterations.numpy())
    if nan_guard.bad_step is not None:
        went_bad = (f"the weights {', '.join(nan_guard.bad_weights[:3])} became NaN/Inf"
                    if nan_guard.bad_weights else "the loss became NaN/Inf")
        raise FloatingPointError(
            f"Training stopped at step {nan_guard.bad_step}: {went_bad}. The last good "
            f"checkpoint is {manager.latest_checkpoint}. Likely causes: a learning rate too high "
            f"for this batch size (try a lower --learning_rate or a longer --warmup_steps) or "
            f"broken boxes in the data (run keras_retina check-data).")
    if not (manager.latest_checkpoint or "").endswith(f"-{final_step}"):
        manager.save(checkpoint_number=final_step)
    if weight_averaging.is_on(model):  # what the final evaluation, the report and model.keras hold
        weight_averaging.use_average(model)
    return summarise(run, chief, model, manager, evaluator, train_config, sources=sources, init_report=init_report,
                     start=start)


def open_data(data_config):
    """The sources of `data_config`, their dirty-data reports printed."""
    sources = open_sources(data_config)
    for report in sources.reports().values():
        print(report.format(skipping=data_config.skip_bad_examples), flush=True)
    return sources


def coverage(sources, model, max_images):
    """Prints how well the model's anchors cover the training boxes at its scale."""
    report = coverage_lib.anchor_coverage(sources.train, model.resize_policy, model.anchor_generator,
                                          max_images=max_images)
    print(coverage_lib.format_coverage(report), flush=True)


def backbone_weights(model_config):
    """(the ModelConfig to build with, a torchvision ImageNet state dict or None): registered
    ImageNet weights (--backbone_weights=NAME) downloaded once; keras.applications' files are
    given to the backbone as a path, torchvision's loaded after the model is built (`restore`)."""
    if not registry.is_name(model_config.backbone_weights):
        return model_config, None
    path, state = registry.backbone_weights(model_config.backbone_weights, model_config.backbone)
    return dataclasses.replace(model_config, backbone_weights=path), state


def build_model(model_config, train_config, strategy):
    """The RetinaNet and its built optimizer, in the strategy's scope, seeded."""
    keras.utils.set_random_seed(train_config.seed)
    with strategy.scope():
        model = RetinaNet(config=model_config)
        model.compile(optimizer=make_optimizer(train_config))
        model.optimizer.build(model.trainable_variables)
    return model


def restore(run, model, checkpoint, train_config, label_map, backbone_state=None, *, backbone_name=None):
    """(step, init_from report or None): the latest checkpoint of the chief restored, else the
    --init_from model's weights copied, else registered torchvision ImageNet weights loaded into the
    backbone. Partial checkpoints of a run that died saving are removed."""
    run.remove_partial_checkpoints()  # this process holds the lock
    # Every worker resumes from the chief's latest checkpoint (a worker's own temporary ones may be
    # lost or a step behind), so all replicas start at the same step with the same weights.
    latest = ModelDir(run.path).latest_checkpoint()
    if latest:
        run.restore(checkpoint, latest)
        step = int(model.optimizer.iterations.numpy())
        print(f"Resuming from {latest} at step {step} "
              f"(learning rate {float(model.optimizer.learning_rate):.5g}).", flush=True)
        return step, None
    if train_config.init_from:
        report = fine_tuning.initialise(model, train_config.init_from, label_map)
        print(fine_tuning.format_report(report), flush=True)
        return 0, report
    if backbone_state is not None:
        depth = PYTORCH_RESNETS[model.config.backbone][0]
        count = published_weights.load_imagenet_resnet(model.backbone, backbone_state, backbone_name, depth)
        print(f"Backbone initialised from {backbone_name} ({count} tensors).", flush=True)
    return 0, None


def build_datasets(model, train_config, sources, step, chief):
    """(training batches from `step` on, validation batches or None). --deterministic makes the
    batches a function of the step (a resumed run sees the uninterrupted run's)."""
    policy = model.resize_policy
    scale_range = (train_config.scale_min, train_config.scale_max)
    augmentation = train_config.augmentation()
    if train_config.deterministic:
        tf.config.experimental.enable_op_determinism()
        train_ds = pipeline.deterministic_train_dataset(
            sources.train, model.label_encoder, policy, train_config.batch_size, train_config.seed,
            start_step=step, flip=train_config.flip, scale_range=scale_range, augmentation=augmentation)
    else:
        train_ds = pipeline.train_dataset(
            sources.train, model.label_encoder, policy, train_config.batch_size, flip=train_config.flip,
            scale_range=scale_range, seed=train_config.seed + step, augmentation=augmentation)
    val_ds = None
    if sources.val is not None and chief:
        val_ds = pipeline.eval_dataset(sources.val, policy, train_config.batch_size)
    return train_ds, val_ds


def build_callbacks(run, model, manager, train_config, val_ds, label_map):
    """(callbacks, the evaluation callback or None, the NaN guard)."""
    writer = tf.summary.create_file_writer(run.log_dir)
    nan_guard = cb.NanGuard()
    _, train_steps, _, _ = train_config.scaled()
    callbacks = [nan_guard, cb.Checkpointer(manager, train_steps, nan_guard), cb.LearningRateLogger(writer, 10)]
    evaluator = None
    if val_ds is not None:
        evaluator = CocoEvaluation(val_ds, label_map, train_config.eval_every_steps, run, writer,
                                   cb.image_writer(writer, val_ds, label_map), best_manager=run.best_manager(model),
                                   best_metric=train_config.best_metric, patience=train_config.early_stopping_evals,
                                   skip_if=lambda: nan_guard.bad_step is not None,
                                   averaged=weight_averaging.averaged if weight_averaging.is_on(model) else None)
        callbacks.append(evaluator)
    return callbacks, evaluator, nan_guard


def fit(model, train_ds, callbacks, train_config, strategy, step, *, num_classes):
    """`model.fit` from `step` to train_steps, one Keras epoch per checkpoint interval."""
    rate, train_steps, boundaries, warmup = train_config.scaled()
    if step >= train_steps:
        print(f"Already trained to step {step} (>= {train_steps} steps asked for); not training.", flush=True)
        return
    per_epoch = max(1, min(train_config.checkpoint_every_steps, train_steps))
    print(f"Training RetinaNet ({model.config.backbone}, {_describe(model.resize_policy)}, {num_classes} classes) "
          f"for {train_steps} steps at global batch {train_config.batch_size} on "
          f"{strategy.num_replicas_in_sync} replica(s); lr {rate:.5g}, boundaries {boundaries}, "
          f"warm-up {warmup}.", flush=True)
    model.fit(train_ds, steps_per_epoch=per_epoch, epochs=math.ceil(train_steps / per_epoch),
              initial_epoch=step // per_epoch, callbacks=callbacks, verbose=min(train_config.verbose, 2),
              shuffle=False)


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
