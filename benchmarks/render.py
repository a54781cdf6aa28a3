"""Renders docs/benchmarks.md (and the README's demo figures) from benchmarks/results/*.json.

    python benchmarks/render.py            # writes docs/benchmarks.md, README.md's results block and
                                           # the sections other pages hold
    python benchmarks/render.py --check    # exit 1 when any is not what the results give (CI)

Each results file (`results.py`) becomes a section: its title, what was measured, the machine
(CPU and the instruction-set flags that decide speed), versions, the command that reproduces it,
its tables and notes. Sections follow SECTIONS; a results file not named there goes last. A
results file with a "page" (e.g. the test durations: docs/testing.md) is rendered into that page,
between its `<!-- results-section:NAME -->` and `<!-- /results-section:NAME -->` lines, and not
into docs/benchmarks.md.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "benchmarks.md")
README = os.path.join(ROOT, "README.md")
SECTIONS = ("demo", "square_640", "coco_shapes", "precision_speed_amd_avx512_bf16", "precision_demo_amd_avx512_bf16",
            "precision_detections", "scaling", "profile_640", "memory", "reading_speed", "augment_speed",
            "small_data_recipe", "deploy_latency", "int8_accuracy", "fixed_input_anchors", "conversion_fidelity",
            "fine_tune_vs_scratch", "report_speed", "tiled_detection")
HEADER = """# Benchmarks

Every figure in the documentation, rendered from `benchmarks/results/*.json` by
`python benchmarks/render.py` (do not edit this page by hand; CI checks it is current). Each
section names the machine it ran on: timings from different CPUs are not comparable, and ratios
against a peer are taken in one run with calls interleaved. Rerun a section's command to
refresh its results file, then render again.
"""


def _table(table):
    lines = []
    if table.get("caption"):
        lines += [table["caption"] + ":", ""]
    columns = table["columns"]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in table["rows"]]
    return "\n".join(lines)


def _machine(document):
    machine = document["machine"]
    flags = ", ".join(machine.get("flags") or []) or "none of the listed ones"
    versions = ", ".join(f"{name} {version}" for name, version in document.get("versions", {}).items())
    return (f"Machine: {machine['cpu']}, {machine.get('cores')} cores (flags: {flags}). Versions: {versions}. "
            f"Date: {document['date']}. Source: {document.get('source', 'a run of the command')}.")


def section(document):
    parts = [f"## {document['title']}", ""]
    if document.get("description"):
        parts += [document["description"], ""]
    parts += [f"```bash\n{document['command']}\n```", "", _machine(document), ""]
    for table in document.get("tables", []):
        parts += [_table(table), ""]
    for note in document.get("notes", []):
        parts += [note, ""]
    return "\n".join(parts).rstrip() + "\n"


def render_page(documents):
    documents = {name: document for name, document in documents.items() if not document.get("page")}
    order = [name for name in SECTIONS if name in documents] + sorted(set(documents) - set(SECTIONS))
    return HEADER + "\n" + "\n".join(section(documents[name]) for name in order)


def _fill(text, tag, content):
    """`text` with each `<!-- TAG:NAME -->` ... `<!-- /TAG:NAME -->` block's inside replaced by
    content(NAME) (a string ending in a newline)."""
    out, rest = [], text
    while f"<!-- {tag}:" in rest:
        before, marker = rest.split(f"<!-- {tag}:", 1)
        name = marker.split(" -->", 1)[0]
        end = f"<!-- /{tag}:{name} -->"
        _, after = marker.split(end, 1)
        out += [before, f"<!-- {tag}:{name} -->\n{content(name)}{end}"]
        rest = after
    return "".join(out) + rest


def render_sections(text, documents):
    """A page with its `<!-- results-section:NAME -->` blocks filled with results NAME's section
    (its heading one level down, under the page's own)."""
    return _fill(text, "results-section", lambda name: "#" + section(documents[name]) if name in documents
                 else f"(no results/{name}.json yet)\n")


def render_readme(text, documents):
    """README.md with its `<!-- results:NAME -->` blocks filled from results NAME's "readme" line."""
    return _fill(text, "results", lambda name: (documents[name]["readme"] if name in documents
                                                else f"(no results/{name}.json yet)") + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the rendered files are not current")
    args = parser.parse_args()
    documents = results.read_all()
    with open(README, encoding="utf-8") as f:
        readme = f.read()
    wanted = {PAGE: render_page(documents), README: render_readme(readme, documents)}
    for page in sorted({document["page"] for document in documents.values() if document.get("page")}):
        path = os.path.join(ROOT, page)
        with open(path, encoding="utf-8") as f:
            wanted[path] = render_sections(f.read(), documents)
    stale = []
    for path, text in wanted.items():
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current != text:
            stale.append(os.path.relpath(path, ROOT))
            if not args.check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
    if args.check and stale:
        print(f"{', '.join(stale)} not rendered from benchmarks/results/: run python benchmarks/render.py",
              file=sys.stderr)
        return 1
    print(("rendered " + ", ".join(stale)) if stale else "the rendered pages are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
