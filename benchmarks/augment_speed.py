"""How fast the input pipeline makes training batches with each augmentation preset.

    python benchmarks/augment_speed.py [--batches=60 --image_size=512]

The training pipeline (`data.pipeline.train_dataset`: decode, the paper's flip and scale
jitter, then `--augment`'s preset, resize, pad to the bucket, anchor targets) over the
small-data benchmark's 256-pixel JPEGs resized to `--image_size`, batches of 16, on this
machine's cores; no model runs. Each preset is timed twice, interleaved, after a warm-up batch;
the table gives pictures per second and each preset's rate as a share of no augmentation (the
pipeline's map runs on every core, so a machine feeding a GPU gets the per-core rate times its
cores). Writes benchmarks/results/augment_speed.json.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from keras_retina.data import augment, benchmark_data  # noqa: E402
from keras_retina.data.pipeline import train_dataset  # noqa: E402
from keras_retina.data.readers.coco_json import read_coco_json  # noqa: E402
from keras_retina.modeling.retinanet import RetinaNet  # noqa: E402

import results  # noqa: E402

PRESETS = ("none", "photos", "overhead")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--image_size", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="keras_retina_augment_speed_")
    paths = benchmark_data.write_small_data_benchmark(folder)
    source = read_coco_json(*paths["train"])
    model = RetinaNet(num_classes=len(source.label_map), backbone="tiny", image_size=args.image_size,
                      max_image_size=args.image_size)
    timings = {name: [] for name in PRESETS}
    datasets = {name: iter(train_dataset(source, model.label_encoder, model.resize_policy, args.batch_size,
                                         scale_range=(0.8, 1.0), seed=0,
                                         augmentation=augment.settings(name)).prefetch(1))
                for name in PRESETS}
    for it in datasets.values():
        next(it)  # warm-up: tracing, first files
    for _ in range(2):
        for name, it in datasets.items():
            start = time.perf_counter()
            for _ in range(args.batches // 2):
                next(it)
            timings[name].append(args.batches // 2 * args.batch_size / (time.perf_counter() - start))
    rows = []
    for name in PRESETS:
        rate = sum(timings[name]) / len(timings[name])
        rows.append([f"--augment={name}", round(rate), f"{rate / (sum(timings['none']) / 2):.0%}"])
        print(f"--augment={name}: {rate:.0f} pictures/s", flush=True)
    cores = os.cpu_count()
    results.write(
        "augment_speed", "Augmentation speed in the input pipeline",
        f"Training batches of {args.batch_size} from the small-data benchmark's JPEGs at image_size "
        f"{args.image_size}, the whole input pipeline (decode, flip and scale jitter, the preset, resize, pad, "
        f"anchor targets) on {cores} cores, no model (benchmarks/augment_speed.py).",
        [{"caption": "pictures per second (mean of two interleaved runs)",
          "columns": ["preset", "pictures/s", "of --augment=none"], "rows": rows}],
        notes=[f"Per core: {rows[0][1] / cores:.0f} (none), {rows[1][1] / cores:.0f} (photos), "
               f"{rows[2][1] / cores:.0f} (overhead) pictures/s."],
        figures={name: timings[name] for name in PRESETS})


if __name__ == "__main__":
    main()
