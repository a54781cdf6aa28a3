"""Does `keras_retina rank` pick better pictures to label than chance? A simulated labelling run.

    python benchmarks/labelling_rounds.py [--seeds=1] [--rounds=3] [--start=40] [--per_round=40] [--steps=800]

The pool (`data.benchmark_data.write_labelling_pool`): 480 pictures of 128 px with 1-4 objects each
of six classes whose shares are long-tailed (40, 25, 15, 10, 6, 4 %), shapes among distractors on a
textured background; 200 validation pictures drawn the same way. Every picture of the pool has its
labels, but a label counts as made only when the run picks the picture (what a person would label).

A run with seed s: `--start` pictures chosen at random are labelled and a model trained on them
(the demo's recipe at 128 px, `--steps` steps from scratch, evaluated on the validation pictures
at the end). Then, for each strategy, `--rounds` times: `--per_round` more pictures of the pool
are labelled, either the top of `keras_retina rank` with the latest model of that strategy
(ranked: uncertainty + disagreement with the mirrored picture, rare classes weighted by the
report's counts) or drawn at random (random, seed s), and a model trained anew on everything
labelled so far. Both strategies start from the same pictures and the same first model. A row
gives each round's validation AP / AP50 (COCO, mean over classes, so the rare classes count as
much as the common ones), the boxes labelled and the boxes of the three rarest classes among them.
Writes benchmarks/results/labelling_rounds.json (rendered into docs/data.md).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "keras_retina", "labelling_rounds")
# The demo's recipe at the pool's 128 px (configs/demo.flags: tiny backbone, AdamW).
RECIPE = ["--flagfile=configs/demo.flags", "--demo_data=", "--export_dir=", "--image_size=128",
          "--max_image_size=128", "--verbose=2"]
STRATEGIES = ("ranked", "random")
RARE = ("yellow_square", "magenta_disc", "cyan_triangle")  # LONG_TAIL's three rarest classes


def _subset(pool_json, names, path):
    """COCO JSON of the pool's pictures `names` (their images and annotations)."""
    with open(pool_json, encoding="utf-8") as f:
        pool = json.load(f)
    images = [image for image in pool["images"] if image["file_name"] in names]
    ids = {image["id"] for image in images}
    subset = {**pool, "images": images, "annotations": [a for a in pool["annotations"] if a["image_id"] in ids]}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(subset, f)
    rare = {c["id"] for c in pool["categories"] if c["name"] in RARE}
    return len(subset["annotations"]), sum(a["category_id"] in rare for a in subset["annotations"])


