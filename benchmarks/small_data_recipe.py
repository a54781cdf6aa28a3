"""What each part of the small-data recipe adds, on a benchmark built to be hard.

    python benchmarks/small_data_recipe.py [--variants=demo,best,overhead,...] [--steps=1500]

The benchmark (`data.benchmark_data.write_small_data_benchmark`): 132 training pictures of 256 x 256,
5-15 small objects each (10-28 px) among distractor shapes of other colours on a striped texture;
64 validation pictures of another site: another background, darker or brighter and flatter
lighting, and triangles pointing any way (they all point up in training). Each variant trains from
scratch through the command line (`keras_retina train`) with the demo's recipe at this scale plus
its changes, evaluating on the validation pictures every 100 steps; its row gives the validation AP
and AP50 of the last step (what a run used to end on) and of the best evaluation (what the run now
keeps), and the step of the best. Writes benchmarks/results/small_data_recipe.json.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The demo's recipe (configs/demo.flags) at the benchmark's scale, before any part of the recipe.
BASE = ["--flagfile=configs/demo.flags", "--demo_data=", "--export_dir=", "--image_size=256", "--max_image_size=256",
        "--batch_size=8", "--checkpoint_every_steps=100", "--eval_every_steps=100", "--verbose=2"]
# name -> (what it adds, flags)
VARIANTS = {
    "demo": ("the demo's recipe (last step)", []),
    "overhead": ("+ --augment=overhead (quarter turns, vertical flips, colour, crops, zoom-outs)",
                 ["--augment=overhead"]),
    "photos": ("+ --augment=photos (colour, crops, zoom-outs)", ["--augment=photos"]),
    "anchor3": ("+ --anchor_size=3 (the coverage report's suggestion)", ["--anchor_size=3"]),
    "anchor2": ("+ --anchor_size=2 (anchors of 16-256 px)", ["--anchor_size=2"]),
    "size512": ("+ --image_size=512 (objects twice as large)", ["--image_size=512", "--max_image_size=512"]),
    "recipe": ("configs/small_data.flags --augment=overhead --anchor_size=3 (the recipe for overhead pictures, "
               "with check-data's anchor suggestion)",
               ["--flagfile=configs/small_data.flags", "--augment=overhead", "--anchor_size=3"]),
    "recipe_photos": ("configs/small_data.flags --anchor_size=3 (the recipe as it is: --augment=photos)",
                      ["--flagfile=configs/small_data.flags", "--anchor_size=3"]),
}


def _train(name, flags, data, steps, folder):
    """Trains variant `name` into folder/name (a finished run there, e.g. of an interrupted
    benchmark, is read instead: `train` finds nothing left to do)."""
    model_dir = os.path.join(folder, name)
    command = ["keras_retina", "train", *BASE, f"--train_steps={steps}", f"--lr_boundaries={int(steps * 0.8)}",
               *data, *flags, f"--model_dir={model_dir}"]
    start = time.time()
    seconds = None
    if os.path.exists(os.path.join(model_dir, "summary.json")):
        with open(os.path.join(model_dir, "summary.json")) as f:
            seconds = json.load(f)["seconds_this_run"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{name}: {result.stderr[-2000:]}")
    with open(os.path.join(model_dir, "summary.json")) as f:
        summary = json.load(f)
    evaluations = {}
    for entry in os.listdir(os.path.join(model_dir, "eval")):
        step = entry[len("metrics-"):-len(".json")]
        if not (entry.startswith("metrics-") and entry.endswith(".json") and step.isdigit()):
            continue  # the evaluation report's folder, an `evaluate` of the best checkpoint
        with open(os.path.join(model_dir, "eval", entry)) as f:
            metrics = json.load(f)
        evaluations[int(step)] = {k: metrics[k] for k in ("AP", "AP50")}
    trained = summary["seconds_this_run"] if seconds is None else seconds
    return {"seconds": round(trained if "Already trained" in result.stdout else time.time() - start),
            "steps": summary["steps"], "last": summary["metrics"], "best": summary.get("best"),
            "evaluations": dict(sorted(evaluations.items())), "flags": flags}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--data", default=None, help="where the benchmark is written (default: a temporary folder)")
    args = parser.parse_args()
    from keras_retina.data import benchmark_data

    folder = args.data or tempfile.mkdtemp(prefix="keras_retina_small_data_")
    paths = benchmark_data.write_small_data_benchmark(os.path.join(folder, "data"))
    data = [f"--train_annotations={paths['train'][0]}", f"--train_images={paths['train'][1]}",
            f"--val_annotations={paths['val'][0]}", f"--val_images={paths['val'][1]}"]
    path = os.path.join(results.RESULTS, "small_data_recipe.json")
    runs = json.load(open(path))["figures"]["runs"] if os.path.exists(path) else {}
    for name in args.variants.split(","):
        runs[name] = _train(name, VARIANTS[name][1], data, args.steps, folder)
        run = runs[name]
        print(f"{name}: last AP {run['last']['AP']:.3f} / AP50 {run['last']['AP50']:.3f}, best "
              f"{run['best']['value']:.3f} at step {run['best']['step']} ({run['seconds']} s)", flush=True)
    rows = []
    for name, (what, _) in VARIANTS.items():
        if name in runs:
            run = runs[name]
            best = run["best"]
            rows.append([what, f"{run['last']['AP']:.3f} / {run['last']['AP50']:.3f}",
                         f"{best['metrics']['AP']:.3f} / {best['metrics']['AP50']:.3f}", best["step"], run["steps"]])
    table = {"columns": ["recipe", "last step: AP / AP50", "best evaluation: AP / AP50", "best at step", "steps run"],
             "rows": rows}
    results.write("small_data_recipe", "The small-data recipe, part by part",
                  "The small-data benchmark (benchmarks/small_data_recipe.py's docstring: 132 training pictures, "
                  "small objects in clutter, validation pictures from another site), each variant trained from "
                  "scratch with the demo's recipe at 256 px plus its change and evaluated every 100 steps on the "
                  "validation pictures.", [table], figures={"runs": runs, "steps": args.steps})


if __name__ == "__main__":
    main()
