"""Yardsticks for box fit: datasets where the detector finds the objects but fits their boxes badly.

    python benchmarks/localisation_yardstick.py [--dataset=deepforest|soft] [--variants=base,giou,...]
                                                [--seeds=1] [--steps=600]

`--dataset=deepforest`: real aerial photographs, the annotated tree-crown orthophotos that ship
inside the `deepforest` package (MIT licence; RGB pictures of NEON's Airborne Observation Platform
at 10 cm a pixel, one box per crown, Pascal VOC XML). This script fetches the wheel from the
package registry (`pip download --no-deps deepforest==2.1.0`, 21 MB) into its cache folder and
reads the pictures there; nothing of it enters the repository. Training: one Yellowstone plot
(2019_YELL_2_528000_4978000, 2299 x 2472 px, 574 crowns). Validation: other plots and sites:
Yellowstone 541000_4977000 (1249 x 1035, 279 crowns), OSBS_029 (Florida, 400 x 400, 61) and
SOAP_061 (California, 400 x 400, 37; its Alive and Dead labels are read as Tree).
`keras_retina tile-data` cuts them into 256 px tiles (overlap 0.2; a box goes to a tile holding
60% of it, the others there become crowd regions): 132 training tiles, 38 validation tiles.
Crowns touch and where one ends is a matter of judgement, so the detector lands on most crowns
but fits them loosely: the report's breakdown shows localisation as by far the largest error.

`--dataset=soft`: synthetic (`data.benchmark_data.make_soft_example`), 160 training and 64 validation
pictures of 256 px with 6-16 blobs each, whose intensity falls off as a Gaussian and whose box is
a convention, drawn for each blob at its own 1.5-2.5 standard deviations (people disagree where a
soft edge is), 8-35 px: the sizes where stride 8's anchors are coarse. (Built at one convention,
2 standard deviations, the set was learnt exactly: localisation cost +0.004 AP50.)

Each variant trains the tiny model from scratch through the command line: the demo's recipe at
256 px, batch 8 (--steps=600 is 1200 steps: steps are given at the reference batch of 16 and
scaled), `configs/small_data.flags` with --augment=overhead (evaluation every 100 steps, the best
checkpoint kept by AP), check-data's anchor suggestion for the dataset (DATASETS) and the
variant's flags; then `keras_retina evaluate` writes the best checkpoint's metrics and report. A
row gives AP / AP50 / AP75 / APs, the report's "AP50 if localisation errors were fixed" (TIDE's
oracle: the localisation cost), and the milliseconds per training step (Keras' progress lines,
median over the run). With --seeds=N every variant runs N times (--seed=1..N) and the row gives
the mean and standard deviation. Writes benchmarks/results/localisation_yardstick.json (runs of
other variants and datasets already in it are kept; a variant run again replaces its runs).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree  # our own XML, written below from the package's files
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "deepforest==2.1.0"
TRAIN = ("2019_YELL_2_528000_4978000_image_crop2",)
VAL = ("2019_YELL_2_541000_4977000_image_crop", "OSBS_029", "SOAP_061")
TILE = 256
OLD_RUNS_CPU = "AMD EPYC without AMX"  # the machine of the runs recorded without theirs
BASE = ["--flagfile=configs/demo.flags", "--demo_data=", "--export_dir=", f"--image_size={TILE}",
        f"--max_image_size={TILE}", "--batch_size=8", "--flagfile=configs/small_data.flags", "--augment=overhead",
        "--report_pictures=0", "--verbose=2"]
# name -> (what it changes, training flags[, postprocessing flags at evaluation: the training variant with the
# same flags and none of these is evaluated again with them])
VARIANTS = {
    "base": ("the small-data recipe (smooth L1 on offsets, IoU >= 0.5 matching)", []),
    "l1": ("+ --box_loss_type=l1", ["--box_loss_type=l1"]),
    "giou": ("+ --box_loss_type=giou", ["--box_loss_type=giou"]),
    "giou2": ("+ --box_loss_type=giou --box_loss_weight=2", ["--box_loss_type=giou", "--box_loss_weight=2"]),
    "diou": ("+ --box_loss_type=diou", ["--box_loss_type=diou"]),
    "ciou": ("+ --box_loss_type=ciou", ["--box_loss_type=ciou"]),
    "atss": ("+ --anchor_assigner=atss", ["--anchor_assigner=atss"]),
    "atss_giou": ("+ --anchor_assigner=atss --box_loss_type=giou", ["--anchor_assigner=atss", "--box_loss_type=giou"]),
    "qfl": ("+ --classification_loss=quality_focal", ["--classification_loss=quality_focal"]),
    "vfl": ("+ --classification_loss=varifocal", ["--classification_loss=varifocal"]),
    "qfl_giou": ("+ --classification_loss=quality_focal --box_loss_type=giou (GFL's pair)",
                 ["--classification_loss=quality_focal", "--box_loss_type=giou"]),
    "vote": ("+ --box_voting_sigma=0.025 (at evaluation; the base's runs)", [], ["--box_voting_sigma=0.025"]),
    "ema999_vote": ("+ --ema_momentum=0.999 --box_voting_sigma=0.025", ["--ema_momentum=0.999"],
                    ["--box_voting_sigma=0.025"]),
    "scale2": ("+ --image_size=512 --anchor_size=4 (the tiles twice as large; check-data covers 99% of boxes "
               "there with the paper's anchors)", ["--image_size=512", "--max_image_size=512", "--anchor_size=4"]),
    "cut01": ("+ --nms_score_threshold=0.01 (at evaluation; the base's runs)", [], ["--nms_score_threshold=0.01"]),
    "qfl_cut01": ("+ --classification_loss=quality_focal --nms_score_threshold=0.01 (at evaluation)",
                  ["--classification_loss=quality_focal"], ["--nms_score_threshold=0.01"]),
    "vfl_vote": ("+ --classification_loss=varifocal --box_voting_sigma=0.025 (the finalists together; voting at "
                 "evaluation of the VFL runs)", ["--classification_loss=varifocal"], ["--box_voting_sigma=0.025"]),
    "long3": ("+ three times the steps (--train_steps=1800: 3,600 at batch 8)", ["--train_steps=1800",
                                                                                "--lr_boundaries=1440"]),
    "ema99": ("+ --ema_momentum=0.99", ["--ema_momentum=0.99"]),
    "ema999": ("+ --ema_momentum=0.999", ["--ema_momentum=0.999"]),
}


def fetch(cache):
    """The package's pictures and annotations in `cache`/deepforest/data (downloaded once)."""
    data = os.path.join(cache, "deepforest", "data")
    if os.path.isdir(data):
        return data
    os.makedirs(cache, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PACKAGE, "-d", cache], check=True)
    wheel = next(os.path.join(cache, n) for n in os.listdir(cache) if n.startswith("deepforest") and n.endswith(".whl"))
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if n.startswith("deepforest/data/") or "/licenses/" in n]
        archive.extractall(cache, members)
    return data


