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
"""

import argparse
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_retina import RetinaNet, deployed_model, export, fixed_size_detector  # noqa: E402
from keras_retina import litert_export, onnx_export  # noqa: E402
from keras_retina.precision import cpu_info  # noqa: E402
from keras_retina.resize_policy import round_up  # noqa: E402
from keras_retina.run_dir import RunDir  # noqa: E402

COCO_CLASSES = 80


def _model(args):
    if args.model_dir:
        net, label_map, config, _ = RunDir(args.model_dir).load_model()
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
    from keras_retina.commands import calibration_inputs

    options = {"calibration_count": args.calibration, "calibration_images": None}
    return calibration_inputs(RunDir(args.model_dir), config, options, size, net.resize_policy)


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
    runners, sizes = {}, {}
    with tempfile.TemporaryDirectory() as root:
        saved = export.export_saved_model(net, label_map, os.path.join(root, "serving"))
        serving = tf.saved_model.load(saved).signatures["serving_image_tensor"]
        runners["SavedModel (TF, float32)"] = lambda x: serving(inputs=tf.constant(x))
        sizes["SavedModel (TF, float32)"] = sum(os.path.getsize(os.path.join(d, f))
                                                for d, _, fs in os.walk(saved) for f in fs)
        for quantize in args.quantize.split(","):
            path = os.path.join(root, f"model_{quantize}.tflite")
            start = time.perf_counter()
            calibration = _calibration(args, net, config, size) if quantize == "int8" else None
            litert_export.export_litert(net, label_map, path, size, quantize, calibration)
            print(f"  LiteRT {quantize}: converted in {time.perf_counter() - start:.0f} s", flush=True)
            label = f"LiteRT {quantize if quantize != 'none' else 'float32'}"
            runners[label] = deployed_model.load(path, num_threads=os.cpu_count()).run
            sizes[label] = os.path.getsize(path)
        path = os.path.join(root, "model.onnx")
        start = time.perf_counter()
        onnx_export.export_onnx(net, label_map, path, size)
        print(f"  ONNX: converted in {time.perf_counter() - start:.0f} s", flush=True)
        runners["onnxruntime (float32)"] = deployed_model.load(path).run
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
    base = np.median(times["SavedModel (TF, float32)"])
    print(f"\n| runtime | file MiB | batch-1 ms (median of {args.repeats}) | speed vs SavedModel |")
    print("|---|---:|---:|---:|")
    for label, values in times.items():
        median = np.median(values)
        print(f"| {label} | {sizes[label] / 2**20:.1f} | {median * 1000:.1f} | {base / median:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
