"""detect-batch on Beam's local runner against predict, and how it grows from 1,000 to 100,000 pictures.

    python benchmarks/batch_detection.py --model_dir=runs/demo --beam_python=beam-venv/bin/python \
        [--counts=1000,10000,100000] [--compare=1000]

The model is the demo's (the README's main command). The pictures are 1,000 of the demo's kind
(128 x 96 JPEGs of coloured shapes, `data.synthetic`), and for larger counts the same files again
under other names (hard links: the work per picture is the same, the disk is not filled), all in
one folder under the cache (~/.cache/keras_retina/batch_detection).

On `--compare` pictures, each command run twice, in turn: `predict` (one process; it also draws
every picture and writes it, which is its job), a plain loop in one process (read, detect with
`batch_detector`, nothing written: the least any engine can cost), and `detect-batch` with
`--workers=1` (the in-memory runner, one process) and `--workers=2` (two worker processes).
Then `detect-batch --workers=2` on each of `--counts`. A row gives the wall-clock seconds of the
whole command (the process's start and TensorFlow's import included), pictures per second, and
the peak memory: of the command's own process and of the whole process tree (its workers
included), sampled every 0.2 s. Writes benchmarks/results/batch_detection.json (rendered into
docs/scale.md).
"""

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "keras_retina", "batch_detection")
UNIQUE = 1000
LOOP = r'''
import os, sys, time
from keras_retina.inference.detector import batch_detector
from keras_retina.ops.images import read_picture
folder = sys.argv[2]
detect = batch_detector(model_dir=sys.argv[1])
for name in sorted(os.listdir(folder)):
    pixels = read_picture(os.path.join(folder, name)).numpy()
    detect(pixels[None])
'''


def _pictures(count):
    """A folder of `count` pictures (module docstring), made once."""
    unique = os.path.join(CACHE, "unique")
    if not os.path.isdir(unique):
        sys.path.insert(0, ROOT)
        import numpy as np
        from PIL import Image

        from keras_retina.data import synthetic

        os.makedirs(unique + ".partial", exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(UNIQUE):
            image, _, _ = synthetic.make_example(rng, (96, 128), num_classes=6, max_objects=4)
            Image.fromarray(image).save(os.path.join(unique + ".partial", f"{i:04d}.jpg"), quality=90)
        os.rename(unique + ".partial", unique)
    folder = os.path.join(CACHE, f"pictures-{count}")
    if not os.path.isdir(folder):
        os.makedirs(folder + ".partial", exist_ok=True)
        for i in range(count):
            os.link(os.path.join(unique, f"{i % UNIQUE:04d}.jpg"), os.path.join(folder + ".partial", f"{i:06d}.jpg"))
        os.rename(folder + ".partial", folder)
    return folder


def _measure(command, cwd):
    """(seconds, peak MB of the process, peak MB of its process tree, return code)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT}
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    peaks = [0, 0]
    done = threading.Event()

    def sample():
        root = psutil.Process(process.pid)
        while not done.is_set():
            try:
                own = root.memory_info().rss
                tree = own + sum(child.memory_info().rss for child in root.children(recursive=True))
                peaks[0], peaks[1] = max(peaks[0], own), max(peaks[1], tree)
            except psutil.Error:
                pass
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    seconds = time.monotonic() - start
    done.set()
    sampler.join()
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{command[:4]}: {stderr[-2000:]}")
    return seconds, peaks[0] / 2**20, peaks[1] / 2**20, process.returncode


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--beam_python", default=os.environ.get("KERAS_RETINA_BEAM_PYTHON"), required=False)
    parser.add_argument("--counts", default="1000,10000,100000")
    parser.add_argument("--compare", type=int, default=1000)
    args = parser.parse_args()
    model_dir = os.path.abspath(args.model_dir)
    work = os.path.join(CACHE, "outputs")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    folder = _pictures(args.compare)
    commands = {
        "predict (draws and writes each picture)": [sys.executable, "-m", "keras_retina.cli", "predict",
                                                    f"--model_dir={model_dir}", folder, "--output_dir=predict"],
        "plain loop: read + detect, one process": [sys.executable, "-c", LOOP, model_dir, folder],
        "detect-batch --workers=1 (in memory)": [args.beam_python, "-m", "keras_retina.cli", "detect-batch",
                                                 f"--model_dir={model_dir}", folder, "--output_dir=batch1",
                                                 "--workers=1"],
        "detect-batch --workers=2 (processes)": [args.beam_python, "-m", "keras_retina.cli", "detect-batch",
                                                 f"--model_dir={model_dir}", folder, "--output_dir=batch2",
                                                 "--workers=2"],
    }
    runs = {name: [] for name in commands}
    for _ in range(2):
        for name, command in commands.items():
            for out in ("predict", "batch1", "batch2"):
                shutil.rmtree(os.path.join(work, out), ignore_errors=True)
            runs[name].append(_measure(command, work))
            print(name, runs[name][-1], flush=True)
    compare = [[name, f"{min(r[0] for r in rows):.1f}", f"{args.compare / min(r[0] for r in rows):.0f}",
                f"{max(r[1] for r in rows):.0f}", f"{max(r[2] for r in rows):.0f}"] for name, rows in runs.items()]
    growth, figures = [], {"compare": runs, "growth": {}}
    for count in [int(c) for c in args.counts.split(",")]:
        folder = _pictures(count)
        shutil.rmtree(os.path.join(work, "grow"), ignore_errors=True)
        measured = _measure([args.beam_python, "-m", "keras_retina.cli", "detect-batch", f"--model_dir={model_dir}",
                             folder, "--output_dir=grow", "--workers=2"], work)
        figures["growth"][count] = measured
        print(count, measured, flush=True)
        growth.append([f"{count:,}", f"{measured[0]:.0f}", f"{count / measured[0]:.0f}", f"{measured[1]:.0f}",
                       f"{measured[2]:.0f}"])
    columns = ["command", "seconds", "pictures/s", "peak MB, its process", "peak MB, with its workers"]
    results.write("batch_detection", "Batch detection on Beam's local runner",
                  __doc__.split("\n\n", 2)[2].split("Writes benchmarks")[0].strip(),
                  [{"caption": f"{args.compare:,} pictures, the best of two runs each", "columns": columns,
                    "rows": compare},
                   {"caption": "detect-batch --workers=2 from 1,000 to 100,000 pictures",
                    "columns": ["pictures"] + columns[1:], "rows": growth}],
                  figures=figures, page="docs/scale.md")


if __name__ == "__main__":
    main()