def _train(model_dir, labelled, data, steps):
    """Trains a model on the labelled pool pictures into model_dir (a finished one is read again)."""
    annotations = model_dir + ".json"
    boxes, rare = _subset(data["pool"][0], set(labelled), annotations)
    if not os.path.isfile(os.path.join(model_dir, "summary.json")):
        shutil.rmtree(model_dir, ignore_errors=True)
        command = ["keras_retina", "train", *RECIPE, f"--train_steps={steps}", f"--warmup_steps={steps // 8}",
                   f"--lr_boundaries={int(steps * 0.75)}", f"--eval_every_steps={steps}",
                   f"--checkpoint_every_steps={steps}", f"--train_annotations={annotations}",
                   f"--train_images={data['pool'][1]}", f"--val_annotations={data['val'][0]}",
                   f"--val_images={data['val'][1]}", f"--model_dir={model_dir}"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{model_dir}: {done.stderr[-3000:]}")
    with open(os.path.join(model_dir, "summary.json"), encoding="utf-8") as f:
        metrics = json.load(f)["metrics"]
    return {"pictures": len(labelled), "boxes": boxes, "rare_boxes": rare,
            "AP": round(metrics["AP"], 4), "AP50": round(metrics["AP50"], 4)}


def _ranked(model_dir, candidates, folder, count):
    """The top `count` of `keras_retina rank` on the candidates' pictures."""
    listing = os.path.join(folder, "candidates")
    shutil.rmtree(listing, ignore_errors=True)
    os.makedirs(listing)
    for path in candidates:  # rank takes a folder: links to the unlabelled pictures
        os.symlink(path, os.path.join(listing, os.path.basename(path)))
    output = os.path.join(folder, "ranking.csv")
    if os.path.exists(output):
        os.remove(output)
    done = subprocess.run(["keras_retina", "rank", f"--model_dir={model_dir}", listing, f"--output={output}"],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"rank: {done.stderr[-3000:]}")
    from keras_retina.inference.ranking import read_ranking

    return [os.path.basename(path) for path in read_ranking(output)[:count]]


def run_seed(seed, data, args):
    folder = os.path.join(CACHE, f"runs-{args.steps}", f"seed{seed}")
    os.makedirs(folder, exist_ok=True)
    with open(data["pool"][0], encoding="utf-8") as f:
        pool = sorted(image["file_name"] for image in json.load(f)["images"])
    rng = np.random.default_rng(seed)
    start = list(rng.choice(pool, args.start, replace=False))
    first = _train(os.path.join(folder, "round0"), start, data, args.steps)
    print(f"seed {seed} round 0: {first}", flush=True)
    rounds = {}
    for strategy in STRATEGIES:
        labelled, model_dir, rows = list(start), os.path.join(folder, "round0"), [first]
        picker = np.random.default_rng(1000 + seed)
        for r in range(1, args.rounds + 1):
            rest = [name for name in pool if name not in set(labelled)]
            if strategy == "ranked":
                picks = _ranked(model_dir, [os.path.join(data["pool"][1], n) for n in rest],
                                os.path.join(folder, f"{strategy}{r}-rank"), args.per_round)
            else:
                picks = list(picker.choice(rest, args.per_round, replace=False))
            labelled += picks
            model_dir = os.path.join(folder, f"{strategy}{r}")
            rows.append(_train(model_dir, labelled, data, args.steps))
            print(f"seed {seed} {strategy} round {r}: {rows[-1]}", flush=True)
        rounds[strategy] = rows
    return rounds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--start", type=int, default=40)
    parser.add_argument("--per_round", type=int, default=40)
    parser.add_argument("--steps", type=int, default=800)
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from keras_retina.data.benchmark_data import write_labelling_pool

    data = write_labelling_pool(os.path.join(CACHE, "data"))
    runs = {seed: run_seed(seed, data, args) for seed in range(1, args.seeds + 1)}
    columns = ["strategy"] + [f"round {r}: pictures, AP / AP50 (rare boxes)" for r in range(args.rounds + 1)]
    rows = []
    for strategy in STRATEGIES:
        row = [strategy]
        for r in range(args.rounds + 1):
            taken = [runs[seed][strategy][r] for seed in runs]
            ap = [t["AP"] for t in taken]
            spread = f" ± {statistics.stdev(ap):.3f}" if len(ap) > 1 else ""
            ap50, rare = (statistics.mean(t[k] for t in taken) for k in ("AP50", "rare_boxes"))
            row.append(f"{taken[0]['pictures']}: {statistics.mean(ap):.3f}{spread} / {ap50:.3f} ({rare:.0f} of "
                       f"{statistics.mean(t['boxes'] for t in taken):.0f})")
        rows.append(row)
    mean = {s: [statistics.mean(runs[seed][s][r][k] for seed in runs) for r in range(args.rounds + 1)]
            for s in STRATEGIES for k in ("AP",)}
    boxes = {s: [statistics.mean(runs[seed][s][r]["boxes"] for seed in runs) for r in range(args.rounds + 1)]
             for s in STRATEGIES}
    ahead = sum(runs[seed]["ranked"][-1]["AP"] >= runs[seed]["random"][-1]["AP"] for seed in runs)
    notes = [f"After {args.rounds} rounds ({args.start + args.rounds * args.per_round} pictures labelled): ranked AP "
             f"{mean['ranked'][-1]:.3f}, random {mean['random'][-1]:.3f} (mean of {args.seeds} seed(s); ranked at "
             f"least as good in {ahead} of {args.seeds}); the ranked picks hold more boxes per picture "
             f"({boxes['ranked'][-1]:.0f} against {boxes['random'][-1]:.0f} after the last round), so a person "
             f"labels more boxes for the same number of pictures."]
    reached = next((r for r in range(args.rounds + 1) if mean["ranked"][r] >= mean["random"][-1]), None)
    if reached is not None and reached < args.rounds:
        notes.append(f"Ranked picks reach random picks' final AP ({mean['random'][-1]:.3f}) after round {reached}: "
                     f"{args.start + reached * args.per_round} pictures and {boxes['ranked'][reached]:.0f} boxes "
                     f"against {args.start + args.rounds * args.per_round} pictures and "
                     f"{boxes['random'][-1]:.0f} boxes.")
    results.write("labelling_rounds", "What to label next: ranked against random picks",
                  __doc__.split("\n\n", 2)[2].split("Writes benchmarks")[0].strip(),
                  [{"caption": "Validation AP / AP50 after each round (boxes of the three rarest classes among the "
                               "boxes labelled, in brackets); round 0 is the same for both", "columns": columns,
                    "rows": rows}], notes=notes, figures={"runs": runs, "args": vars(args)}, page="docs/data.md")


if __name__ == "__main__":
    main()
