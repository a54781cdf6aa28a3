"""Side-by-side speed of keras-retina, keras-hub and the TensorFlow Model Garden, in one process.

    pip install -e ".[bench]"
    python benchmarks/benchmark.py                     # the table in README.md (about 15 min)
    python benchmarks/benchmark.py --scaling           # plus how cost grows (about 10 min more)
    python benchmarks/benchmark.py --image_size=384 --repeats=3 --systems=keras-retina,keras-hub

Every system is built in the same configuration (ResNet-50-FPN, P3-P7, 9 anchors, 80 classes,
random weights, float32 unless the row says bfloat16) and timed through the API its users call:
  - inference: network + box decoding + NMS at batch 1 (latency) and batch 8 (throughput).
    Ours: `model.detect`; keras-hub: `decode_predictions(model(x))` (its `predict()` fails on
    its NMS layer's unknown batch size); Model Garden: `model(x, training=False)`, which
    decodes and runs its default NMS ('v2', pre-NMS top-k set to the paper's 1000). Each is a
    `tf.function`; the Model Garden also runs under XLA, and its faster path is the peer.
  - training: one `train_step` (forward, backward, SGD update, what `fit` runs) at batch 2 with
    raw ground-truth boxes in (each system assigns anchors itself). Ours also with the stem and
    conv2_x frozen (what `--backbone_weights` trains by default, Detectron's FREEZE_AT=2),
    compared with the peers' all-trainable step (their default). Not for the Model Garden,
    whose step takes labels its input pipeline encoded.
  - serving: an exported SavedModel loaded with `tf.saved_model.load`, from encoded JPEG bytes
    (a 640x480 photo-sized image) to detections, batch 1. Ours: `keras_retina export`'s
    `serving_default`; the Model Garden's: its `DetectionModule` with `image_bytes` input.
  - input pipeline: our `train_dataset` (JPEG decode, flip, scale jitter, resize/pad, anchor
    labelling) on a synthetic COCO JSON set of 640x480 JPEGs, in images/s, against the images/s
    the training step consumes on the same two cores.
  - roofline: the network's FLOPs (TensorFlow's profiler on the frozen graph, 2 FLOPs per
    multiply-add) over its batch-8 time, as a fraction of a square float32 (and bfloat16)
    matmul's rate measured in the same run.
Each figure is the median of `--repeats` timed runs after `--warmup` untimed ones; ratios are
ours / peer in speed (> 1: we are faster). Timings on a shared machine are noisy: compare
ratios from one run, never absolute numbers across runs.
"""

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
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
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
    boxes = np.array([[[0.1, 0.1, 0.5, 0.4], [0.4, 0.5, 0.9, 0.9]]] * batch, np.float32) * size
    classes = np.array([[3, 17]] * batch, np.int32)
    return images, boxes, classes


def count_flops(fn, spec):
    """FLOPs of one call of `fn` on `spec`, from TensorFlow's profiler on the frozen graph."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(tf.function(fn).get_concrete_function(spec))
    options = tf.compat.v1.profiler.ProfileOptionBuilder(
        tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    return tf.compat.v1.profiler.profile(graph=frozen.graph, options=options).total_float_ops


def matmul_rate(dtype, warmup, repeats, n=4096):
    """FLOP/s of an n x n matmul: the roofline the networks' convolutions are compared with."""
    a = tf.random.normal((n, n), dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)[:1]))
    return 2 * n**3 / median_seconds(lambda: matmul().numpy(), warmup, max(repeats, 5))


