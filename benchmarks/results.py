"""Benchmark results kept as data: one JSON document per benchmark in benchmarks/results/.

    {"benchmark": name, "title": the section's heading, "description": what was measured and how,
     "date": "YYYY-MM-DD", "command": the command line that made it,
     "machine": {"cpu", "cores", "flags": [the instruction-set flags that decide speed], "memory_gib"},
     "versions": {"python", "tensorflow", "keras", ...},
     "source": how the figures were obtained (a run of the command, or where they were transcribed from),
     "tables": [{"caption", "columns": [...], "rows": [[...], ...]}], "notes": [sentences with figures],
     "figures": {...: the raw measurements}, "readme": optional line for README.md's results block,
     "page": optional, the documentation page its section is rendered into instead of docs/benchmarks.md}

`write(name, ...)` records a run of the calling script; `docs/benchmarks.md` is rendered from
these files by `render.py` (CI checks that the rendered page is current).
"""

import datetime
import importlib.metadata
import json
import os
import platform
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
         "amx_bf16", "amx_int8", "amx_tile")
PACKAGES = ("tensorflow", "keras", "keras-retina", "keras-hub", "tf-models-official", "ai-edge-litert",
            "onnxruntime", "tf2onnx", "torch", "torchvision", "pycocotools", "numpy")


def machine():
    """The CPU's name, its speed-deciding instruction-set flags, cores and memory (Linux)."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in ("", platform.machine(), platform.processor()):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "flags": [f for f in FLAGS if f in flags],
            "memory_gib": round(memory, 1) if memory else None}


def versions():
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def write(name, title, description, tables, notes=(), figures=None, readme=None, command=None,
          source="a run of the command", page=None):
    """Writes results/<name>.json for this run (module docstring); returns its path."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), os.path.dirname(os.path.dirname(RESULTS)))
    command = command or " ".join(["python", script] + sys.argv[1:])
    document = {"benchmark": name, "title": title, "description": description,
                "date": datetime.date.today().isoformat(), "command": command, "machine": machine(),
                "versions": versions(), "source": source, "tables": list(tables), "notes": list(notes),
                "figures": figures or {}}
    if readme:
        document["readme"] = readme
    if page:
        document["page"] = page
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1)
        f.write("\n")
    print(f"Results written to {path}")
    return path


def read_all():
    """{name: document} of every results file."""
    documents = {}
    for entry in sorted(os.listdir(RESULTS)):
        if entry.endswith(".json"):
            with open(os.path.join(RESULTS, entry), encoding="utf-8") as f:
                documents[entry[:-5]] = json.load(f)
    return documents
