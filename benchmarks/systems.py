"""The systems the benchmark compares, built alike, and the timing and table helpers.

`SYSTEMS` maps a name to a class whose instance, built at an input size, times through the API
its users call (`predict`, `train`, and where it has them `keras_predict`, `fit_targets`,
`train_pretrained_recipe`, `export`); see `benchmark.py`'s docstring for what each measures.
"""

import io
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_retina  # noqa: E402

OURS, OURS_BF16, HUB, GARDEN = "keras-retina", "keras-retina bf16", "keras-hub", "model-garden"
NUM_CLASSES = 80
# Our training step as run from ImageNet weights (stem and conv2_x frozen, Detectron's FREEZE_AT=2,
# our default then), against the peers' all-trainable step: the peers' defaults train everything.
FROZEN_STEP = "train step b2, FREEZE_AT=2 (ms)"
PEER_ROW = {FROZEN_STEP: "train step b2 (ms)"}


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
    """(images [batch, H, W, 3], two boxes each, classes); `size` an int (square) or (H, W)."""
    height, width = (size, size) if isinstance(size, int) else size
    images = rng.uniform(0, 255, (batch, height, width, 3)).astype(np.float32)
    boxes = (np.array([[[0.1, 0.1, 0.5, 0.4], [0.4, 0.5, 0.9, 0.9]]] * batch, np.float32)
             * np.float32([height, width] * 2))
    classes = np.array([[3, 17]] * batch, np.int32)
    return images, boxes, classes


def jpeg_bytes(height=480, width=640, seed=0):
    from PIL import Image

    from keras_retina.data import synthetic

    image, _, _ = synthetic.make_example(np.random.default_rng(seed), (height, width))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- systems
def train_step(system, model, images, targets):
    """One `model.train_step` (what `fit` runs), compiled once per model; returns the loss."""
    steps = system.__dict__.setdefault("_steps", {})
    if id(model) not in steps:
        steps[id(model)] = tf.function(model.train_step)
    logs = steps[id(model)]((tf.constant(images), {k: tf.constant(v) for k, v in targets.items()}))
    return float(logs["loss"])


class Ours:
    name = OURS
    policy = "float32"

    def __init__(self, size, **resize):
        keras.mixed_precision.set_global_policy(self.policy)
        resize = resize or {"resize": "square"}  # the square rows: the peers' letterbox
        try:
            self.model = keras_retina.RetinaNet(num_classes=NUM_CLASSES, backbone="resnet50", image_size=size,
                                                **resize)
            self.model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
            # What training from ImageNet weights runs by default: stem and conv2_x frozen.
            self.frozen_model = keras_retina.RetinaNet(num_classes=NUM_CLASSES, backbone="resnet50",
                                                       image_size=size, freeze_backbone_at=2, **resize)
            self.frozen_model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        finally:
            keras.mixed_precision.set_global_policy("float32")
        self.detect = tf.function(self.model.detect)
        self.network = lambda x: self.model(x, training=False)

    def predict(self, images):
        return {k: v.numpy() for k, v in self.detect(images).items()}

    def keras_predict(self, images):
        """What users call: `model.predict` (one compiled call for a small in-memory batch)."""
        return self.model.predict(images, verbose=0)

    def train(self, images, boxes, classes):
        return train_step(self, self.model, images, self.fit_targets(boxes, classes))

    def fit_targets(self, boxes, classes):
        return {"boxes": boxes, "classes": classes}

    def train_pretrained_recipe(self, images, boxes, classes):
        return train_step(self, self.frozen_model, images, self.fit_targets(boxes, classes))

    def export(self, root):
        from keras_retina.deploy import saved_model as export

        label_map = [{"id": k + 1, "name": f"class{k + 1}"} for k in range(NUM_CLASSES)]
        return export.export_saved_model(self.model, label_map, os.path.join(root, self.name.replace(" ", "_")))


class OursBfloat16(Ours):
    name = OURS_BF16
    policy = "mixed_bfloat16"


class KerasHub:
    name = HUB

    def __init__(self, size):
        import keras_hub

        resnet = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
            stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
            use_pre_activation=False, image_shape=(size, size, 3))
        backbone = keras_hub.models.RetinaNetBackbone(
            image_encoder=resnet, min_level=3, max_level=7, use_p5=False, image_shape=(size, size, 3))
        self.model = keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=NUM_CLASSES)
        self.model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        self.network = lambda x: self.model(x, training=False)
        self.detect = tf.function(lambda x: self.model.decode_predictions(self.model(x, training=False), x))

    def predict(self, images):
        return {k: v.numpy() for k, v in self.detect(tf.constant(images)).items()}

    def train(self, images, boxes, classes):
        return train_step(self, self.model, images, self.fit_targets(boxes, classes))

    def fit_targets(self, boxes, classes):
        return {"boxes": boxes, "labels": classes}


