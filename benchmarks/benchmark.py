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

Besides printing them, each run writes its results to benchmarks/results/ (`results.py`):
square_<size>.json (the square table; square_640 by default), with `--scaling` scaling.json, with
`--coco_shapes` coco_shapes.json; `python benchmarks/render.py` then renders docs/benchmarks.md.
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

import results  # noqa: E402
from coco_shapes import coco_shapes_report  # noqa: E402
from systems import (  # noqa: E402
    DISPLAY,
    FROZEN_STEP,
    GARDEN,
    HUB,
    NUM_CLASSES,
    OURS,
    OURS_BF16,
    SYSTEMS,
    Ours,
    display_number,
    display_ratio,
    inputs,
    jpeg_bytes,
    median_seconds,
    print_table,
    ratio_columns,
    run_step_probe,
    serving_seconds,
    speed_ratio,
)


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
    from keras_retina.data import pipeline, synthetic
    from keras_retina.data.readers import coco_json
    from keras_retina.modeling.label_encoder import LabelEncoder
    from keras_retina.modeling.transform import ResizePolicy

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
# Measured, and the subsets results/scaling.json's tables show (figures holds every measurement).
BOX_COUNTS, BOX_COUNTS_SHOWN = (1, 10, 30, 100, 300), (1, 10, 100, 300)
CLASS_COUNTS, CLASS_COUNTS_SHOWN = (1, 10, 80, 300, 1000), (1, 80, 1000)
STEP_SIZES = (512, 640, 800, 1024)


def scaling_report(args):
    from keras_retina.modeling.detection_decoder import DetectionDecoder
    from keras_retina.modeling.label_encoder import LabelEncoder

    rng = np.random.default_rng(0)
    size = args.image_size
    print(f"\nHow cost grows (ours, {size} px unless stated; medians of {args.repeats})")
    encoder = LabelEncoder(input_size=size)
    encode = tf.function(lambda b, c: encoder(b, c), reduce_retracing=True)
    encode_ms, decode_ms, steps = {}, {}, {}
    print("  label encoding, batch 2, vs ground-truth boxes per image:")
    for count in BOX_COUNTS:
        corner = rng.uniform(0, size * 0.8, (2, count, 2))
        side = rng.uniform(8, size * 0.5, (2, count, 2))
        boxes = tf.constant(np.concatenate([corner, np.minimum(corner + side, size)], -1), tf.float32)
        classes = tf.constant(rng.integers(0, NUM_CLASSES, (2, count)), tf.int32)
        seconds = median_seconds(lambda b=boxes, c=classes: encode(b, c)["cls_targets"].numpy(),
                                 args.warmup, args.repeats)
        encode_ms[count] = 1000 * seconds
        print(f"    {count:5d} boxes: {1000 * seconds:8.1f} ms")
    print("  decoding + NMS, batch 1, vs number of classes (logits ~ N(-4, 1.5): a trained model's spread):")
    anchors_total = keras_retina.num_anchors(size)
    for classes in CLASS_COUNTS:
        decoder = DetectionDecoder(input_size=size)
        logits = tf.constant(rng.normal(-4.0, 1.5, (1, anchors_total, classes)), tf.float32)
        deltas = tf.constant(rng.normal(0.0, 0.1, (1, anchors_total, 4)), tf.float32)
        decode = _compiled_decoder(decoder)
        seconds = median_seconds(lambda f=decode, lg=logits, dl=deltas: f(lg, dl)["boxes"].numpy(),
                                 args.warmup, args.repeats)
        decode_ms[classes] = 1000 * seconds
        print(f"    {classes:5d} classes: {1000 * seconds:8.1f} ms")
    print("  training step (batch 2, SGD) and peak process memory vs image size, one process each:")
    for image_size in STEP_SIZES:
        probe = run_step_probe(str(image_size), args)
        steps[image_size] = probe
        if probe:
            print(f"    {image_size:5d} px: {probe['step_ms']:8.0f} ms/step, peak RSS {probe['peak_rss_gib']:.2f} GiB")
    write_scaling(args, encode_ms, decode_ms, steps)


def _compiled_decoder(decoder):
    return tf.function(lambda lg, dl: decoder({"classification": lg, "box": dl}))


