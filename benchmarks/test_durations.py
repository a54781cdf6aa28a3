"""The test suite's durations as a results file (rendered into docs/testing.md).

    python -m pytest -q tests --junitxml=durations.xml      # the README's test command, plus the XML
    python benchmarks/test_durations.py durations.xml --wall=MINUTES_AND_SECONDS [--workers=N]

Reads pytest's JUnit XML (each test's time is its setup, call and teardown; a shared fixture's
build counts towards the first test that uses it; its CPU seconds, the `cpu_seconds` property
tests/time_budget.py records, count every thread and subprocess) and writes
results/test_durations.json: the slowest 30 tests, the time by package (tests/<package>/), the
collected, passed, skipped and failed counts, and every test's duration in "figures" for
comparisons between runs. With two workers on two cores a test's wall clock depends on what runs
beside it; its CPU seconds do not.
"""

import argparse
import collections
import os
import sys
import xml.etree.ElementTree as ElementTree  # pytest's own output, not a file a user hands us

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402


def read_junit(path):
    """[(test id, seconds, outcome, CPU seconds)] from pytest's JUnit XML; outcome
    passed|skipped|failed."""
    tests = []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        name = f"{module}.py::{case.get('name')}"
        outcome = "passed"
        if case.find("skipped") is not None:
            outcome = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        values = [float(p.get("value")) for p in case.iter("property") if p.get("name") == "cpu_seconds"]
        cpu = sum(values) if values else None  # an XML written without tests/time_budget.py
        tests.append((name, float(case.get("time", 0.0)), outcome, cpu))
    return tests


def package(test_id):
    """tests/modeling/test_anchors.py::x -> "modeling"; top-level test files -> "(top level)"."""
    parts = test_id.split("::")[0].split("/")
    return parts[1] if len(parts) > 2 else "(top level)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("junit_xml")
    parser.add_argument("--wall", required=True, help="the run's wall-clock time, as M:SS")
    parser.add_argument("--workers", type=int, default=1, help="pytest-xdist workers (1: none)")
    parser.add_argument("--command", default="python -m pytest -q tests --junitxml=durations.xml")
    parser.add_argument("--note", action="append", default=[], help="a sentence for the notes (e.g. an earlier run)")
    args = parser.parse_args()
    tests = read_junit(args.junit_xml)
    minutes, seconds = args.wall.split(":")
    wall = int(minutes) * 60 + int(seconds)
    total = sum(test[1] for test in tests)
    measured = all(test[3] is not None for test in tests)  # CPU seconds recorded (tests/time_budget.py)
    cpu_of = lambda cpu, digits: [f"{cpu:.{digits}f}"] if measured else []  # noqa: E731
    cpu_total = sum(test[3] for test in tests) if measured else None
    counts = collections.Counter(test[2] for test in tests)
    by_package = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for name, seconds, _, cpu in tests:
        by_package[package(name)][0] += 1
        by_package[package(name)][1] += seconds
        by_package[package(name)][2] += cpu or 0.0
    slowest = sorted(tests, key=lambda test: -test[1])[:30]
    cpu_column = ["CPU seconds"] if measured else []
    tables = [
        {"caption": "Time by package (tests/<package>/)",
         "columns": ["package", "tests", "seconds", "share", *cpu_column],
         "rows": [[name, count, f"{seconds:.0f}", f"{seconds / total:.0%}", *cpu_of(cpu, 0)]
                  for name, (count, seconds, cpu) in sorted(by_package.items(), key=lambda item: -item[1][1])]},
        {"caption": "The slowest 30 tests (setup + call + teardown)", "columns": ["test", "seconds", *cpu_column],
         "rows": [[f"`{name}`", f"{seconds:.1f}", *cpu_of(cpu, 1)] for name, seconds, _, cpu in slowest]},
    ]
    workers = f"{args.workers} pytest-xdist workers" if args.workers > 1 else "one process"
    cpu_text = f", {cpu_total:.0f} CPU seconds" if measured else ""
    notes = [f"{len(tests)} tests collected: {counts['passed']} passed, {counts['skipped']} skipped, "
             f"{counts['failed']} failed; {wall // 60} min {wall % 60:02d} s wall clock on {workers} "
             f"({total:.0f} s of test time added up{cpu_text})."] + args.note
    figures = {"wall_seconds": wall, "workers": args.workers, "counts": dict(counts),
               "tests": {name: round(seconds, 2) for name, seconds, _, _ in tests}}
    if measured:
        figures.update(cpu_seconds=round(cpu_total), tests_cpu={name: round(cpu, 2) for name, _, _, cpu in tests})
    results.write("test_durations", "Test suite durations",
                  "The README's test command with the extras CI installs (`test` and `torch`); "
                  "installs not counted.", tables, notes=notes, command=args.command,
                  figures=figures,
                  page="docs/testing.md")


if __name__ == "__main__":
    main()