def prepare(data, folder):
    """VOC folders train/ and val/ (the pictures linked, every label 'Tree'), tiled; returns the
    train flags for the tiles."""
    tiles = os.path.join(folder, "tiles")
    if not os.path.isfile(os.path.join(tiles, "val.json")):
        shutil.rmtree(os.path.join(folder, "voc"), ignore_errors=True)
        for split, names in (("train", TRAIN), ("val", VAL)):
            os.makedirs(os.path.join(folder, "voc", split), exist_ok=True)
            for name in names:
                tree = ElementTree.parse(os.path.join(data, name + ".xml"))
                for label in tree.getroot().iter("name"):
                    label.text = "Tree"
                tree.getroot().find("filename").text = name + ".png"  # OSBS_029's names its .tif twin
                tree.write(os.path.join(folder, "voc", split, name + ".xml"))
                shutil.copy(os.path.join(data, name + ".png"), os.path.join(folder, "voc", split, name + ".png"))
        subprocess.run(["keras_retina", "tile-data", f"--train_annotations={folder}/voc/train",
                        f"--val_annotations={folder}/voc/val", f"--tile={TILE}", f"--tiles_dir={tiles}"],
                       cwd=ROOT, check=True)
    return [f"--train_annotations={tiles}/train.json", f"--train_images={tiles}/train",
            f"--val_annotations={tiles}/val.json", f"--val_images={tiles}/val"]