def write_scaling(args, encode_ms, decode_ms, steps):
    """results/scaling.json: the three tables of `scaling_report`."""
    tables = [
        {"caption": "Label encoding at batch 2 (an anchors x boxes IoU matrix, run in the input pipeline's "
                    "parallel map, not in the step)",
         "columns": ["boxes per image", *(str(n) for n in BOX_COUNTS_SHOWN)],
         "rows": [["ms", *(f"{encode_ms[n]:.0f}" for n in BOX_COUNTS_SHOWN)]]},
        {"caption": "Decoding + NMS at batch 1 (linear in classes: sigmoid and per-level top-k over every "
                    "anchor x class)",
         "columns": ["classes", *(str(n) for n in CLASS_COUNTS_SHOWN)],
         "rows": [["ms", *(f"{decode_ms[n]:.0f}" for n in CLASS_COUNTS_SHOWN)]]},
        {"caption": "A training step at batch 2",
         "columns": ["square side (px)", *(str(n) for n in STEP_SIZES)],
         "rows": [["seconds", *(f"{steps[n]['step_ms'] / 1000:.1f}" if steps[n] else "-" for n in STEP_SIZES)],
                  ["peak process memory (GiB)",
                   *(f"{steps[n]['peak_rss_gib']:.1f}" if steps[n] else "-" for n in STEP_SIZES)]]},
    ]
    size = args.image_size
    results.write(
        "scaling", "How cost grows",
        f"Ours, float32, random ResNet-50-FPN weights; label encoding and decoding at {size}x{size}. Medians of "
        f"{args.repeats} runs after {args.warmup} warm-up runs; each training step size in a process of its own "
        f"(median of {min(args.repeats, 3)}), its peak resident memory read from the process.",
        tables,
        figures={"image_size": size, "warmup": args.warmup, "repeats": args.repeats,
                 "label_encoding_ms_by_boxes": {str(n): v for n, v in encode_ms.items()},
                 "decoding_ms_by_classes": {str(n): v for n, v in decode_ms.items()},
                 "train_step_by_square_side": {str(n): v for n, v in steps.items()}})


def step_probe(spec, args):
    """One process, one size: training step time and the process's peak memory. `spec` is a
    square side ("640") or a shorter side and cap ("800,1333": a 4:3 landscape's canvas)."""
    if "," in spec:
        from keras_retina.modeling.transform import ResizePolicy

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
    from keras_retina.modeling.precision import cpu_info, cpu_label

    cpu, flags = cpu_info()
    isa = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma", "avx_vnni")))
    print(f"CPU: {cpu_label(cpu or platform.processor(), flags)}; flags: {' '.join(isa) or 'unknown'} (whether "
          f"bfloat16 is faster here: benchmarks/precision_speed.py)")
    if args.coco_shapes == "only":
        coco_shapes_report(args, wanted)
        return 0

    size, rng = args.image_size, np.random.default_rng(0)
    one, eight, two = (inputs(b, size, rng) for b in (1, 8, 2))
    encoded = jpeg_bytes()
    rows = {}  # metric -> {system: value}
    garden = {}  # the Model Garden's two paths: {"b1" / "b8": {"tf.function": seconds, "XLA": seconds}}
    root = tempfile.mkdtemp(prefix="keras_retina_bench_")
    roofline = {"float32": matmul_rate(tf.float32, args.warmup, args.repeats)}
    if OURS_BF16 in wanted:
        roofline["bfloat16"] = matmul_rate(tf.bfloat16, args.warmup, args.repeats)
    for name in wanted:
        keras.utils.set_random_seed(0)
        built = SYSTEMS[name](size)
        t1 = median_seconds(lambda b=built: b.predict(one[0]), args.warmup, args.repeats)
        t8 = median_seconds(lambda b=built: b.predict(eight[0]), args.warmup, args.repeats)
        if name == GARDEN:  # its faster path: plain tf.function or XLA
            x1 = median_seconds(lambda b=built: b.predict_xla(one[0]), args.warmup, args.repeats)
            x8 = median_seconds(lambda b=built: b.predict_xla(eight[0]), args.warmup, args.repeats)
            print(f"  {GARDEN}: tf.function {1000 * t1:.0f} ms / {8 / t8:.2f} img/s, "
                  f"XLA {1000 * x1:.0f} ms / {8 / x8:.2f} img/s")
            garden = {"b1": {"tf.function": t1, "XLA": x1}, "b8": {"tf.function": t8, "XLA": x8}}
            t1, t8 = min(t1, x1), min(t8, x8)
        rows.setdefault("inference b1 (ms)", {})[name] = 1000 * t1
        rows.setdefault("inference b8 (img/s)", {})[name] = 8 / t8
        flops = count_flops(built.network, tf.TensorSpec([8, size, size, 3], tf.float32))
        peak = roofline["bfloat16" if name == OURS_BF16 else "float32"]
        rows.setdefault("network GFLOP/img", {})[name] = flops / 8 / 1e9
        rows.setdefault("GFLOP/s at b8", {})[name] = flops / t8 / 1e9
        rows.setdefault("% of matmul roofline", {})[name] = 100 * flops / t8 / peak
        if hasattr(built, "train"):
            step = median_seconds(lambda b=built: b.train(*two), args.warmup, args.repeats)
            rows.setdefault("train step b2 (ms)", {})[name] = 1000 * step
        if hasattr(built, "train_pretrained_recipe"):
            step = median_seconds(lambda b=built: b.train_pretrained_recipe(*two), args.warmup, args.repeats)
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
        built = None  # frees the model before the next is built

    print(f"\nfloat32 matmul roofline: {roofline['float32'] / 1e9:.0f} GFLOP/s"
          + (f"; bfloat16: {roofline['bfloat16'] / 1e9:.0f} GFLOP/s" if "bfloat16" in roofline else ""))
    print_table(rows, wanted, size)
    precision = None
    try:
        if OURS_BF16 in wanted:
            precision = compare_precisions(args.demo_model_dir)
    finally:  # the measurements are written even when the precision check fails
        write_square(args, rows, wanted, roofline, garden, precision)
    if args.coco_shapes:
        coco_shapes_report(args, wanted)
    if args.scaling:
        scaling_report(args)
    return 0


