"""Batch-1 latency of one detector through each deployment: SavedModel, LiteRT float32 / int8, onnxruntime.

    pip install -e ".[litert,onnx]"
    python benchmarks/deploy_latency.py                                 # random ResNet-50 at 640x640
    python benchmarks/deploy_latency.py --model_dir=runs/demo           # a trained model (the demo)
    python benchmarks/deploy_latency.py --input_size=480,640 --repeats=30

Every runtime gets the same uint8 picture already at the fixed input size, which the SavedModel's
resize policy keeps at scale 1 (640 x 640 for the random ResNet-50 built with S = 640; a
model_dir's landscape canvas, 96 x 128 for the demo), so each row times the whole detector
(network, decoding, top-k, NMS) on the same input:
  - SavedModel: `keras_retina export`'s `serving_image_tensor`, loaded with tf.saved_model.load
    (what TF Serving runs), float32;
  - LiteRT float32 / float16 / dynamic / int8: `export --format=tflite --quantize=...` in
    ai-edge-litert's Interpreter (XNNPACK) with as many threads as the machine has cores;
  - onnxruntime: `export --format=onnx`, CPU execution provider, default threads.
Calls are interleaved (one of each in turn, `--repeats` rounds after `--warmup`), and each row
is the median; speed-ups are against the SavedModel in the same run. Timing on a shared
machine is noisy: compare the ratios of one run, never absolute numbers across machines.
The int8 file is calibrated on `--calibration` pictures: the model_dir's training pictures for a
trained model, random noise for the random ResNet-50 (its speed, not its accuracy, is the point).

The results go to benchmarks/results/deploy_latency.json (`results.py`), one table for both runs
above: a run replaces the rows of the model (and input) it measured and keeps the others.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_retina import RetinaNet  # noqa: E402
from keras_retina.deploy import fixed_size_detector, litert, runtime  # noqa: E402
from keras_retina.deploy import onnx as onnx_export  # noqa: E402
from keras_retina.deploy import saved_model as export  # noqa: E402
from keras_retina.model_dir import ModelDir  # noqa: E402
from keras_retina.modeling.precision import cpu_info  # noqa: E402
from keras_retina.modeling.transform import round_up  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

COCO_CLASSES = 80
SAVED_MODEL = "SavedModel (TF, float32)"
NAME, TITLE = "deploy_latency", "Deployment: latency of each runtime"
# Runtimes as the results table names them (LiteRT's non-int8 files share a row: "LiteRT float32 / float16").
TABLE_LABEL = {SAVED_MODEL: "SavedModel (TensorFlow, float32)", "onnxruntime (float32)": "onnxruntime float32"}


def _model(args):
    if args.model_dir:
        net, label_map, config, _ = ModelDir(args.model_dir).load_model()
        return net, label_map, f"{args.model_dir} ({net.config.backbone})", config
    tf.keras.utils.set_random_seed(0)
    net = RetinaNet(num_classes=COCO_CLASSES, backbone="resnet50", image_size=args.input_size[0],
                    backbone_weights=None)
    label_map = [{"id": i + 1, "name": f"class{i + 1}"} for i in range(COCO_CLASSES)]
    return net, label_map, "random ResNet-50-FPN, 80 classes", None


def _calibration(args, net, config, size):
    if config is None:
        rng = np.random.default_rng(1)
        return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(args.calibration)]
    from keras_retina.deploy.calibration import calibration_inputs

    return calibration_inputs(ModelDir(args.model_dir), config, size, net.resize_policy, count=args.calibration)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", help="a trained model (default: a random ResNet-50 RetinaNet)")
    parser.add_argument("--input_size", default=None,
                        help="HEIGHT,WIDTH (default 640,640; a model_dir: its landscape canvas up32(S) x up32(L))")
    parser.add_argument("--quantize", default="none,int8", help="LiteRT modes to time, comma-separated")
    parser.add_argument("--calibration", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    if args.input_size:
        args.input_size = fixed_size_detector.parse_input_size(args.input_size)
    elif not args.model_dir:
        args.input_size = (640, 640)

    cpu, flags = cpu_info()
    isa = sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "fma", "avx_vnni")))
    import ai_edge_litert
    import onnxruntime
    print(f"python {platform.python_version()}, tensorflow {tf.__version__}, ai-edge-litert "
          f"{getattr(ai_edge_litert, '__version__', '?')}, onnxruntime {onnxruntime.__version__}; "
          f"{os.cpu_count()} CPUs")
    print(f"CPU: {cpu or platform.processor()}; flags: {' '.join(isa) or 'unknown'}")

    net, label_map, name, config = _model(args)
    policy = net.resize_policy  # default: its landscape canvas, which a picture of that size fills at scale 1
    size = args.input_size or (round_up(policy.size[0]), round_up(policy.size[1]))
    print(f"model: {name}; input {size[0]}x{size[1]}, batch 1", flush=True)
    runners, sizes, converted = {}, {}, {}
    with tempfile.TemporaryDirectory() as root:
        saved = export.export_saved_model(net, label_map, os.path.join(root, "serving"))
        serving = tf.saved_model.load(saved).signatures["serving_image_tensor"]
        runners[SAVED_MODEL] = lambda x: serving(inputs=tf.constant(x))
        sizes[SAVED_MODEL] = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(saved) for f in fs)
        for quantize in args.quantize.split(","):
            path = os.path.join(root, f"model_{quantize}.tflite")
            start = time.perf_counter()
            calibration = _calibration(args, net, config, size) if quantize == "int8" else None
            litert.export_litert(net, label_map, path, size, quantize, calibration)
            print(f"  LiteRT {quantize}: converted in {time.perf_counter() - start:.0f} s", flush=True)
            label = f"LiteRT {quantize if quantize != 'none' else 'float32'}"
            converted[label] = {"seconds": time.perf_counter() - start,
                                "calibration_pictures": len(calibration) if calibration is not None else None}
            runners[label] = runtime.load(path, num_threads=os.cpu_count()).run
            sizes[label] = os.path.getsize(path)
        path = os.path.join(root, "model.onnx")
        start = time.perf_counter()
        onnx_export.export_onnx(net, label_map, path, size)
        print(f"  ONNX: converted in {time.perf_counter() - start:.0f} s", flush=True)
        converted["onnxruntime (float32)"] = {"seconds": time.perf_counter() - start}
        runners["onnxruntime (float32)"] = runtime.load(path).run
        sizes["onnxruntime (float32)"] = os.path.getsize(path)

        image = np.random.default_rng(2).integers(0, 256, (1, size[0], size[1], 3), dtype=np.uint8)
        times = {label: [] for label in runners}
        for round_ in range(args.warmup + args.repeats):
            for label, run in runners.items():
                start = time.perf_counter()
                out = run(image)
                np.asarray(out["num_detections"])
                if round_ >= args.warmup:
                    times[label].append(time.perf_counter() - start)
    base = np.median(times[SAVED_MODEL])
    print(f"\n| runtime | file MiB | batch-1 ms (median of {args.repeats}) | speed vs SavedModel |")
    print("|---|---:|---:|---:|")
    for label, values in times.items():
        median = np.median(values)
        print(f"| {label} | {sizes[label] / 2**20:.1f} | {median * 1000:.1f} | {base / median:.2f}x |")
    model = (f"{os.path.basename(os.path.normpath(args.model_dir))} ({net.config.backbone} backbone)"
             if args.model_dir else f"random ResNet-50-FPN, {COCO_CLASSES} classes")
    command = " ".join(["python", os.path.relpath(sys.argv[0]), *(sys.argv[1:] if argv is None else argv)])
    write_results(f"{model}, {size[0]}x{size[1]}", command, args, size, times, sizes, converted,
                  random_weights=not args.model_dir)
    return 0


# ------------------------------------------------------------------------------ results file
def _ms(seconds):
    return f"{1000 * seconds:.0f}" if seconds >= 0.1 else f"{1000 * seconds:.1f}"


def _model_rows(label, times, sizes):
    """This model's rows of the table: the first names the model, the rest leave that cell empty."""
    medians = {runtime_: float(np.median(values)) for runtime_, values in times.items()}
    base = medians[SAVED_MODEL]
    lite = [r for r in medians if r.startswith("LiteRT") and r != "LiteRT int8"]  # one row for these
    rows = []
    for runtime_ in medians:
        if runtime_ in lite[1:]:
            continue
        group = lite if runtime_ in lite else [runtime_]
        name = ("LiteRT " + " / ".join(r.split(" ", 1)[1] for r in group) if runtime_ in lite
                else TABLE_LABEL.get(runtime_, runtime_))
        rows.append(["" if rows else label, name, " / ".join(f"{sizes[r] / 2**20:.1f}" for r in group),
                     " / ".join(_ms(medians[r]) for r in group),
                     " / ".join(f"{base / medians[r]:.2f}x" for r in group)])
    return rows