def prepare_soft(folder):
    """The soft-extent benchmark (`data.benchmark_data.write_soft_extent_benchmark`): its train flags."""
    from keras_retina.data import benchmark_data

    paths = benchmark_data.write_soft_extent_benchmark(os.path.join(folder, "soft-ambiguous"))
    return [f"--train_annotations={paths['train'][0]}", f"--train_images={paths['train'][1]}",
            f"--val_annotations={paths['val'][0]}", f"--val_images={paths['val'][1]}"]


# dataset -> (its training data flags, given the cache folder; check-data's anchor suggestion for it)
DATASETS = {
    "deepforest": (lambda cache: prepare(fetch(cache), cache), ["--anchor_size=3"]),  # 93% covered, not 83%
    "soft": (prepare_soft, ["--anchor_size=2"]),  # 86% of the boxes covered, not 17% (96% at 320 px)
}


def train(name, seed, flags, data, steps, folder):
    """Trains one variant with one seed into folder/name-seed and evaluates it; returns its figures."""
    model_dir = os.path.join(folder, f"{name}-{seed}")
    shutil.rmtree(model_dir, ignore_errors=True)
    command = ["keras_retina", "train", *BASE, f"--train_steps={steps}", f"--lr_boundaries={int(steps * 0.8)}",
               f"--seed={seed}", *data, *flags, f"--model_dir={model_dir}"]
    start = time.time()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name} seed {seed}: {result.stderr[-2000:]}")
    seconds = time.time() - start
    step_ms = [float(ms) for ms in re.findall(r" - (\d+)ms/step", result.stdout)]
    with open(os.path.join(model_dir, "summary.json")) as f:
        summary = json.load(f)
    timing = {"best_step": summary["best"]["step"], "steps": summary["steps"],
              "ms_per_step": statistics.median(step_ms) if step_ms else None, "seconds": round(seconds)}
    return {"seed": seed, **evaluate(model_dir, []), **timing, "flags": flags, "cpu": _cpu()}


def _cpu():
    """The machine a run trained on, in a few words (its ms/step compare only with the same machine's)."""
    found = results.machine()
    name = "AMD EPYC" if "AMD" in found["cpu"] else "Intel Xeon" if "Xeon" in found["cpu"] else found["cpu"]
    return f"{name} with AMX" if "amx_bf16" in found["flags"] else f"{name} without AMX"


