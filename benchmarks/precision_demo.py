"""The demo trained and evaluated in float32 and in bfloat16 on this CPU (issue 34's accuracy side).

    python benchmarks/precision_demo.py [--runs=3] [--append]

Runs the README's main command (`keras_retina train --flagfile=configs/demo.flags`) `--runs`
times in each precision (`--mixed_precision=none` and `bfloat16`, alternating, each in a fresh
process and folder), and records each run's training time (the command's wall clock, data
generation and evaluation included) and its COCO AP / AP50 on the 128 validation pictures. The
first float32 model is also evaluated in bfloat16 (`keras_retina evaluate --mixed_precision=bfloat16`):
the same weights, so the AP difference is bfloat16 inference's alone. Results go to
benchmarks/results/precision_demo_<vendor>_<bfloat16 instructions>.json; `--append` adds this call's
runs to those already there (same machine kind).
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
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    cpu, flags = precision.cpu_info()
    name = result_name(cpu, flags).replace("precision_speed", "precision_demo")
    runs, inference = {"none": [], "bfloat16": []}, None
    if args.append:
        with open(os.path.join(results.RESULTS, f"{name}.json")) as f:
            earlier = json.load(f)["figures"]
        runs, inference = earlier["runs"], earlier["inference"]
    with tempfile.TemporaryDirectory(prefix="keras_retina_precision_") as root:
        for i in range(args.runs):
            for kind in runs:
                folder = os.path.join(root, f"{kind}-{i}")
                os.makedirs(folder)
                runs[kind].append(train(folder, kind))
                print(f"run {len(runs[kind])}, {kind}: {runs[kind][-1]}", flush=True)
                if kind == "none" and inference is None:
                    out = os.path.join(folder, "bf16_eval.json")
                    subprocess.run([*COMMAND, "evaluate", "--model_dir=runs/demo", "--mixed_precision=bfloat16",
                                    f"--output={out}", "--report=false"], cwd=folder, check=True,
                                   capture_output=True)
                    with open(out) as f:
                        bf16 = json.load(f)
                    inference = {"float32": {k: runs[kind][-1][k] for k in ("AP", "AP50")},
                                 "bfloat16": {k: bf16[k] for k in ("AP", "AP50")}}
                    print(f"the float32 model evaluated in bfloat16: {inference}", flush=True)
    table_rows = []
    for precision_name, label in (("none", "float32"), ("bfloat16", "bfloat16")):
        values = runs[precision_name]
        table_rows.append([label, ", ".join(f"{v['AP']:.3f}" for v in values),
                           ", ".join(f"{v['AP50']:.3f}" for v in values),
                           f"{statistics.median(v['seconds'] for v in values):.0f}"])
    f32_time = statistics.median(v["seconds"] for v in runs["none"])
    bf16_time = statistics.median(v["seconds"] for v in runs["bfloat16"])
    spread = {k: [v["AP"] for v in values] for k, values in runs.items()}
    notes = [f"Training in bfloat16 took {bf16_time / f32_time:.2f}x float32's time (medians, the whole command); "
             f"AP over the runs: float32 {min(spread['none']):.3f}-{max(spread['none']):.3f} (mean "
             f"{statistics.mean(spread['none']):.3f}), bfloat16 {min(spread['bfloat16']):.3f}-"
             f"{max(spread['bfloat16']):.3f} (mean {statistics.mean(spread['bfloat16']):.3f}).",
             f"The first float32 model evaluated in bfloat16 (the same weights): AP {inference['bfloat16']['AP']:.3f} "
             f"against {inference['float32']['AP']:.3f} in float32, AP50 {inference['bfloat16']['AP50']:.3f} against "
             f"{inference['float32']['AP50']:.3f}."]
    table = {"caption": "", "columns": ["precision", "AP of each run", "AP50 of each run", "median seconds"],
             "rows": table_rows}
    description = (f"The README's main command (the demo: 1500 steps of the tiny model on the synthetic data) run "
                   f"{len(runs['none'])} time(s) in each precision, alternating, each in a fresh process; AP on the "
                   f"128 validation pictures, time of the whole command.")
    results.write(name,
                  f"The demo in float32 and bfloat16 on {precision.cpu_label(cpu, flags)}", description, [table], notes,
                  {"runs": runs, "inference": inference})


if __name__ == "__main__":
    main()