class ModelGarden:
    name = GARDEN

    def __init__(self, size):
        import tf_keras
        from official.core import exp_factory
        from official.vision import configs  # noqa: F401  (registers the experiments)
        from official.vision.modeling import factory

        self.size = size
        self.params = exp_factory.get_exp_config("retinanet_resnetfpn_coco")
        model_config = self.params.task.model
        model_config.num_classes = NUM_CLASSES
        model_config.input_size = [size, size, 3]
        model_config.detection_generator.pre_nms_top_k = 1000  # the paper's, as ours and keras-hub's
        model_config.detection_generator.max_num_detections = 100
        self.params.task.init_checkpoint = None
        self.model = factory.build_retinanet(tf_keras.layers.InputSpec(shape=[None, size, size, 3]), model_config)

        def detect(images):
            shape = tf.tile(tf.constant([[size, size]], tf.float32), [tf.shape(images)[0], 1])
            out = self.model(images, image_shape=shape, training=False)
            return {k: out[k] for k in ("detection_boxes", "detection_scores", "detection_classes",
                                        "num_detections")}

        self.network = lambda x: self.model.head(  # raw outputs, no decoding
            self.model.decoder(self.model.backbone(x, training=False), training=False), training=False)
        self.detect = tf.function(detect)
        self.detect_xla = tf.function(detect, jit_compile=True)
        self.paths = {}

    def predict(self, images):
        return {k: v.numpy() for k, v in self.detect(tf.constant(images)).items()}

    def predict_xla(self, images):
        return {k: v.numpy() for k, v in self.detect_xla(tf.constant(images)).items()}

    def export(self, root):
        from official.vision.serving import detection

        module = detection.DetectionModule(self.params, batch_size=None, input_image_size=[self.size, self.size],
                                           input_type="image_bytes", num_channels=3)
        path = os.path.join(root, self.name)
        signatures = module.get_inference_signatures({"image_bytes": "serving_default"})
        tf.saved_model.save(module, path, signatures=signatures)
        return path


SYSTEMS = {OURS: Ours, OURS_BF16: OursBfloat16, HUB: KerasHub, GARDEN: ModelGarden}


def serving_seconds(path, encoded, args):
    """Median seconds of the SavedModel's serving_default from one encoded image to detections."""
    serve = tf.saved_model.load(path).signatures["serving_default"]
    batch = tf.constant([encoded])
    return median_seconds(lambda: {k: v.numpy() for k, v in serve(batch).items()}, args.warmup, args.repeats)


def run_step_probe(spec, args):
    """`benchmark.py --_step_probe=spec` in a new process: its step time and peak memory (dict)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchmark.py")
    result = subprocess.run([sys.executable, script, f"--_step_probe={spec}",
                             f"--warmup={args.warmup}", f"--repeats={min(args.repeats, 3)}"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        print(f"    {spec}: failed ({result.stderr.strip().splitlines()[-1:]})")
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def speed_ratio(rows, metric, ours, peer):
    """Our speed over the peer's on a timing row (> 1: we are faster), None when either is missing
    or the row is no timing. A row in PEER_ROW is compared with the peer's value on that row."""
    values, peers = rows.get(metric, {}), rows.get(PEER_ROW.get(metric, metric), {})
    if not ("(ms" in metric or "img/s" in metric) or ours not in values or peer not in peers:
        return None
    return values[ours] / peers[peer] if "img/s" in metric else peers[peer] / values[ours]


def print_table(rows, systems, size):
    """`size`: the square side, or a description of the inputs."""
    ours = [s for s in (OURS, OURS_BF16) if s in systems]
    peers = [s for s in systems if s not in (OURS, OURS_BF16)]
    shape = f"{size}x{size}" if isinstance(size, int) else size
    print(f"\nResNet-50-FPN, {shape}, {NUM_CLASSES} classes, random weights (ratios: our speed / peer's)")
    header = f"{'':30}" + "".join(f"{s:>19}" for s in systems)
    header += "".join(f"{o.replace('keras-retina', 'ours') + ' / ' + p:>26}" for o in ours for p in peers)
    print(header)
    for metric, values in rows.items():
        line = f"{metric:30}" + "".join(f"{values[s]:>19.1f}" if s in values else f"{'-':>19}" for s in systems)
        for o in ours:
            for p in peers:
                ratio = speed_ratio(rows, metric, o, p)
                line += f"{ratio:>25.2f}x" if ratio is not None else f"{'':>26}"
        print(line)


# ------------------------------------------------------------------------ results documents
# How the results files (benchmarks/results/*.json, `results.py`) name the systems and ratios.
DISPLAY = {OURS: "keras-retina", OURS_BF16: "keras-retina bfloat16", HUB: "keras-hub", GARDEN: "Model Garden"}
RATIO_NAME = {OURS: "ours", OURS_BF16: "bf16"}


def display_number(metric, value):
    """A figure as the results tables show it: milliseconds and GFLOP whole, rates to 0.1."""
    if value is None:
        return "-"
    return f"{value:.1f}" if "img/s" in metric else f"{value:.0f}"


def ratio_columns(ours, peers):
    """[(our system, peer)] in the order of the ratio columns, and their headings."""
    pairs = [(o, p) for o in ours for p in peers]
    return pairs, [f"{RATIO_NAME[o]} / {DISPLAY[p]}" for o, p in pairs]


def display_ratio(ratio):
    return "" if ratio is None else f"{ratio:.2f}x"