def evaluate(model_dir, flags):
    """`keras_retina evaluate` of a trained run's best checkpoint (with postprocessing `flags`): its
    AP / AP50 / AP75 / APs and the report's costs."""
    output = os.path.join(model_dir, f"yardstick{''.join(flags).replace('--', '_').replace('=', '')}.json")
    result = subprocess.run(["keras_retina", "evaluate", f"--model_dir={model_dir}", f"--output={output}",
                             "--report_pictures=0", *flags], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{model_dir} evaluate {flags}: {result.stderr[-2000:]}")
    with open(output) as f:
        metrics = json.load(f)
    with open(output.replace(".json", "_report/report.json")) as f:
        report = json.load(f)
    cost = {kind: report["errors"]["types"][kind]["delta_ap"] for kind in ("localisation", "missed", "background")}
    return {**{k: metrics[k] for k in ("AP", "AP50", "AP75", "APs")}, **cost,
            "threshold": report["score_threshold"]["value"]}  # the report's best-F1 score to ship


def _variant(name):
    """(what it changes, training flags, postprocessing flags at evaluation) of a variant."""
    what, flags, *at_evaluation = VARIANTS[name]
    return what, flags, at_evaluation[0] if at_evaluation else []


def _cell(runs, key, digits=3):
    values = [run[key] for run in runs]
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="deepforest", choices=sorted(DATASETS))
    parser.add_argument("--variants", default="base,giou,atss")
    parser.add_argument("--seeds", type=int, default=1, help="runs seeds 1..N; a seed already recorded with the "
                        "variant's flags and --steps is kept (--again runs it anew)")
    parser.add_argument("--again", action="store_true")
    parser.add_argument("--steps", type=int, default=600,
                        help="--train_steps, given at the demo's reference batch of 16: batch 8 runs twice as many")
    parser.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "keras_retina", "yardstick"))
    args = parser.parse_args()
    prepare_data, anchors = DATASETS[args.dataset]
    data = (prepare_data(args.cache) + anchors) if args.variants else []
    folder = os.path.join(args.cache, f"runs-{args.dataset}-{args.steps}")
    path = os.path.join(results.RESULTS, "localisation_yardstick.json")
    everything = {}
    if os.path.exists(path):
        with open(path) as f:
            everything = json.load(f)["figures"]["runs"]
    runs = everything.setdefault(args.dataset, {})
    for name in [v for v in args.variants.split(",") if v]:  # none: the tables written again from the runs
        _, flags, at_evaluation = _variant(name)
        recorded = {run["seed"]: run for run in runs.get(name, [])
                    if run["flags"] == flags + at_evaluation and run["steps"] == 2 * args.steps and not args.again}
        runs[name] = []
        for seed in range(1, args.seeds + 1):
            if seed in recorded:
                runs[name].append(recorded[seed])
                continue
            if at_evaluation:  # the trained run it decodes differently: trained first when missing
                source = next(n for n in VARIANTS if _variant(n)[1:] == (flags, []))
                trained = {run["seed"]: run for run in runs.get(source, [])}
                if seed not in trained or not os.path.exists(os.path.join(folder, f"{source}-{seed}", "summary.json")):
                    trained[seed] = train(source, seed, flags, data, args.steps, folder)
                    runs[source] = sorted(trained.values(), key=lambda run: run["seed"])
                run = {**trained[seed], **evaluate(os.path.join(folder, f"{source}-{seed}"), at_evaluation),
                       "flags": flags + at_evaluation}
            else:
                run = train(name, seed, flags, data, args.steps, folder)
            runs[name].append(run)
            _write(everything, args.steps)  # each run recorded as it ends
            print(f"{args.dataset} {name} seed {seed}: AP {run['AP']:.3f} AP50 {run['AP50']:.3f} "
                  f"AP75 {run['AP75']:.3f}, "
                  f"localisation +{run['localisation']:.3f} AP50 if fixed, best at step {run['best_step']}, "
                  f"{run['ms_per_step']} ms/step ({run['seconds']} s)", flush=True)
    _write(everything, args.steps)


def _write(everything, steps):
    tables, notes = [], []
    for dataset, caption in (("deepforest", "Tree crowns on NEON orthophotos (DeepForest's pictures)"),
                             ("soft", "Soft-extent blobs (synthetic)")):
        rows = []
        for name in VARIANTS:
            what = _variant(name)[0]
            done = everything.get(dataset, {}).get(name)
            if done:
                rows.append([what, len(done), _cell(done, "AP"), _cell(done, "AP50"), _cell(done, "AP75"),
                             _cell(done, "APs"), "+" + _cell(done, "localisation"), _cell(done, "ms_per_step", 0)])
        machines = {}
        for name, done in everything.get(dataset, {}).items():
            for run in done:  # runs recorded before machines were: the AMD EPYC (Zen 4) of their session
                machines.setdefault(run.get("cpu", OLD_RUNS_CPU), set()).add(name)
        if len(machines) > 1:
            notes.append(f"{caption}: " + "; ".join(f"on {cpu}: {', '.join(sorted(names))}"
                                                    for cpu, names in sorted(machines.items())) +
                         ". ms/step compare only between rows of one machine; AP moves between machines about "
                         "as between seeds (other kernels round differently).")
        if rows:
            tables.append({"caption": caption, "columns": [
                "variant", "seeds", "AP", "AP50", "AP75", "APs", "localisation (AP50 if fixed)", "ms/step"],
                "rows": rows})
    results.write("localisation_yardstick", "Box fit: the localisation yardsticks",
                  "Real aerial photographs (DeepForest's NEON tree crowns: tiles of one Yellowstone plot for "
                  "training, of other plots and sites for validation) and synthetic soft-extent blobs "
                  "(benchmarks/localisation_yardstick.py's docstring). The tiny model from scratch with the "
                  "small-data recipe (--augment=overhead, check-data's anchor size) plus each row's change; "
                  "the best checkpoint evaluated, with the evaluation report's localisation cost.",
                  tables, notes=notes, figures={"runs": everything, "steps": steps}, page="docs/training.md",
                  command="python benchmarks/localisation_yardstick.py --dataset=deepforest|soft --variants=ROWS "
                          "(the rows of a table may come from several runs)")


if __name__ == "__main__":
    main()
