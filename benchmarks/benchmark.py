"""Side-by-side speed of keras-retina and its peers, in one process, on the same machine.

    pip install -e ".[bench]"
    python benchmarks/benchmark.py                      # ResNet-50-FPN, 640x640, 80 classes
    python benchmarks/benchmark.py --image_size=384 --repeats=5

Every system is built in the same configuration (ResNet-50-FPN, P3-P7, 9 anchors, 80 classes,
random weights, float32) and measured through the Keras API a user calls:
  - inference: a `tf.function` of network + box decoding + NMS (keras-hub's `predict()`
    fails on its NMS layer's unknown batch size) at batch 1 (latency) and batch 8 (throughput);
  - training: one compiled `train_step` (forward, backward, SGD update: what `fit` runs) at
    batch 2, raw ground-truth boxes in (each system assigns anchors itself).
Each figure is the median of `--repeats` timed runs after `--warmup` untimed ones; the table
gives our ratio to each peer (> 1 means we are faster). Timings on a shared machine are noisy:
compare ratios from one run, never absolute numbers across runs.

Status (issue #5): keras-hub is measured; the Model Garden's RetinaNet, the exported-SavedModel
comparison, the input-pipeline rate and the roofline fraction are still to be added.
"""

import argparse
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_retina  # noqa: E402


def median_seconds(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def inputs(batch, size, rng):
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    boxes = np.array([[[0.1, 0.1, 0.5, 0.4], [0.4, 0.5, 0.9, 0.9]]] * batch, np.float32) * size
    classes = np.array([[3, 17]] * batch, np.int32)
    return images, boxes, classes


class Ours:
    name = "keras-retina"

    def __init__(self, size):
        self.model = keras_retina.RetinaNet(num_classes=80, backbone="resnet50", image_size=size)
        self.model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        self.detect = tf.function(self.model.detect)

    def predict(self, images):
        return {k: v.numpy() for k, v in self.detect(images).items()}

    def train(self, images, boxes, classes):
        if not hasattr(self, "step"):
            self.step = tf.function(self.model.train_step)
        return self.step((tf.constant(images), {"boxes": tf.constant(boxes), "classes": tf.constant(classes)}))


class KerasHub:
    name = "keras-hub"

    def __init__(self, size):
        import keras_hub

        resnet = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
            stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
            use_pre_activation=False, image_shape=(size, size, 3))
        backbone = keras_hub.models.RetinaNetBackbone(
            image_encoder=resnet, min_level=3, max_level=7, use_p5=False, image_shape=(size, size, 3))
        self.model = keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=80)
        self.model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        # Its NMS layer needs a known batch size, so no `predict()`: the same traced
        # network + decode + NMS as ours.
        self.detect = tf.function(lambda x: self.model.decode_predictions(self.model(x, training=False), x))

    def predict(self, images):
        return {k: v.numpy() for k, v in self.detect(tf.constant(images)).items()}

    def train(self, images, boxes, classes):
        if not hasattr(self, "step"):
            self.step = tf.function(self.model.train_step)
        return self.step((tf.constant(images), {"boxes": tf.constant(boxes), "labels": tf.constant(classes)}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=640)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    print(f"python {platform.python_version()}, tensorflow {tf.__version__}, keras {keras.__version__}, "
          f"keras-retina {keras_retina.__version__}, {os.cpu_count()} CPUs")

    rng = np.random.default_rng(0)
    systems = [Ours]
    try:
        import keras_hub

        print(f"keras-hub {keras_hub.__version__}")
        systems.append(KerasHub)
    except ImportError:
        print("keras-hub not installed (pip install -e '.[bench]'): skipped")

    rows = {}
    for system in systems:
        keras.utils.set_random_seed(0)
        built = system(args.image_size)
        one, eight, two = (inputs(b, args.image_size, rng) for b in (1, 8, 2))
        rows[system.name] = {
            "inference b1 (ms)": 1000 * median_seconds(lambda: built.predict(one[0]), args.warmup, args.repeats),
            "inference b8 (img/s)": 8 / median_seconds(lambda: built.predict(eight[0]), args.warmup, args.repeats),
            "train step b2 (ms)": 1000 * median_seconds(lambda: built.train(*two), args.warmup, args.repeats),
        }
        print(f"measured {system.name}", flush=True)
        del built

    metrics = list(rows["keras-retina"])
    header = f"{'':24}" + "".join(f"{name:>16}" for name in rows)
    peers = [name for name in rows if name != "keras-retina"]
    header += "".join(f"{'ours vs ' + p:>22}" for p in peers)
    print("\n" + header)
    for metric in metrics:
        line = f"{metric:24}" + "".join(f"{rows[name][metric]:>16.1f}" for name in rows)
        for peer in peers:
            ours, theirs = rows["keras-retina"][metric], rows[peer][metric]
            ratio = ours / theirs if "img/s" in metric else theirs / ours  # > 1: we are faster
            line += f"{ratio:>21.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
