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
"""

import argparse
import json
import os
import subprocess
import sys

RENAMED = {"magenta_disc": "purple_blob", "cyan_triangle": "teal_wedge"}


def _second_dataset(root):
    from keras_retina.data import synthetic

    paths = synthetic.write_coco_dataset(root, num_train=384, num_val=128, num_classes=6,
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
    curve = {}
    eval_dir = os.path.join(model_dir, "eval")
    for name_ in os.listdir(eval_dir):
        step = int(name_.split("-")[1].split(".")[0])
        with open(os.path.join(eval_dir, name_)) as f:
            metrics = json.load(f)
        curve[step] = (metrics["AP"], metrics["AP50"])
    return dict(sorted(curve.items()))


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
    curves = {"fine-tuned": _train("fine_tuned", args, paths, [f"--init_from={args.source_dir}"]),
              "scratch": _train("scratch", args, paths, [])}
    steps = sorted(set().union(*curves.values()))
    print("\nCOCO AP / AP50 on the second dataset's validation split (128 pictures)")
    print(f"{'step':>6} " + " ".join(f"{name:>17}" for name in curves))
    missing = (float("nan"), float("nan"))
    for step in steps:
        print(f"{step:>6} " + " ".join("{:>8.3f} /{:>6.3f}".format(*curves[name].get(step, missing))
                                        for name in curves))
    for name, curve in curves.items():
        reached = next((step for step, (ap, _) in curve.items() if ap >= args.target), None)
        print(f"{name}: AP >= {args.target} first at step {reached if reached is not None else '(not reached)'}")


if __name__ == "__main__":
    main()