def jpeg_bytes(height=480, width=640, seed=0):
    from PIL import Image

    from keras_retina.data import synthetic

    image, _, _ = synthetic.make_example(np.random.default_rng(seed), (height, width))
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------- systems
class Ours:
    name = OURS
    policy = "float32"

    def __init__(self, size):
        keras.mixed_precision.set_global_policy(self.policy)
        try:
            self.model = keras_retina.RetinaNet(num_classes=NUM_CLASSES, backbone="resnet50", image_size=size)
            self.model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
            # What training from ImageNet weights runs by default: stem and conv2_x frozen.
            self.frozen_model = keras_retina.RetinaNet(num_classes=NUM_CLASSES, backbone="resnet50",
                                                       image_size=size, freeze_backbone_at=2)
            self.frozen_model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
        finally:
            keras.mixed_precision.set_global_policy("float32")
        self.detect = tf.function(self.model.detect)
        self.network = lambda x: self.model(x, training=False)

    def predict(self, images):
        return {k: v.numpy() for k, v in self.detect(images).items()}

    def train(self, images, boxes, classes):
        if not hasattr(self, "step"):
            self.step = tf.function(self.model.train_step)
        logs = self.step((tf.constant(images), {"boxes": tf.constant(boxes), "classes": tf.constant(classes)}))
        return float(logs["loss"])

    def train_pretrained_recipe(self, images, boxes, classes):
        if not hasattr(self, "frozen_step"):
            self.frozen_step = tf.function(self.frozen_model.train_step)
        logs = self.frozen_step((tf.constant(images), {"boxes": tf.constant(boxes),
                                                       "classes": tf.constant(classes)}))
        return float(logs["loss"])

    def export(self, root):
        from keras_retina import export

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
        if not hasattr(self, "step"):
            self.step = tf.function(self.model.train_step)
        logs = self.step((tf.constant(images), {"boxes": tf.constant(boxes), "labels": tf.constant(classes)}))
        return float(logs["loss"])


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


