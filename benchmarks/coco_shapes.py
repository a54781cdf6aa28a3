"""Per-image speed on COCO-shaped photos at one object scale (`benchmark.py --coco_shapes`).

The peers letterbox each photo's longer side into their square; ours resizes it by the same
factor with its aspect kept (the paper's shorter-side policy) into its bucket canvas. Rows:
inference at batch 1 and 8, `model.predict` at batch 1, the training step through
`train_step` and through `model.fit`, serving from JPEG bytes, and a training step's time and
peak memory at 600/1000 and 800/1333.
"""

import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from systems import (GARDEN, OURS, OURS_BF16, SYSTEMS, inputs, jpeg_bytes, median_seconds, print_table,
                     run_step_probe, serving_seconds)

# COCO's photo shapes (height, width) and their shares in the mix timed here. An estimate of
# val2017's size mix (mostly 640x480 and 640x427 landscapes, their portraits, 500x375), not
# counted from its annotations: this machine cannot download them.
COCO_MIX = (((480, 640), 0.40), ((427, 640), 0.25), ((640, 480), 0.15), ((640, 427), 0.10), ((375, 500), 0.10))


def coco_shapes_report(args, wanted):
    """Per-image cost on COCO-shaped photos at one object scale for all systems: the peers
    letterbox each photo's longer side into their `--image_size` square; ours resizes it to the
    same scale and keeps the aspect (shorter side 3/4 of the square, longer side capped at the
    square's side: 480/640 for 640), padded to its bucket canvas."""
    from keras_retina.input_mapping import resized_size
    from keras_retina.resize_policy import ResizePolicy

    size = args.image_size
    short = size * 3 // 4
    policy = ResizePolicy(short, size)
    canvases = {}  # photo shape -> our canvas
    for (height, width), _ in COCO_MIX:
        resized = resized_size(height, width, policy.scale(height, width))
        canvases[height, width] = tuple(int(v) for v in policy.canvas(resized[0], resized[1]))
    print(f"\nCOCO-shaped photos, one object scale: peers at {size}x{size} (letterbox); ours shorter side {short}, "
          f"longer at most {size}: " + ", ".join(f"{h}x{w} ({share:.0%}) -> {canvases[h, w][0]}x{canvases[h, w][1]}"
                                                for (h, w), share in COCO_MIX))
    rows, rng = {}, np.random.default_rng(0)
    for name in wanted:
        keras.utils.set_random_seed(0)
        ours = name in (OURS, OURS_BF16)
        built = SYSTEMS[name](short, max_image_size=size, resize="shorter_side") if ours else SYSTEMS[name](size)
        shape_of = (lambda photo: canvases[photo]) if ours else (lambda photo: (size, size))
        cache = {}

        def per_image(metric, batch, call, timed=True):
            """Mix-weighted seconds per image of `call(inputs)` at each photo's input shape
            (`timed=False`: `call` returns its own seconds)."""
            total = 0.0
            for photo, share in COCO_MIX:
                key = (metric, shape_of(photo))
                if key not in cache:
                    data = inputs(batch, shape_of(photo), rng)
                    seconds = (median_seconds(lambda: call(*data), args.warmup, args.repeats) if timed
                               else call(*data))
                    cache[key] = seconds / batch
                total += share * cache[key]
            return total

        best = built.predict
        if name == GARDEN:
            plain = per_image("b1", 1, lambda x, b, c: built.predict(x))
            xla = per_image("b1 xla", 1, lambda x, b, c: built.predict_xla(x))
            best = built.predict if plain <= xla else built.predict_xla
            cache["b1", (size, size)] = min(plain, xla)  # the row below: the faster path
            print(f"  {GARDEN}: tf.function {1000 * plain:.0f} ms, XLA {1000 * xla:.0f} ms at batch 1")
        rows.setdefault("COCO inference b1 (ms/img)", {})[name] = 1000 * per_image("b1", 1, lambda x, b, c: best(x))
        rows.setdefault("COCO inference b8 (img/s)", {})[name] = 1 / per_image("b8", 8, lambda x, b, c: best(x))
        if name == OURS_BF16:  # the precision's speed on this CPU: inference rows only
            print(f"  {name}: " + "; ".join(f"{m} {rows[m][name]:.1f}" for m in rows if name in rows[m]), flush=True)
            del built
            continue
        if hasattr(built, "keras_predict"):
            rows.setdefault("COCO model.predict b1 (ms/img)", {})[name] = 1000 * per_image(
                "predict", 1, lambda x, b, c: built.keras_predict(x))
        if hasattr(built, "train"):
            rows.setdefault("COCO train step b2 (ms/img)", {})[name] = 1000 * per_image("train", 2, built.train)
        if hasattr(built, "fit_targets"):
            try:
                rows.setdefault("COCO model.fit step b2 (ms/img)", {})[name] = 1000 * per_image(
                    "fit", 2, lambda x, b, c: fit_step_seconds(built, x, b, c, args), timed=False)
            except Exception as error:  # a peer whose fit() does not run: say so, keep going
                print(f"  {name}: model.fit failed ({type(error).__name__}: {str(error).splitlines()[0][:150]})")
        if hasattr(built, "export"):
            path = built.export(tempfile.mkdtemp(prefix="keras_retina_bench_coco_"))
            rows.setdefault("COCO serving bytes->dets b1 (ms/img)", {})[name] = 1000 * sum(
                share * serving_seconds(path, jpeg_bytes(h, w), args) for (h, w), share in COCO_MIX)
        print(f"measured {name} on COCO shapes: " + "; ".join(
            f"{m} {rows[m][name]:.1f}" for m in rows if name in rows[m]), flush=True)
        del built
    print_table(rows, wanted, f"COCO mix (peers {size}x{size}, ours {short}/{size} shorter side)")
    print("  training step (batch 2, SGD, 4:3 landscape canvas) and peak process memory, one process each:")
    for short_side, long_side in ((600, 1000), (800, 1333)):
        probe = run_step_probe(f"{short_side},{long_side}", args)
        if probe:
            print(f"    {short_side}/{long_side}, canvas {probe['canvas']}: {probe['step_ms']:8.0f} ms/step, "
                  f"peak RSS {probe['peak_rss_gib']:.2f} GiB")


def fit_step_seconds(built, images, boxes, classes, args):
    """Seconds per step of `model.fit` (what users call) on an in-memory batch repeated: one
    untimed fit (tracing), then fits of `repeats` steps each, the median per step."""
    data = tf.data.Dataset.from_tensors((images, built.fit_targets(boxes, classes))).repeat()
    built.model.fit(data, steps_per_epoch=max(args.warmup, 1), epochs=1, verbose=0)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        built.model.fit(data, steps_per_epoch=args.repeats, epochs=1, verbose=0)
        times.append((time.perf_counter() - start) / args.repeats)
    return statistics.median(times)
