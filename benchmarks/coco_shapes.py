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

import results
from systems import (
    DISPLAY,
    GARDEN,
    HUB,
    OURS,
    OURS_BF16,
    SYSTEMS,
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

# COCO's photo shapes (height, width) and their shares in the mix timed here. An estimate of
# val2017's size mix (mostly 640x480 and 640x427 landscapes, their portraits, 500x375), not
# counted from its annotations: this machine cannot download them.
COCO_MIX = (((480, 640), 0.40), ((427, 640), 0.25), ((640, 480), 0.15), ((640, 427), 0.10), ((375, 500), 0.10))
PROBES = ((600, 1000), (800, 1333))  # shorter side / cap of the training-step and memory probes


def coco_shapes_report(args, wanted):
    """Per-image cost on COCO-shaped photos at one object scale for all systems: the peers
    letterbox each photo's longer side into their `--image_size` square; ours resizes it to the
    same scale and keeps the aspect (shorter side 3/4 of the square, longer side capped at the
    square's side: 480/640 for 640), padded to its bucket canvas. Writes results/coco_shapes.json."""
    from keras_retina.modeling.transform import ResizePolicy, resized_size

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
    garden, failed = {}, {}  # the Model Garden's two paths at batch 1; metric -> [systems whose call failed]
    for name in wanted:
        keras.utils.set_random_seed(0)
        ours = name in (OURS, OURS_BF16)
        built = SYSTEMS[name](short, max_image_size=size, resize="shorter_side") if ours else SYSTEMS[name](size)
        shape_of = (lambda photo: canvases[photo]) if ours else (lambda photo: (size, size))
        _measure(name, built, shape_of, args, rng, rows, garden, failed)
        built = None  # frees the model before the next is built
    print_table(rows, wanted, f"COCO mix (peers {size}x{size}, ours {short}/{size} shorter side)")
    print("  training step (batch 2, SGD, 4:3 landscape canvas) and peak process memory, one process each:")
    probes = {}
    for short_side, long_side in PROBES:
        probe = run_step_probe(f"{short_side},{long_side}", args)
        probes[f"{short_side}/{long_side}"] = probe
        if probe:
            print(f"    {short_side}/{long_side}, canvas {probe['canvas']}: {probe['step_ms']:8.0f} ms/step, "
                  f"peak RSS {probe['peak_rss_gib']:.2f} GiB")
    write_coco_shapes(args, wanted, rows, garden, failed, probes, canvases)


def _measure(name, built, shape_of, args, rng, rows, garden, failed):
    """Fills rows[metric][name] for one system (`shape_of`: photo shape -> its input shape)."""
    size = args.image_size
    cache = {}

    def per_image(metric, batch, call, timed=True):
        """Mix-weighted seconds per image of `call(inputs)` at each photo's input shape
        (`timed=False`: `call` returns its own seconds)."""
        total = 0.0
        for photo, share in COCO_MIX:
            key = (metric, shape_of(photo))
            if key not in cache:
                data = inputs(batch, shape_of(photo), rng)
                seconds = (median_seconds(lambda d=data: call(*d), args.warmup, args.repeats) if timed
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
        garden.update({"tf.function": plain, "XLA": xla})
        print(f"  {GARDEN}: tf.function {1000 * plain:.0f} ms, XLA {1000 * xla:.0f} ms at batch 1")
    rows.setdefault("COCO inference b1 (ms/img)", {})[name] = 1000 * per_image("b1", 1, lambda x, b, c: best(x))
    rows.setdefault("COCO inference b8 (img/s)", {})[name] = 1 / per_image("b8", 8, lambda x, b, c: best(x))
    if name == OURS_BF16:  # the precision's speed on this CPU: inference rows only
        print(f"  {name}: " + "; ".join(f"{m} {rows[m][name]:.1f}" for m in rows if name in rows[m]), flush=True)
        return
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
            failed.setdefault("COCO model.fit step b2 (ms/img)", []).append(name)
    if hasattr(built, "export"):
        path = built.export(tempfile.mkdtemp(prefix="keras_retina_bench_coco_"))
        rows.setdefault("COCO serving bytes->dets b1 (ms/img)", {})[name] = 1000 * sum(
            share * serving_seconds(path, jpeg_bytes(h, w), args) for (h, w), share in COCO_MIX)
    print(f"measured {name} on COCO shapes: " + "; ".join(
        f"{m} {rows[m][name]:.1f}" for m in rows if name in rows[m]), flush=True)


# ------------------------------------------------------------------------------ results file
# The COCO table's rows in results/coco_shapes.json: metric (as printed) -> row label.
COCO_ROWS = {
    "COCO inference b1 (ms/img)": "inference, batch 1 (ms; `detect`)",
    "COCO inference b8 (img/s)": "inference, batch 8 (img/s)",
    "COCO model.predict b1 (ms/img)": "`model.predict`, batch 1 (ms; what users call)",
    "COCO train step b2 (ms/img)": "training step, batch 2, all trainable (ms per image; `train_step`)",
    "COCO model.fit step b2 (ms/img)": "training step through `model.fit` (ms per image)",
    "COCO serving bytes->dets b1 (ms/img)": "exported SavedModel, JPEG bytes -> detections (ms)",
}
BF16_ROW = "bfloat16 inference, batch 1 / batch 8 (ms, img/s)"
# Known not to run (systems.py): keras-hub's predict() fails on its NMS layer's unknown batch size.
FAILS = {("COCO model.predict b1 (ms/img)", HUB)}


def coco_table(rows, wanted, garden, failed):
    """The COCO-mix table as results.write takes it: our float32 and the peers as columns,
    bfloat16 as a row of its own (its inference only)."""
    systems = [s for s in wanted if s != OURS_BF16]
    if OURS_BF16 in wanted and OURS not in systems:
        systems.insert(0, OURS)  # the bfloat16 row's column
    peers = [s for s in systems if s != OURS]
    pairs, ratio_names = ratio_columns([OURS] if OURS in systems else [], peers)
    table_rows = []
    for metric, label in COCO_ROWS.items():
        values = rows.get(metric)
        if not values:
            continue
        cells = []
        for system in systems:
            value = values.get(system)
            if value is None and ((metric, system) in FAILS or system in failed.get(metric, ())):
                cells.append("(fails)")
            elif system == GARDEN and metric.startswith("COCO inference") and value is not None and garden:
                xla = garden["XLA"] < garden["tf.function"]
                if "b1" not in metric:
                    cells.append(display_number(metric, value) + (" (XLA)" if xla else ""))
                elif xla:
                    cells.append(f"{value:.0f} (XLA; {1000 * garden['tf.function']:.0f} without)")
                else:
                    cells.append(f"{value:.0f} (XLA {1000 * garden['XLA']:.0f})")
            else:
                cells.append(display_number(metric, value))
        table_rows.append([label, *cells, *(display_ratio(speed_ratio(rows, metric, o, p)) for o, p in pairs)])
    b1, b8 = (rows.get(f"COCO inference {m}", {}).get(OURS_BF16) for m in ("b1 (ms/img)", "b8 (img/s)"))
    if b1 is not None and b8 is not None:
        cells = [f"{b1:.0f} / {b8:.1f}" if s == OURS else "" for s in systems]
        ratios = []
        for _, peer in pairs:
            p1, p8 = (rows[f"COCO inference {m}"].get(peer) for m in ("b1 (ms/img)", "b8 (img/s)"))
            ratios.append(f"{p1 / b1:.2f}x / {b8 / p8:.2f}x of {DISPLAY[peer]} float32"
                          if p1 is not None and p8 is not None else "")
        table_rows.append([BF16_ROW, *cells, *ratios])
    return {"columns": ["per image, COCO mix", *(DISPLAY[s] for s in systems), *ratio_names], "rows": table_rows}


def write_coco_shapes(args, wanted, rows, garden, failed, probes, canvases):
    """results/coco_shapes.json."""
    from keras_retina.modeling.precision import cpu_info, cpu_label

    size, short = args.image_size, args.image_size * 3 // 4
    mix = ", ".join(f"{w}x{h} {share:.0%}" for (h, w), share in COCO_MIX)
    shapes = " or ".join(f"{h}x{w}" for h, w in dict.fromkeys(canvases.values()))
    prose = {GARDEN: "the Model Garden"}
    peers = " and ".join(prose.get(s, DISPLAY[s]) for s in wanted if s not in (OURS, OURS_BF16)) or "the peers"
    description = (f"Per image, on a mix of COCO photo shapes ({mix}: an estimate of val2017's mix), every system "
                   f"at one object scale: {peers} letterbox each photo into their {size}x{size} square; ours "
                   f"resizes it by the same factor with the aspect kept (shorter side {short}, longer at most "
                   f"{size}: the paper's policy) into a {shapes} canvas; float32 unless the row says bfloat16. "
                   f"Medians of {args.repeats} runs after {args.warmup} warm-up runs; ratios are our speed over "
                   f"the peer's (> 1: we are faster).")
    notes = []
    f32 = [rows.get(f"COCO inference {m}", {}).get(OURS) for m in ("b1 (ms/img)", "b8 (img/s)")]
    bf16 = [rows.get(f"COCO inference {m}", {}).get(OURS_BF16) for m in ("b1 (ms/img)", "b8 (img/s)")]
    if None not in f32 and None not in bf16:
        notes.append(f"bfloat16 against our float32 on {cpu_label(*cpu_info())}: "
                     f"{f32[0] / bf16[0]:.2f}x the speed at batch 1, {bf16[1] / f32[1]:.2f}x at batch 8.")
    measured = [f"{spec} ({probe['canvas']} canvas) {probe['step_ms'] / 1000:.2f} s, peak "
                f"{probe['peak_rss_gib']:.2f} GiB" for spec, probe in probes.items() if probe]
    if measured:
        notes.append("Memory of a training step at batch 2 on a 4:3 landscape canvas (ResNet-50-FPN, float32, one "
                     "process each): " + "; ".join(measured) + ".")
    figures = {"image_size": size, "warmup": args.warmup, "repeats": args.repeats, "systems": wanted,
               "coco_mix": [{"height": h, "width": w, "share": share} for (h, w), share in COCO_MIX],
               "our_canvases": {f"{h}x{w}": f"{c[0]}x{c[1]}" for (h, w), c in canvases.items()},
               "rows": rows, "model_garden_b1_seconds": garden, "failed": failed, "train_step_probes": probes}
    results.write("coco_shapes", "COCO-shaped pictures", description, [coco_table(rows, wanted, garden, failed)],
                  notes, figures)


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