def _groups(rows):
    """[(model label, its rows)] of a table whose rows after a model's first leave its cell empty."""
    groups = []
    for row in rows:
        if row[0] or not groups:
            groups.append((row[0], []))
        groups[-1][1].append(row)
    return groups


def write_results(label, command, args, size, times, sizes, converted, random_weights):
    """results/deploy_latency.json: this model's rows replace its earlier ones (same model and input);
    the other models' rows (the other command's run) are kept as they are."""
    path = os.path.join(results.RESULTS, f"{NAME}.json")
    existing = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            existing = json.load(f)
    groups = _groups(existing["tables"][0]["rows"]) if existing.get("tables") else []
    entries = {entry["label"]: entry for entry in existing.get("figures", {}).get("models", [])}
    conversions = []
    for runtime_, info in converted.items():
        what = TABLE_LABEL.get(runtime_, runtime_)
        if info.get("calibration_pictures"):
            what += f", {info['calibration_pictures']} calibration pictures" + (
                " of noise: its speed, not its accuracy, is the point" if random_weights else "")
        conversions.append(f"{info['seconds']:.0f} s ({what})")
    machine = results.machine()
    entries[label] = {
        "label": label, "command": command, "machine": machine, "input_size": list(size), "warmup": args.warmup,
        "repeats": args.repeats, "threads": os.cpu_count(),
        "runtimes": {runtime_: {"file_bytes": sizes[runtime_],
                                "median_ms": 1000 * float(np.median(values)),
                                "times_ms": [1000 * t for t in values],
                                "convert_seconds": converted.get(runtime_, {}).get("seconds")}
                     for runtime_, values in times.items()},
        "notes": [f"{label}: converted in " + ", ".join(conversions) + "."]}
    rows = _model_rows(label, times, sizes)
    if label in [name for name, _ in groups]:
        groups = [(name, rows if name == label else kept) for name, kept in groups]
    else:
        groups.append((label, rows))
    legacy = [name for name, _ in groups if name not in entries]  # rows transcribed, not run here
    elsewhere = {entries[name]["machine"]["cpu"] for name, _ in groups
                 if name in entries and entries[name]["machine"] != machine}
    if legacy and existing.get("machine", {}).get("cpu") != machine["cpu"]:
        elsewhere.add(existing.get("machine", {}).get("cpu") or "unknown")
    elsewhere = sorted(elsewhere)
    commands = [entries[name]["command"] for name, _ in groups if name in entries]
    source, figures = "a run of the command", {"models": [entries[name] for name, _ in groups if name in entries]}
    if legacy:  # where those rows came from: kept from the file that first held them
        before = existing.get("figures", {})
        figures["legacy_command"] = before.get("legacy_command", existing.get("command", ""))
        figures["legacy_source"] = before.get("legacy_source", existing.get("source", "an earlier run"))
        commands = [c for c in figures["legacy_command"].split("; ") if c] + commands
        source = (f"{' and '.join(n for n, _ in groups if n in entries)}: a run of the command; "
                  f"{' and '.join(legacy)}: {figures['legacy_source']}")
    if elsewhere:
        source += f" (some rows measured on another machine: {', '.join(elsewhere)})"
        print(f"note: {NAME}.json keeps rows measured on another machine ({', '.join(elsewhere)}); "
              f"rerun both commands on one machine for one table")
    table = {"columns": ["model, input", "runtime", "file MiB", "ms", "vs SavedModel"],
             "rows": [row for _, kept in groups for row in kept]}
    results.write(NAME, TITLE,
                  f"Batch 1, median of interleaved calls, the whole detector from uint8 pixels at the input size to "
                  f"detections; LiteRT with XNNPACK on {os.cpu_count()} threads.",
                  [table], [note for name, _ in groups if name in entries for note in entries[name]["notes"]],
                  figures=figures,
                  command="; ".join(dict.fromkeys(commands)), source=source)


if __name__ == "__main__":
    sys.exit(main())