# ------------------------------------------------------------------------------ results file
# The square table's rows in results/square_<size>.json: metric (as printed) -> row label.
SQUARE_ROWS = {
    "inference b1 (ms)": "inference, batch 1 (ms; network + decoding + NMS)",
    "inference b8 (img/s)": "inference, batch 8 (img/s)",
    "train step b2 (ms)": "one training step, batch 2, everything trainable (ms)",
    FROZEN_STEP: "one training step, batch 2, stem + conv2_x frozen (our default with ImageNet weights) (ms)",
    "serving bytes->dets b1 (ms)": "exported SavedModel, JPEG bytes -> detections, batch 1 (ms)",
    "network GFLOP/img": "network GFLOP per image",
    "GFLOP/s at b8": "achieved GFLOP/s at batch 8",
    "% of matmul roofline": "fraction of the matmul rate",
    "input pipeline (img/s)": "input pipeline, images/s (decode, flip, scale jitter, resize, anchor labels)",
}


def _garden_cell(metric, garden, value):
    """The Model Garden's inference cell: its faster path, and the other one's figure."""
    key = "b1" if "b1" in metric else "b8"
    if key not in garden:
        return display_number(metric, value)
    plain, xla = garden[key]["tf.function"], garden[key]["XLA"]
    if key == "b1":
        return (f"{1000 * xla:.0f} (XLA; {1000 * plain:.0f} without)" if xla < plain
                else f"{1000 * plain:.0f} (XLA {1000 * xla:.0f})")
    return f"{8 / xla:.1f} (XLA)" if xla < plain else f"{8 / plain:.1f}"


def square_table(rows, wanted, roofline, garden):
    """The square table as results.write takes it (cells as display strings)."""
    ours = [s for s in (OURS, OURS_BF16) if s in wanted]
    pairs, ratio_names = ratio_columns(ours, [s for s in wanted if s not in (OURS, OURS_BF16)])
    table_rows, starred = [], False
    for metric, label in SQUARE_ROWS.items():
        values = rows.get(metric)
        if not values:
            continue
        cells = []
        for system in wanted:
            value = values.get(system)
            if metric == "% of matmul roofline" and value is not None:
                starred |= value > 100
                cells.append(f"{value:.0f}%" + ("*" if value > 100 else ""))
            elif metric == "input pipeline (img/s)":
                cells.append(f"{value:.0f}" if value is not None else "")
            elif system == GARDEN and metric.startswith("inference") and value is not None:
                cells.append(_garden_cell(metric, garden, value))
            elif metric == FROZEN_STEP and value is None and system in rows.get("train step b2 (ms)", {}):
                cells.append(f"({display_number(metric, rows['train step b2 (ms)'][system])}, all trainable)")
            else:
                cells.append(display_number(metric, value))
        ratios = [display_ratio(speed_ratio(rows, metric, o, p)) for o, p in pairs]
        if metric == "% of matmul roofline":
            label += f" (float32 {roofline['float32'] / 1e9:.0f} GFLOP/s" + (
                f", bfloat16 {roofline['bfloat16'] / 1e9:.0f})" if "bfloat16" in roofline else ")")
        if metric == "input pipeline (img/s)" and OURS in values and OURS in rows.get("pipeline / train step rate", {}):
            rate = rows["pipeline / train step rate"][OURS]
            text = f"{rate:.0f}x the step's {values[OURS] / rate:.2f} img/s"
            if ratios:
                ratios[0] = text
            else:
                cells[wanted.index(OURS)] += f" ({text})"
        table_rows.append([label, *cells, *ratios])
    table = {"columns": ["", *(DISPLAY[s] for s in wanted), *ratio_names], "rows": table_rows}
    return table, starred


