"""The README's main command, timed, and its three numbers kept as data.

    python benchmarks/demo_run.py          # runs `keras_retina train --flagfile=configs/demo.flags` in a scratch folder

Runs the demo from scratch in a new temporary folder (the synthetic data generated, a tiny
RetinaNet trained, evaluated and exported), times the whole command, and writes its COCO AP,
AP50 and AP75 on the 128 validation pictures with the time to benchmarks/results/demo.json,
which the README's demo line is rendered from (`render.py`).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

COMMAND = ["keras_retina", "train", "--flagfile=configs/demo.flags"]


def main():
    with tempfile.TemporaryDirectory(prefix="keras_retina_demo_") as folder:
        start = time.time()
        subprocess.run(COMMAND, cwd=folder, check=True)
        seconds = time.time() - start
        with open(os.path.join(folder, "runs", "demo", "summary.json")) as f:
            summary = json.load(f)
    metrics = summary["metrics"]
    minutes, rest = divmod(int(round(seconds)), 60)
    machine = results.machine()
    line = (f"Measured on a fresh run ({machine['cpu']}, {machine['cores']} cores): **AP {metrics['AP']:.3f}, AP50 "
            f"{metrics['AP50']:.3f}, AP75 {metrics['AP75']:.3f}** on the 128 validation pictures after "
            f"{summary['steps']} steps; the whole command took {minutes} min {rest:02d} s "
            f"([benchmarks](docs/benchmarks.md#the-demo)).")
    table = {"columns": ["steps", "AP", "AP50", "AP75", "whole command"],
             "rows": [[summary["steps"], f"{metrics['AP']:.3f}", f"{metrics['AP50']:.3f}", f"{metrics['AP75']:.3f}",
                       f"{minutes} min {rest:02d} s"]]}
    results.write("demo", "The demo", "The README's main command from scratch in an empty folder: the synthetic "
                  "data generated, a tiny RetinaNet trained (1500 steps at batch 16), evaluated with pycocotools on "
                  "the 128 validation pictures and exported. CI runs it on every push and requires AP50 >= 0.8.",
                  [table], figures={"seconds": round(seconds, 1), "steps": summary["steps"], "metrics": metrics},
                  readme=line, command=" ".join(COMMAND))


if __name__ == "__main__":
    main()
