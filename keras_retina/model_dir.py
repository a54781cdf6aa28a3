"""ModelDir: a model_dir and every file in it, with the one way to restore a model from it.

    model_dir/
      config.json            {"model": ModelConfig, "train": TrainConfig, "data": DataConfig}
      label_map.json         [{"id", "name"}], index = contiguous class
      checkpoints/           tf.train.CheckpointManager (model + optimizer, + averaged with --ema_momentum),
                             latest 3: what a resume continues
      best/                  the checkpoint with the best validation metric (model), and its metrics-<step>.json
      logs/                  TensorBoard
      eval/metrics-<step>.json
      summary.json           what the last training run did (steps, data report, metrics)
      val_split.json         the pictures --val_fraction held out (for people; the split is a function of names)
      model.keras            the trained model for keras.saving.load_model

JSON files are written atomically (`files.write_json`): a reader never sees half a file.
`load_model` restores the best checkpoint when there is one (`which="latest"`: the latest), with
the averaged weights of a run trained with --ema_momentum (training/weight_averaging.py);
`restore` refuses a checkpoint that lacks some of the model's weights (a half-random network is
never evaluated or exported). `load_model` is how evaluate, export and predict get the trained
model. Model dirs written by keras_retina before this layout do not load.
"""

import dataclasses
import os

import tensorflow as tf

from keras_retina.config_fields import from_dict
from keras_retina.errors import DataError, UsageError
from keras_retina.files import read_json, write_json

SECTIONS = ("model", "train", "data")  # of config.json
CHECKPOINTS = ("best", "latest")  # which checkpoint evaluate, export, predict and --init_from load


def averages_holder(model, averages=None):
    """The "averaged" object of a checkpoint (training/weight_averaging.py): a tf.Module whose
    `weights` are `averages` (the optimizer's), or new variables shaped like the model's
    trainable weights, in their order, to restore them into."""
    holder = tf.Module()
    holder.weights = list(averages) if averages is not None else [
        tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in model.trainable_variables]
    return holder


def holds_averages(path):
    """Whether the checkpoint at `path` has an "averaged" part (its object graph's root names one;
    False when it cannot be read: `ModelDir.restore` names the problem)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    if not path:
        return False
    try:
        graph = trackable_object_graph_pb2.TrackableObjectGraph()
        graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    except (tf.errors.OpError, ValueError):
        return False
    return any(child.local_name == "averaged" for child in graph.nodes[0].children)


def assign_averages(model, averages):
    """The model's trainable weights take the values of `averages` (in the same order)."""
    for variable, average in zip(model.trainable_variables, averages):
        variable.assign(average)