def write_square(args, rows, wanted, roofline, garden, precision):
    """results/square_<size>.json (square_640 by default): the table `print_table` printed."""
    size = args.image_size
    table, starred = square_table(rows, wanted, roofline, garden)
    built = []
    if OURS in wanted or OURS_BF16 in wanted:
        built.append("ours (with --resize=square, the peers' letterbox)")
    if HUB in wanted:
        built.append("keras-hub's RetinaNetObjectDetector")
    if GARDEN in wanted:
        built.append("the Model Garden's retinanet_resnetfpn_coco (pre-NMS top-k set to the paper's 1000)")
    systems = ", ".join(built[:-1]) + (" and " if len(built) > 1 else "") + built[-1] if built else "no system"
    description = (f"ResNet-50-FPN, {size}x{size}, {NUM_CLASSES} classes, 9 anchors, random weights, built alike in "
                   f"one process: {systems}; float32 unless marked bfloat16. Medians of {args.repeats} runs after "
                   f"{args.warmup} warm-up runs; ratios are our speed over the peer's (> 1: we are faster).")
    notes = []
    if starred:
        notes.append("\\* Above 100%: oneDNN's convolutions run faster than TensorFlow's square matmul of the same "
                     "dtype, so the matmul is a loose ceiling.")
    peers = []
    if HUB in wanted:
        peers.append("keras-hub's `predict()` and `train_on_batch()` fail for this model (its NMS needs a known batch "
                     "size; its targets are dicts), so every system is timed as a `tf.function` of the call its "
                     "users make.")
    if GARDEN in wanted:
        peers.append("The Model Garden's training step needs labels its own input pipeline encoded, so it has no "
                     "training row.")
    if HUB in wanted and FROZEN_STEP in rows:
        peers.append("The frozen-stem row compares our default when training from ImageNet weights with "
                     "keras-hub's all-trainable step: a faster recipe, not the same computation.")
    if peers:
        notes.append(" ".join(peers))
    if precision:
        notes.append(f"On the trained model in {precision['model_dir']}, {precision['found_by_bfloat16']} of the "
                     f"{precision['float32_detections']} float32 detections scoring >= 0.5 on its "
                     f"{precision['val_images']} validation pictures have a bfloat16 twin of the same class at "
                     f"IoU >= 0.9; {precision['found_by_float32']} of the {precision['bfloat16_detections']} "
                     f"bfloat16 ones have a float32 twin.")
    figures = {"image_size": size, "warmup": args.warmup, "repeats": args.repeats, "systems": wanted,
               "rows": rows, "matmul_gflops": {k: v / 1e9 for k, v in roofline.items()},
               "model_garden_seconds": garden, "bfloat16_vs_float32": precision}
    results.write(f"square_{size}", f"Against keras-hub and the Model Garden, {size}x{size} squares", description,
                  [table], notes, figures)


def compare_precisions(model_dir):
    """bfloat16 vs float32 detections of a trained model (the README's demo) on its val images."""
    from keras_retina.data import pipeline
    from keras_retina.data.data_config import DataConfig
    from keras_retina.data.splits import open_sources
    from keras_retina.evaluation import coco_metrics
    from keras_retina.model_dir import ModelDir
    from keras_retina.modeling.precision import set_precision

    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        print(f"\nbfloat16 vs float32 detections: skipped, no trained model in {model_dir} "
              f"(run the README's demo first, or pass --demo_model_dir)")
        return
    outputs = {}
    for precision in ("none", "bfloat16"):
        set_precision(precision)
        model, label_map, config, _ = ModelDir(model_dir).load_model()
        val = open_sources(DataConfig(**config["data"]), need_train=False).val
        dataset = pipeline.eval_dataset(val, model.resize_policy, 16)
        detect = tf.function(model.detect)
        batches = [{k: v.numpy() for k, v in detect(x).items()} for x, _ in dataset]
        outputs[precision] = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    set_precision("none")
    checked, missing = coco_metrics.unmatched_detections(outputs["none"], outputs["bfloat16"])
    checked_back, extra = coco_metrics.unmatched_detections(outputs["bfloat16"], outputs["none"])
    print(f"\nbfloat16 vs float32 on {model_dir} ({len(outputs['none']['num_detections'])} val images): "
          f"{checked - len(missing)}/{checked} float32 detections >= 0.5 found by bfloat16 (same class, IoU >= 0.9); "
          f"{checked_back - len(extra)}/{checked_back} the other way")
    return {"model_dir": model_dir, "val_images": len(outputs["none"]["num_detections"]),
            "float32_detections": checked, "found_by_bfloat16": checked - len(missing),
            "bfloat16_detections": checked_back, "found_by_float32": checked_back - len(extra)}


if __name__ == "__main__":
    sys.exit(main())
