"""Side-by-side speed of keras-retina, keras-hub and the TensorFlow Model Garden, in one process.

    pip install -e ".[bench]"
    python benchmarks/benchmark.py                     # the table in README.md (about 15 min)
    python benchmarks/benchmark.py --scaling           # plus how cost grows (about 10 min more)
    python benchmarks/benchmark.py --image_size=384 --repeats=3 --systems=keras-retina,keras-hub
    python benchmarks/benchmark.py --coco_shapes=only   # per image on COCO-shaped photos (about 20 min)

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
  - COCO shapes (`--coco_shapes`): the same calls per image on a mix of COCO photo shapes
    (`COCO_MIX`), every system at one object scale: the peers letterbox each photo into their
    square, ours resizes it to the same scale with its aspect kept (the paper's shorter-side
    policy) into its bucket canvas; plus `model.predict` at batch 1 (what users call) and the
    training step's time and peak memory at 600/1000 and 800/1333 on a 4:3 canvas.
  - roofline: the network's FLOPs (TensorFlow's profiler on the frozen graph, 2 FLOPs per
    multiply-add) over its batch-8 time, as a fraction of a square float32 (and bfloat16)
    matmul's rate measured in the same run.
Each figure is the median of `--repeats` timed runs after `--warmup` untimed ones; ratios are
ours / peer in speed (> 1: we are faster). Timings on a shared machine are noisy: compare
ratios from one run, never absolute numbers across runs.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_retina  # noqa: E402
from coco_shapes import coco_shapes_report  # noqa: E402
from systems import (FROZEN_STEP, GARDEN, HUB, NUM_CLASSES, OURS, OURS_BF16, SYSTEMS, Ours, inputs,  # noqa: E402
                     jpeg_bytes, median_seconds, print_table, run_step_probe, serving_seconds)


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


def pipeline_images_per_second(root, size, batch, warmup_batches=10, batches=40):
    """Our training input pipeline (decode, flip, scale jitter, resize/pad, anchor labelling)."""
    from keras_retina.data import coco_json, pipeline, synthetic
    from keras_retina.label_encoder import LabelEncoder
    from keras_retina.resize_policy import ResizePolicy

    paths = synthetic.write_coco_dataset(os.path.join(root, "pipeline_data"), num_train=64, num_val=1,
                                         num_classes=6, sizes=((480, 640), (640, 480)), max_objects=8)
    source = coco_json.read_coco_json(*paths["train"])
    dataset = pipeline.train_dataset(source, LabelEncoder(), ResizePolicy(size, policy="square"), batch,
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
        probe = run_step_probe(str(image_size), args)
        if probe:
            print(f"    {image_size:5d} px: {probe['step_ms']:8.0f} ms/step, peak RSS {probe['peak_rss_gib']:.2f} GiB")


def step_probe(spec, args):
    """One process, one size: training step time and the process's peak memory. `spec` is a
    square side ("640") or a shorter side and cap ("800,1333": a 4:3 landscape's canvas)."""
    if "," in spec:
        from keras_retina.resize_policy import ResizePolicy

        short, long = (int(v) for v in spec.split(","))
        ours = Ours(short, max_image_size=long, resize="shorter_side")
        policy = ResizePolicy(short, long)
        canvas = tuple(int(v) for v in policy.canvas(short, round(short * 4 / 3)))
    else:
        ours, canvas = Ours(int(spec)), (int(spec), int(spec))
    batch = inputs(2, canvas, np.random.default_rng(0))
    seconds = median_seconds(lambda: ours.train(*batch), args.warmup, args.repeats)
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 2**20  # KiB -> GiB
    print(json.dumps({"step_ms": 1000 * seconds, "peak_rss_gib": peak, "canvas": f"{canvas[0]}x{canvas[1]}"}))


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
    parser.add_argument("--coco_shapes", choices=("also", "only"), default=None,
                        help="add the COCO-shaped rows (also) or run only them (only)")
    parser.add_argument("--_step_probe", default="", help=argparse.SUPPRESS)
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
    from keras_retina.precision import bfloat16_is_native, cpu_info

    cpu, flags = cpu_info()
    isa = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma", "avx_vnni")))
    print(f"CPU: {cpu or platform.processor()}; flags: {' '.join(isa) or 'unknown'}; "
          f"native bfloat16: {'yes' if bfloat16_is_native(flags) else 'no (no AMX: slower than float32)'}")
    if args.coco_shapes == "only":
        coco_shapes_report(args, wanted)
        return 0

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
    if args.coco_shapes:
        coco_shapes_report(args, wanted)
    if args.scaling:
        scaling_report(args)
    return 0


def compare_precisions(model_dir):
    """bfloat16 vs float32 detections of a trained model (the README's demo) on its val images."""
    from keras_retina import evaluation
    from keras_retina.data import pipeline
    from keras_retina.data.data_config import DataConfig
    from keras_retina.data.sources import open_sources
    from keras_retina.precision import set_precision
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
        dataset = pipeline.eval_dataset(val, model.resize_policy, 16)
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
