"""The demo trained and evaluated in float32 and in bfloat16 on this CPU (issue 34's accuracy side).

    python benchmarks/precision_demo.py [--runs=3]

Runs the README's main command (`keras_retina train --flagfile=configs/demo.flags`) `--runs`
times in each precision (`--mixed_precision=none` and `bfloat16`, alternating, each in a fresh
process and folder), and records each run's training time (the command's wall clock, data
generation and evaluation included) and its COCO AP / AP50 on the 128 validation pictures. The
first float32 model is also evaluated in bfloat16 (`keras_retina evaluate --mixed_precision=bfloat16`):
the same weights, so the AP difference is bfloat16 inference's alone. Results go to
benchmarks/results/precision_demo_<vendor>_<bfloat16 instructions>.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from precision_speed import result_name  # noqa: E402

from keras_retina.modeling import precision  # noqa: E402

import results  # noqa: E402

COMMAND = [sys.executable, "-m", "keras_retina.cli"]


def train(folder, name):
    start = time.time()
    subprocess.run([*COMMAND, "train", "--flagfile=configs/demo.flags", f"--mixed_precision={name}", "--verbose=0"],
                   cwd=folder, check=True, capture_output=True)
    seconds = time.time() - start
    with open(os.path.join(folder, "runs", "demo", "summary.json")) as f:
        metrics = json.load(f)["metrics"]
    return {"seconds": seconds, "AP": metrics["AP"], "AP50": metrics["AP50"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cpu, flags = precision.cpu_info()
    runs = {"none": [], "bfloat16": []}
    inference = None
    with tempfile.TemporaryDirectory(prefix="keras_retina_precision_") as root:
        for i in range(args.runs):
            for name in runs:
                folder = os.path.join(root, f"{name}-{i}")
                os.makedirs(folder)
                runs[name].append(train(folder, name))
                print(f"run {i + 1}, {name}: {runs[name][-1]}", flush=True)
                if name == "none" and inference is None:
                    out = os.path.join(folder, "bf16_eval.json")
                    subprocess.run([*COMMAND, "evaluate", "--model_dir=runs/demo", "--mixed_precision=bfloat16",
                                    f"--output={out}", "--report=false"], cwd=folder, check=True,
                                   capture_output=True)
                    with open(out) as f:
                        bf16 = json.load(f)
                    inference = {"float32": {k: runs[name][-1][k] for k in ("AP", "AP50")},
                                 "bfloat16": {k: bf16[k] for k in ("AP", "AP50")}}
                    print(f"the float32 model evaluated in bfloat16: {inference}", flush=True)
    table_rows = []
    for name, label in (("none", "float32"), ("bfloat16", "bfloat16")):
        values = runs[name]
        table_rows.append([label, ", ".join(f"{v['AP']:.3f}" for v in values),
                           ", ".join(f"{v['AP50']:.3f}" for v in values),
                           f"{statistics.median(v['seconds'] for v in values):.0f}"])
    f32_time = statistics.median(v["seconds"] for v in runs["none"])
    bf16_time = statistics.median(v["seconds"] for v in runs["bfloat16"])
    notes = [f"Training in bfloat16 took {bf16_time / f32_time:.2f}x float32's time (medians, the whole command).",
             f"The first float32 model evaluated in bfloat16 (the same weights): AP {inference['bfloat16']['AP']:.3f} "
             f"against {inference['float32']['AP']:.3f} in float32, AP50 {inference['bfloat16']['AP50']:.3f} against "
             f"{inference['float32']['AP50']:.3f}."]
    table = {"caption": "", "columns": ["precision", "AP of each run", "AP50 of each run", "median seconds"],
             "rows": table_rows}
    description = (f"The README's main command (the demo: 1500 steps of the tiny model on the synthetic data) run "
                   f"{args.runs} time(s) in each precision, alternating, each in a fresh process; AP on the 128 "
                   f"validation pictures, time of the whole command.")
    results.write(result_name(cpu, flags).replace("precision_speed", "precision_demo"),
                  f"The demo in float32 and bfloat16 on {precision.cpu_label(cpu, flags)}", description, [table], notes,
                  {"runs": runs, "inference": inference})


if __name__ == "__main__":
    main()
