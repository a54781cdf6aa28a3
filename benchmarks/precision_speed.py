"""float32 against bfloat16 on this CPU, and what `--mixed_precision=auto` decides (issue 34).

Each model is built twice from one ModelConfig with random weights, under the float32 and the
mixed_bfloat16 Keras policy, in one process; every row alternates the two precisions' calls
(one warm-up each, then `--repeats` calls each, alternating) and reports medians, so both see
the same machine load. Models: the demo's tiny network on its 96x128 canvas (6 classes), and
ResNet-50-FPN (80 classes) on a COCO-shaped 480x640 canvas (S=480, L=640) and a 640x640 square.
Rows:

- predict at batch 1 and 8: a compiled `detect` (network, decoding, NMS; what
  `model.predict` runs);
- a training step (`train_step` compiled, everything trainable; batch 16 for the demo model,
  2 for ResNet-50);
- the exported SavedModel called in-process (`serving_image_tensor`, uint8, batch 1);
- `keras_retina predict --saved_model=...` on a folder of 16 JPEGs, a fresh process each
  (start-up and loading included: what a user waits for);
- `--mixed_precision=auto`'s own measurement (`precision.time_network`) and its choice, for
  inference and training;
- keras-hub's RetinaNet in both precisions, same process, 640 square (with `--keras_hub`,
  needs the `bench` extra).

oneDNN's choice of convolution kernel in each precision is recorded too (`ONEDNN_VERBOSE=1` on one
3x3 convolution in a fresh process): it explains why one CPU kind gains from bfloat16 and
another loses.

    python benchmarks/precision_speed.py [--models=demo,r50_coco,r50_square] [--keras_hub]

Results go to benchmarks/results/precision_speed_<vendor>_<bfloat16 instructions>.json, one per CPU
kind (rendered into docs/benchmarks.md).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_retina import RetinaNet  # noqa: E402
from keras_retina.deploy import saved_model as saved_model_lib  # noqa: E402
from keras_retina.modeling import precision  # noqa: E402
from keras_retina.modeling.model_config import ModelConfig  # noqa: E402

import results  # noqa: E402
from systems import jpeg_bytes  # noqa: E402

MODELS = {  # name -> (ModelConfig settings, canvas (H, W), training batch)
    "demo": (dict(num_classes=6, backbone="tiny", image_size=96, max_image_size=128, fpn_filters=64,
                  head_filters=64, head_convs=2), (96, 128), 16),
    "r50_coco": (dict(num_classes=80, backbone="resnet50", image_size=480, max_image_size=640), (480, 640), 2),
    "r50_square": (dict(num_classes=80, backbone="resnet50", image_size=640, resize="square"), (640, 640), 2),
}
TITLES = {"demo": "demo (tiny, 96x128)", "r50_coco": "ResNet-50-FPN, 480x640", "r50_square": "ResNet-50-FPN, 640x640"}
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
FOLDER_PICTURES = 16


def alternate(calls, repeats):
    """{name: median seconds}: one warm-up call each, then `repeats` rounds calling each in turn."""
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def build(settings, policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = RetinaNet(config=ModelConfig(**settings))
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return model


def pictures(batch, canvas, rng):
    images = rng.uniform(0, 255, (batch, *canvas, 3)).astype(np.float32)
    height, width = canvas
    boxes = np.array([[[0.1, 0.1, 0.5, 0.4], [0.4, 0.5, 0.9, 0.9]]] * batch, np.float32) * np.float32(
        [height, width] * 2)
    return images, {"boxes": tf.constant(boxes), "classes": tf.constant([[1, 3]] * batch, tf.int32)}


def model_rows(name, args, folder):
    settings, canvas, train_batch = MODELS[name]
    rng = np.random.default_rng(0)
    models = {p: build(settings, policy) for p, policy in POLICIES.items()}
    rows = {}

    def row(label, seconds, per=1, rate=False):
        rows[label] = {p: (per / s if rate else s * 1000 / per) for p, s in seconds.items()}
        shown = ", ".join(f"{p} {v:.1f}" for p, v in rows[label].items())
        print(f"{TITLES[name]}: {label}: {shown}", flush=True)

    detect = {p: tf.function(m.detect) for p, m in models.items()}
    for batch in (1, 8):
        images = tf.constant(pictures(batch, canvas, rng)[0])
        seconds = alternate({p: (lambda f=f, x=images: f(x)["num_detections"].numpy()) for p, f in detect.items()},
                            args.repeats)
        if batch == 1:
            row("predict, batch 1 (ms)", seconds)
        else:
            row("predict, batch 8 (images/s)", seconds, per=8, rate=True)
    if name != "r50_square":
        images, targets = pictures(train_batch, canvas, rng)
        steps = {p: tf.function(m.train_step) for p, m in models.items()}
        seconds = alternate({p: (lambda s=s: float(s((tf.constant(images), targets))["loss"])) for p, s in
                             steps.items()}, max(2, args.repeats // 2))
        row(f"training step, batch {train_batch} (ms per image)", seconds, per=train_batch)
        label_map = [{"id": k + 1, "name": f"class{k + 1}"} for k in range(settings["num_classes"])]
        paths = {p: saved_model_lib.export_saved_model(m, label_map, os.path.join(folder, name, p))
                 for p, m in models.items()}
        serving = {p: tf.saved_model.load(path).signatures["serving_image_tensor"] for p, path in paths.items()}
        uint8 = tf.constant(rng.integers(0, 255, (1, *canvas, 3), dtype=np.uint8))
        seconds = alternate({p: (lambda s=s: s(inputs=uint8)["num_detections"].numpy()) for p, s in serving.items()},
                            args.repeats)
        row("exported SavedModel in-process, batch 1 (ms)", seconds)
        photos = os.path.join(folder, "photos")
        os.makedirs(photos, exist_ok=True)
        for i in range(FOLDER_PICTURES):
            with open(os.path.join(photos, f"{i:02d}.jpg"), "wb") as f:
                f.write(jpeg_bytes(480, 640, seed=i))
        commands = {p: [sys.executable, "-m", "keras_retina.cli", "predict", f"--saved_model={path}", photos,
                        f"--output_dir={os.path.join(folder, 'out', name, p)}"] for p, path in paths.items()}
        seconds = alternate({p: (lambda c=c: _run(c)) for p, c in commands.items()}, 2)
        rows[f"predict --saved_model on {FOLDER_PICTURES} JPEGs, fresh process (s)"] = seconds
        print(f"{TITLES[name]}: predict on a folder (s): {seconds}", flush=True)
    config = ModelConfig(**settings)
    for mode in precision.MODES:
        start = time.perf_counter()
        measured = precision.time_network(config, mode, batch=1 if mode == "inference" else train_batch)
        took = time.perf_counter() - start
        ratio = measured["bfloat16"] / measured["float32"]
        label = f"auto's measurement, {mode} (ms a call at batch {1 if mode == 'inference' else train_batch})"
        rows[label] = {"float32": measured["float32"] * 1000, "bfloat16": measured["bfloat16"] * 1000,
                       "choice": "bfloat16" if precision.choose(ratio) == "bfloat16" else "float32", "seconds": took}
        print(f"{TITLES[name]}: {label}: {rows[label]}", flush=True)
    return rows


def _run(command):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def keras_hub_rows(args):
    import keras_hub

    size, rng = 640, np.random.default_rng(0)
    networks = {}
    for p, policy in POLICIES.items():
        keras.mixed_precision.set_global_policy(policy)
        try:
            resnet = keras_hub.models.ResNetBackbone(
                input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
                stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2],
                block_type="bottleneck_block", use_pre_activation=False, image_shape=(size, size, 3))
            backbone = keras_hub.models.RetinaNetBackbone(image_encoder=resnet, min_level=3, max_level=7,
                                                          use_p5=False, image_shape=(size, size, 3))
            model = keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=80)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        networks[p] = model
    # keras-hub's decode_predictions fails in bfloat16 (its box decoding multiplies bfloat16 deltas by
    # float32 anchors), so its network alone is timed, beside ours alone (the same raw outputs).
    ours = {p: build(MODELS["r50_square"][0], policy) for p, policy in POLICIES.items()}
    rows = {}
    for system, models in (("keras-hub", networks), ("ours", ours)):
        calls = {p: tf.function(lambda x, m=m: tf.nest.flatten(m(x, training=False))) for p, m in models.items()}
        for batch in (1, 8):
            images = tf.constant(pictures(batch, (size, size), rng)[0])
            seconds = alternate({p: (lambda c=c, x=images: [t.numpy() for t in c(x)]) for p, c in calls.items()},
                                args.repeats)
            label = f"{system}: network only, batch {batch} (ms per image)"
            rows[label] = {p: s * 1000 / batch for p, s in seconds.items()}
            print(f"640x640 {label}: {rows[label]}", flush=True)
    try:
        tf.function(lambda x, m=networks["bfloat16"]: m.decode_predictions(m(x, training=False), x))(images)
        rows["keras-hub decode_predictions in bfloat16"] = "runs"
    except TypeError as error:
        rows["keras-hub decode_predictions in bfloat16"] = f"fails: {str(error).strip().splitlines()[-1][:200]}"
    return rows


def onednn_kernels():
    """{precision: the implementation oneDNN runs for a 3x3 convolution (256 channels, 80x80)}."""
    code = ("import os, keras, tensorflow as tf\n"
            "keras.mixed_precision.set_global_policy(os.environ['POLICY'])\n"
            "conv = keras.layers.Conv2D(256, 3, padding='same')\n"
            "x = tf.random.uniform([1, 80, 80, 256])\n"
            "f = tf.function(lambda x: conv(x))\n"
            "[f(x).numpy() for _ in range(3)]\n")
    found = {}
    for p, policy in POLICIES.items():
        env = {**os.environ, "ONEDNN_VERBOSE": "1", "POLICY": policy, "TF_CPP_MIN_LOG_LEVEL": "2"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout
        lines = [line.split(",") for line in out.splitlines() if ",exec,cpu,convolution," in line]
        found[p] = sorted({fields[fields.index("convolution") + 1] for fields in lines}) or ["(none logged)"]
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keras_hub", action="store_true")
    args = parser.parse_args()
    cpu, flags = precision.cpu_info()
    print(f"CPU: {precision.cpu_label(cpu, flags)}; TensorFlow {tf.__version__}", flush=True)
    kernels = onednn_kernels()
    print(f"oneDNN 3x3 convolution kernels: {kernels}", flush=True)
    figures = {"repeats": args.repeats, "kernels": kernels, "models": {}}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            figures["models"][name] = model_rows(name, args, folder)
            with open(os.path.join(tempfile.gettempdir(), "precision_speed_partial.json"), "w") as f:
                json.dump(figures, f)  # kept should a later part fail
    if args.keras_hub:
        try:
            figures["keras_hub"] = keras_hub_rows(args)
        except Exception as error:  # noqa: BLE001 - the rows above are written either way
            figures["keras_hub"] = {"keras-hub": f"failed: {type(error).__name__}: {str(error)[:300]}"}
    write(figures, args, cpu, flags)


def _ratio(row):
    """bfloat16's speed over float32's for a row (> 1: bfloat16 faster)."""
    f32, bf16 = row["float32"], row["bfloat16"]
    return None if not f32 or not bf16 else bf16 / f32


def write(figures, args, cpu, flags):
    table_rows = []
    for name, rows in figures["models"].items():
        for label, row in rows.items():
            rate = "images/s" in label
            speed = (row["bfloat16"] / row["float32"]) if rate else (row["float32"] / row["bfloat16"])
            extra = f" (auto: {row['choice']}, measured in {row['seconds']:.0f} s)" if "choice" in row else ""
            table_rows.append([TITLES[name], label + extra, f"{row['float32']:.1f}", f"{row['bfloat16']:.1f}",
                               f"{speed:.2f}x"])
    notes = []
    for label, row in figures.get("keras_hub", {}).items():
        if isinstance(row, str):
            notes.append(f"{label}: {' '.join(row.split())}")
            continue
        table_rows.append(["ResNet-50-FPN, 640x640", label, f"{row['float32']:.1f}", f"{row['bfloat16']:.1f}",
                           f"{row['float32'] / row['bfloat16']:.2f}x"])
    table = {"caption": "", "columns": ["model", "what", "float32", "bfloat16", "bfloat16's speed-up"],
             "rows": table_rows}
    description = (f"Per CPU kind: each model built twice from one config (random weights), float32 and "
                   f"mixed_bfloat16, in one process, the two precisions' calls alternating; medians of "
                   f"{args.repeats} calls after a warm-up (training steps: {max(2, args.repeats // 2)}; the folder "
                   f"run: 2 fresh processes each). Speed-up > 1: bfloat16 faster. `auto`'s measurement is "
                   f"`--mixed_precision=auto`'s own (forward at batch 1 for inference, forward and backward at the "
                   f"training batch for training), with what it chose and how long it took.")
    hub = figures.get("keras_hub", {})
    for batch in (1, 8):
        theirs, ours = (hub.get(f"{system}: network only, batch {batch} (ms per image)")
                        for system in ("keras-hub", "ours"))
        if isinstance(theirs, dict) and isinstance(ours, dict):
            notes.append(f"Against keras-hub's network at batch {batch} (640x640, the same process): ours is "
                         f"{theirs['float32'] / ours['float32']:.2f}x its speed in float32 and "
                         f"{theirs['bfloat16'] / ours['bfloat16']:.2f}x in bfloat16.")
    notes += [f"oneDNN's kernel for a 3x3 convolution: float32 {', '.join(figures['kernels']['float32'])}; bfloat16 "
             f"{', '.join(figures['kernels']['bfloat16'])} ({precision.cpu_label(cpu, flags)})."]
    results.write(result_name(cpu, flags), f"float32 against bfloat16 on {precision.cpu_label(cpu, flags)}",
                  description, [table], notes, figures)


def result_name(cpu, flags):
    """precision_speed_<vendor>_<bfloat16 instructions>: one results file per CPU kind."""
    vendor = "amd" if "AMD" in cpu else "intel" if "Intel" in cpu else "cpu"
    kind = next((flag for flag in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if flag in flags), "other")
    return f"precision_speed_{vendor}_{kind}"


if __name__ == "__main__":
    main()