def pipeline_images_per_second(root, size, batch, warmup_batches=10, batches=40):
    """Our training input pipeline (decode, flip, scale jitter, resize/pad, anchor labelling)."""
    from keras_retina.data import coco_json, pipeline, synthetic
    from keras_retina.label_encoder import LabelEncoder

    paths = synthetic.write_coco_dataset(os.path.join(root, "pipeline_data"), num_train=64, num_val=1,
                                         num_classes=6, sizes=((480, 640), (640, 480)), max_objects=8)
    source = coco_json.read_coco_json(*paths["train"])
    dataset = pipeline.train_dataset(source, LabelEncoder(image_size=size), size, batch,
                                     scale_range=(0.8, 1.2), seed=0)
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------- scaling
def scaling_report(args):
    from keras_retina.label_encoder import LabelEncoder
    from keras_retina.postprocess import DetectionDecoder

    rng = np.random.default_rng(0)
    size = args.image_size
    print(f"\nHow cost grows (ours, {size} px unless stated; medians of {args.repeats})")
    encoder = LabelEncoder(image_size=size)
    encode = tf.function(lambda b, c: encoder(b, c), reduce_retracing=True)
    print("  label encoding, batch 2, vs ground-truth boxes per image:")
    for count in (1, 10, 30, 100, 300):
        corner = rng.uniform(0, size * 0.8, (2, count, 2))
        side = rng.uniform(8, size * 0.5, (2, count, 2))
        boxes = tf.constant(np.concatenate([corner, np.minimum(corner + side, size)], -1), tf.float32)
        classes = tf.constant(rng.integers(0, NUM_CLASSES, (2, count)), tf.int32)
        seconds = median_seconds(lambda: encode(boxes, classes)["cls_targets"].numpy(), args.warmup, args.repeats)
        print(f"    {count:5d} boxes: {1000 * seconds:8.1f} ms")
    print("  decoding + NMS, batch 1, vs number of classes (logits ~ N(-4, 1.5): a trained model's spread):")
    anchors_total = keras_retina.anchors.num_anchors(size)
    for classes in (1, 10, 80, 300, 1000):
        decoder = DetectionDecoder(image_size=size)
        logits = tf.constant(rng.normal(-4.0, 1.5, (1, anchors_total, classes)), tf.float32)
        deltas = tf.constant(rng.normal(0.0, 0.1, (1, anchors_total, 4)), tf.float32)
        decode = tf.function(lambda lg, dl: decoder({"classification": lg, "box": dl}))
        seconds = median_seconds(lambda: decode(logits, deltas)["boxes"].numpy(), args.warmup, args.repeats)
        print(f"    {classes:5d} classes: {1000 * seconds:8.1f} ms")
    print("  training step (batch 2, SGD) and peak process memory vs image size, one process each:")
    for image_size in (512, 640, 800, 1024):
        result = subprocess.run([sys.executable, os.path.abspath(__file__), f"--_step_probe={image_size}",
                                 f"--warmup={args.warmup}", f"--repeats={min(args.repeats, 3)}"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            print(f"    {image_size:5d} px: failed ({result.stderr.strip().splitlines()[-1:]})")
            continue
        probe = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"    {image_size:5d} px: {probe['step_ms']:8.0f} ms/step, peak RSS {probe['peak_rss_gib']:.2f} GiB")


def step_probe(size, args):
    """One process, one image size: training step time and the process's peak memory."""
    ours = Ours(size)
    batch = inputs(2, size, np.random.default_rng(0))
    seconds = median_seconds(lambda: ours.train(*batch), args.warmup, args.repeats)
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 2**20  # KiB -> GiB
    print(json.dumps({"step_ms": 1000 * seconds, "peak_rss_gib": peak}))


# ---------------------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image_size", type=int, default=640)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ", ".join(SYSTEMS))
    parser.add_argument("--scaling", action="store_true", help="also report how cost grows")
    parser.add_argument("--demo_model_dir", default="runs/demo",
                        help="a trained model_dir (the README's demo) for the bfloat16-vs-float32 detection check")
    parser.add_argument("--_step_probe", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._step_probe:
        return step_probe(args._step_probe, args)
    print("command:", " ".join([os.path.basename(sys.executable)] + sys.argv))
    versions = [f"python {platform.python_version()}", f"tensorflow {tf.__version__}", f"keras {keras.__version__}",
                f"keras-retina {keras_retina.__version__}"]
    wanted = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(SYSTEMS))
    if unknown:
        parser.error(f"--systems: unknown {unknown}; choose from {list(SYSTEMS)}")
    from importlib import metadata

    for module, label, system in (("keras_hub", "keras-hub", HUB), ("official", "tf-models-official", GARDEN)):
        if system in wanted:
            try:
                __import__(module)
                versions.append(f"{label} {metadata.version(label)}")
            except ImportError:
                print(f"{label} not installed (pip install -e '.[bench]'): {system} skipped")
                wanted.remove(system)
    print(", ".join(versions) + f"; {os.cpu_count()} CPUs")

    size, rng = args.image_size, np.random.default_rng(0)
    one, eight, two = (inputs(b, size, rng) for b in (1, 8, 2))
    encoded = jpeg_bytes()
    rows = {}  # metric -> {system: value}
    root = tempfile.mkdtemp(prefix="keras_retina_bench_")
    roofline = {"float32": matmul_rate(tf.float32, args.warmup, args.repeats)}
    if OURS_BF16 in wanted:
        roofline["bfloat16"] = matmul_rate(tf.bfloat16, args.warmup, args.repeats)
    for name in wanted:
        keras.utils.set_random_seed(0)
        built = SYSTEMS[name](size)
        t1 = median_seconds(lambda: built.predict(one[0]), args.warmup, args.repeats)
        t8 = median_seconds(lambda: built.predict(eight[0]), args.warmup, args.repeats)
        if name == GARDEN:  # its faster path: plain tf.function or XLA
            x1 = median_seconds(lambda: built.predict_xla(one[0]), args.warmup, args.repeats)
            x8 = median_seconds(lambda: built.predict_xla(eight[0]), args.warmup, args.repeats)
            print(f"  {GARDEN}: tf.function {1000 * t1:.0f} ms / {8 / t8:.2f} img/s, "
                  f"XLA {1000 * x1:.0f} ms / {8 / x8:.2f} img/s")
            t1, t8 = min(t1, x1), min(t8, x8)
        rows.setdefault("inference b1 (ms)", {})[name] = 1000 * t1
        rows.setdefault("inference b8 (img/s)", {})[name] = 8 / t8
        flops = count_flops(built.network, tf.TensorSpec([8, size, size, 3], tf.float32))
        peak = roofline["bfloat16" if name == OURS_BF16 else "float32"]
        rows.setdefault("network GFLOP/img", {})[name] = flops / 8 / 1e9
        rows.setdefault("GFLOP/s at b8", {})[name] = flops / t8 / 1e9
        rows.setdefault("% of matmul roofline", {})[name] = 100 * flops / t8 / peak
        if hasattr(built, "train"):
            step = median_seconds(lambda: built.train(*two), args.warmup, args.repeats)
            rows.setdefault("train step b2 (ms)", {})[name] = 1000 * step
        if hasattr(built, "train_pretrained_recipe"):
            step = median_seconds(lambda: built.train_pretrained_recipe(*two), args.warmup, args.repeats)
            rows.setdefault(FROZEN_STEP, {})[name] = 1000 * step
        if hasattr(built, "export"):
            path = built.export(root)
            rows.setdefault("serving bytes->dets b1 (ms)", {})[name] = 1000 * serving_seconds(path, encoded, args)
        if name == OURS:
            images_per_second = pipeline_images_per_second(root, size, 2)
            rows.setdefault("input pipeline (img/s)", {})[name] = images_per_second
            rows.setdefault("pipeline / train step rate", {})[name] = (
                images_per_second / (2 / (rows["train step b2 (ms)"][name] / 1000)))
        print(f"measured {name}", flush=True)
        del built

    print(f"\nfloat32 matmul roofline: {roofline['float32'] / 1e9:.0f} GFLOP/s"
          + (f"; bfloat16: {roofline['bfloat16'] / 1e9:.0f} GFLOP/s" if "bfloat16" in roofline else ""))
    print_table(rows, wanted, size)
    if OURS_BF16 in wanted:
        compare_precisions(args.demo_model_dir)
    if args.scaling:
        scaling_report(args)
    return 0


def print_table(rows, systems, size):
    ours = [s for s in (OURS, OURS_BF16) if s in systems]
    peers = [s for s in systems if s not in (OURS, OURS_BF16)]
    print(f"\nResNet-50-FPN, {size}x{size}, {NUM_CLASSES} classes, random weights (ratios: our speed / peer's)")
    header = f"{'':30}" + "".join(f"{s:>19}" for s in systems)
    header += "".join(f"{o.replace('keras-retina', 'ours') + ' / ' + p:>26}" for o in ours for p in peers)
    print(header)
    for metric, values in rows.items():
        line = f"{metric:30}" + "".join(f"{values[s]:>19.1f}" if s in values else f"{'-':>19}" for s in systems)
        speed = "(ms)" in metric or "img/s" in metric
        for o in ours:
            for p in peers:
                peer = rows.get(PEER_ROW.get(metric, metric), {})
                if speed and o in values and p in peer:
                    ratio = values[o] / peer[p] if "img/s" in metric else peer[p] / values[o]
                    line += f"{ratio:>25.2f}x"
                else:
                    line += f"{'':>26}"
        print(line)


def compare_precisions(model_dir):
    """bfloat16 vs float32 detections of a trained model (the README's demo) on its val images."""
    from keras_retina import evaluation
    from keras_retina.data import pipeline
    from keras_retina.data.data_config import DataConfig
    from keras_retina.data.sources import open_sources
    from keras_retina.optimization import set_precision
    from keras_retina.run_dir import RunDir

    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        print(f"\nbfloat16 vs float32 detections: skipped, no trained model in {model_dir} "
              f"(run the README's demo first, or pass --demo_model_dir)")
        return
    outputs = {}
    for precision in ("none", "bfloat16"):
        set_precision(precision)
        model, label_map, config, _ = RunDir(model_dir).load_model()
        val = open_sources(DataConfig(**config["data"]), need_train=False).val
        dataset = pipeline.eval_dataset(val, model.config.image_size, 16)
        detect = tf.function(model.detect)
        batches = [{k: v.numpy() for k, v in detect(x).items()} for x, _ in dataset]
        outputs[precision] = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    set_precision("none")
    checked, missing = evaluation.unmatched_detections(outputs["none"], outputs["bfloat16"])
    checked_back, extra = evaluation.unmatched_detections(outputs["bfloat16"], outputs["none"])
    print(f"\nbfloat16 vs float32 on {model_dir} ({len(outputs['none']['num_detections'])} val images): "
          f"{checked - len(missing)}/{checked} float32 detections >= 0.5 found by bfloat16 (same class, IoU >= 0.9); "
          f"{checked_back - len(extra)}/{checked_back} the other way")


if __name__ == "__main__":
    sys.exit(main())
