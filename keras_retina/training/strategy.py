"""The tf.distribute strategy a run trains under, and which process of it is the chief.

`make_strategy(name)`: "mirrored" (every local device), "multi_worker" (the cluster from
TF_CONFIG; make it before TensorFlow runs any op) or "one_device". `is_chief(strategy)`: the
process that writes the model_dir, evaluates and exports.
"""

import tensorflow as tf

from keras_retina.errors import UsageError
from keras_retina.training.train_config import STRATEGIES


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
    raise UsageError(f"--strategy={name!r}: choose one of {STRATEGIES}.")


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "chief" or (
        not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)
