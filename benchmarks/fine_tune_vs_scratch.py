"""Fine-tuning from a trained model (`train --init_from`) against the same run from scratch.

No COCO weights can be downloaded on the machines this project is measured on, so the
mechanism is shown where it can be measured: a model trained on the demo data (the README's
main command, `runs/demo`) is fine-tuned on a second synthetic dataset (other pictures, other
sizes) that shares four class names with it and names two of its shape-and-colour classes
anew ("purple_blob", "teal_wedge": fresh classifier rows). Both runs use the demo's flags but
`--train_steps`, evaluate every `--eval_every` steps and print AP and AP50 per evaluation; the
table at the end gives the first step each run reached `--target` AP.

    python benchmarks/fine_tune_vs_scratch.py --source_dir=runs/demo --work_dir=/tmp/ft

Run from the repository (or give --flagfile); about 2 x (steps x 0.12 s + evaluations) on 2 cores.
The results go to benchmarks/results/fine_tune_vs_scratch.json (`results.py`).
"""

import argparse
import glob
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

RENAMED = {"magenta_disc": "purple_blob", "cyan_triangle": "teal_wedge"}
NUM_CLASSES, NUM_VAL = 6, 128


def _second_dataset(root):
    from keras_retina.data import synthetic

    paths = synthetic.write_coco_dataset(root, num_train=384, num_val=NUM_VAL, num_classes=NUM_CLASSES,
                                         sizes=((160, 240), (240, 160), (192, 192)), seed=11)
    for annotations, _ in paths.values():
        with open(annotations) as f:
            data = json.load(f)
        for category in data["categories"]:
            category["name"] = RENAMED.get(category["name"], category["name"])
        with open(annotations, "w") as f:
            json.dump(data, f)
    return paths


def _train(name, args, paths, extra):
    model_dir = os.path.join(args.work_dir, name)
    command = [sys.executable, "-m", "keras_retina.cli", "train", f"--flagfile={args.flagfile}",
               f"--model_dir={model_dir}", "--export_dir=", "--demo_data=",
               f"--train_annotations={paths['train'][0]}", f"--train_images={paths['train'][1]}",
               f"--val_annotations={paths['val'][0]}", f"--val_images={paths['val'][1]}",
               f"--train_steps={args.steps}", f"--eval_every_steps={args.eval_every}",
               f"--checkpoint_every_steps={args.eval_every}", f"--warmup_steps={args.warmup}",
               f"--lr_boundaries={int(args.steps * 0.8)}", "--verbose=2", *extra]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return _evaluations(model_dir)


def _evaluations(model_dir):
    """{step: the metrics `train` wrote to model_dir/eval/metrics-<step>.json}, by step."""
    evaluations = {}
    for path in glob.glob(os.path.join(model_dir, "eval", "metrics-*.json")):
        with open(path) as f:
            evaluations[int(os.path.basename(path).split("-")[1].split(".")[0])] = json.load(f)
    return dict(sorted(evaluations.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source_dir", default="runs/demo", help="the trained demo model_dir")
    parser.add_argument("--work_dir", default="fine_tune_vs_scratch")
    parser.add_argument("--flagfile", default="configs/demo.flags")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--eval_every", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--target", type=float, default=0.7, help="COCO AP to reach")
    args = parser.parse_args()
    os.makedirs(args.work_dir, exist_ok=True)
    paths = _second_dataset(os.path.join(args.work_dir, "data"))
    evaluations = {"fine-tuned": _train("fine_tuned", args, paths, [f"--init_from={args.source_dir}"]),
                   "scratch": _train("scratch", args, paths, [])}
    curves = {name: {step: (m["AP"], m["AP50"]) for step, m in runs.items()} for name, runs in evaluations.items()}
    steps = sorted(set().union(*curves.values()))
    print("\nCOCO AP / AP50 on the second dataset's validation split (128 pictures)")
    print(f"{'step':>6} " + " ".join(f"{name:>17}" for name in curves))
    missing = (float("nan"), float("nan"))
    for step in steps:
        print(f"{step:>6} " + " ".join("{:>8.3f} /{:>6.3f}".format(*curves[name].get(step, missing))
                                        for name in curves))
    reached = {}
    for name, curve in curves.items():
        reached[name] = next((step for step, (ap, _) in curve.items() if ap >= args.target), None)
        print(f"{name}: AP >= {args.target} first at step "
              f"{reached[name] if reached[name] is not None else '(not reached)'}")
    write_results(args, evaluations, reached)


def _shown_steps(steps, args):
    """The table's columns: every evaluation in the first half of training, where the curves move
    fastest, then every other one, and the last (figures keeps them all)."""
    return [s for s in steps if s <= args.steps / 2 or s % (2 * args.eval_every) == 0 or s == steps[-1]]


def write_results(args, evaluations, reached):
    """results/fine_tune_vs_scratch.json: AP / AP50 of both runs at each shown step."""
    steps = sorted(set().union(*evaluations.values()))
    shown = _shown_steps(steps, args)
    labels = {"fine-tuned": f"`--init_from={args.source_dir}`", "scratch": "from scratch"}

    def cell(name, step):
        metrics = evaluations[name].get(step)
        return f"{metrics['AP']:.3f} / {metrics['AP50']:.3f}" if metrics else "-"

    table = {"columns": ["step", *(str(s) for s in shown)],
             "rows": [[labels[name], *(cell(name, s) for s in shown)] for name in evaluations]}
    source = _evaluations(args.source_dir)
    source_ap = source[max(source)]["AP"] if source else None
    pictures = next((m.get("num_images") for runs in evaluations.values() for m in runs.values()), None) or NUM_VAL
    description = (f"The model in `{args.source_dir}`" + (f" (AP {source_ap:.3f})" if source_ap is not None else "")
                   + f" fine-tuned with `train --init_from` on a second synthetic dataset (other pictures and sizes; "
                   f"{NUM_CLASSES - len(RENAMED)} class names shared, {len(RENAMED)} renamed so they get fresh rows) "
                   f"against the same run from scratch, `{args.flagfile}` flags, {args.steps} steps. "
                   f"COCO AP / AP50 on its {pictures} validation pictures:")
    notes = []
    first = min(set(evaluations["fine-tuned"]) & set(evaluations["scratch"]), default=None)
    if first is not None:
        per_class = {name: evaluations[name][first].get("per_class_AP", {}) for name in evaluations}
        renamed = [n for n in RENAMED.values() if all(n in ap for ap in per_class.values())]
        if renamed:
            def aps(name):
                return " and ".join(f"{per_class[name][n]:.2f}" for n in renamed)

            notes.append(f"The renamed classes (fresh classifier rows: {', '.join(renamed)}) reached AP "
                         f"{aps('fine-tuned')} by step {first} fine-tuned; {aps('scratch')} from scratch.")
    when = {name: f"first at step {step}" if step is not None else "not reached" for name, step in reached.items()}
    notes.append(f"AP >= {args.target}: {when['fine-tuned']} fine-tuned; {when['scratch']} from scratch.")
    results.write("fine_tune_vs_scratch", "Fine-tuning against training from scratch", description, [table], notes,
                  figures={"steps": args.steps, "eval_every": args.eval_every, "target_AP": args.target,
                           "source_AP": source_ap, "first_step_reaching_target": reached,
                           "evaluations": {name: {str(step): metrics for step, metrics in runs.items()}
                                           for name, runs in evaluations.items()}})


if __name__ == "__main__":
    main()