class ModelDir:
    """The files of one model_dir (module docstring). `worker`: a non-chief worker's id; its
    checkpoints and logs go to `tmp/worker_<id>` (MultiWorkerMirroredStrategy needs every
    worker to write)."""

    def __init__(self, path, worker=None):
        if not path:
            raise UsageError("--model_dir is required: where checkpoints, logs and the model go.")
        self.path = str(path)
        self.write_path = self.path if worker is None else os.path.join(self.path, "tmp", f"worker_{worker}")
        self.config_path = os.path.join(self.path, "config.json")
        self.label_map_path = os.path.join(self.path, "label_map.json")
        self.summary_path = os.path.join(self.path, "summary.json")
        self.split_path = os.path.join(self.path, "val_split.json")
        self.best_dir = os.path.join(self.path, "best")
        self.keras_path = os.path.join(self.path, "model.keras")
        self.eval_dir = os.path.join(self.path, "eval")
        self.checkpoint_dir = os.path.join(self.write_path, "checkpoints")
        self.log_dir = os.path.join(self.write_path, "logs")

    def has_config(self):
        return tf.io.gfile.exists(self.config_path)

    def read_config(self):
        """config.json as a dict of SECTIONS; DataError when this is not a model_dir of this
        version of keras_retina."""
        if not self.has_config():
            raise DataError(f"--model_dir={self.path}: no config.json; is this a keras_retina model_dir?")
        try:
            config = read_json(self.config_path)
        except (ValueError, RecursionError) as error:
            raise DataError(f"{self.config_path}: not valid JSON ({str(error)[:200]}).") from None
        if not isinstance(config, dict) or sorted(config) != sorted(SECTIONS):
            raise DataError(f"{self.config_path} was not written by this version of keras_retina (model dirs "
                            f"from before its current layout do not load); train again in a new --model_dir.")
        return config

    def model_config(self):
        """The ModelConfig of config.json (missing settings filled in, or refused with the way out:
        `modeling.model_config.upgrade_settings`)."""
        from keras_retina.modeling.model_config import ModelConfig, upgrade_settings

        converted_from = None
        if tf.io.gfile.exists(self.summary_path):
            try:
                converted_from = read_json(self.summary_path).get("converted_from")
            except (ValueError, AttributeError):
                converted_from = None
        try:
            values = upgrade_settings(self.read_config()["model"], converted_from)
        except DataError as error:
            raise DataError(f"--model_dir={self.path}: {error}") from None
        return from_dict(ModelConfig, values, self.config_path)

    def write_config(self, config):
        write_json(config, self.config_path)

    def read_label_map(self):
        return read_json(self.label_map_path)

    def write_label_map(self, label_map):
        write_json(label_map, self.label_map_path)

    def write_summary(self, summary):
        write_json(summary, self.summary_path)

    def metrics_path(self, step):
        return os.path.join(self.eval_dir, f"metrics-{step}.json")

    def checkpoint_manager(self, checkpoint):
        return tf.train.CheckpointManager(checkpoint, self.checkpoint_dir, max_to_keep=3)

    def remove_partial_checkpoints(self):
        """Deletes the `*_temp*` folders a checkpoint save leaves when its process dies (a kill, a
        full disk); the checkpoint index never names them. Call while holding the lock."""
        for path in tf.io.gfile.glob(os.path.join(self.checkpoint_dir, "*_temp*")):
            tf.io.gfile.rmtree(path) if tf.io.gfile.isdir(path) else tf.io.gfile.remove(path)

    def latest_checkpoint(self):
        return tf.train.latest_checkpoint(self.checkpoint_dir)

    def best_checkpoint(self):
        """The best checkpoint's path, or None (no validation data, or none evaluated yet)."""
        return tf.train.latest_checkpoint(self.best_dir)

    def best_manager(self, model):
        """The manager of best/: one checkpoint of the model's weights."""
        return tf.train.CheckpointManager(tf.train.Checkpoint(model=model), self.best_dir, max_to_keep=1)

    def best_record(self):
        """{"step", "metric", "value", "metrics"} of the best checkpoint, or None. Its metrics file is
        written before the checkpoint, so the checkpoint the index names always has one."""
        path = self.best_checkpoint()
        if path is None:
            return None
        step = path.rsplit("-", 1)[-1]
        record = os.path.join(self.best_dir, f"metrics-{step}.json")
        return read_json(record) if tf.io.gfile.exists(record) else None

    def write_best_record(self, record):
        write_json(record, os.path.join(self.best_dir, f"metrics-{record['step']}.json"))

    def remove_stale_best_records(self):
        """Deletes best/metrics-<step>.json files of checkpoints the best manager no longer keeps."""
        path = self.best_checkpoint()
        keep = f"metrics-{path.rsplit('-', 1)[-1]}.json" if path else None
        for record in tf.io.gfile.glob(os.path.join(self.best_dir, "metrics-*.json")):
            if os.path.basename(record) != keep:
                tf.io.gfile.remove(record)

    def evaluations(self):
        """{step: metrics} of every evaluation written to eval/."""
        found = {}
        for path in tf.io.gfile.glob(os.path.join(self.eval_dir, "metrics-*.json")):
            try:
                found[int(os.path.basename(path)[len("metrics-"):-len(".json")])] = read_json(path)
            except (ValueError, OSError):
                continue
        return found

    def restore(self, checkpoint, path=None, for_inference=False):
        """Restores `checkpoint` (a tf.train.Checkpoint) from `path` (default: the latest); returns
        the path. DataError when there is none, or it lacks any of the objects' weights.
        `for_inference`: the optimizer's slots in the file are not wanted."""
        path = path or self.latest_checkpoint()
        if path is None:
            raise DataError(f"--model_dir={self.path}: no checkpoint in {self.checkpoint_dir} yet.")
        status = checkpoint.restore(path)
        if for_inference:
            status = status.expect_partial()
        try:
            status.assert_existing_objects_matched()
        except AssertionError as error:
            raise DataError(
                f"{path} does not hold every weight of the model in {self.config_path} (was it written by "
                f"another version of keras_retina, or is config.json edited?): "
                f"{str(error).split(':', 1)[0]}. Use a new --model_dir to start over.") from None
        return path

    def load_model(self, checkpoint=None, which="best"):
        """(RetinaNet with a checkpoint restored, label map, config dict, checkpoint path): the given
        `checkpoint`, else the best one (`which="best"`, when there is one) or the latest."""
        from keras_retina.modeling.retinanet import RetinaNet

        if which not in CHECKPOINTS:
            raise UsageError(f"--checkpoint={which}: choose one of {', '.join(CHECKPOINTS)}.")
        config = self.read_config()
        model = RetinaNet(config=dataclasses.replace(self.model_config(), backbone_weights=None))
        path = checkpoint or (self.best_checkpoint() if which == "best" else None) or self.latest_checkpoint()
        if holds_averages(path):  # trained with weight averaging: the average, not the raw weights
            holder = averages_holder(model)
            self.restore(tf.train.Checkpoint(model=model, averaged=holder), path, for_inference=True)
            assign_averages(model, holder.weights)
        else:
            path = self.restore(tf.train.Checkpoint(model=model), path, for_inference=True)
        return model, self.read_label_map(), config, path
