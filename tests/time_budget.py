"""The suite's time budget, shown and never asserted (machines differ; a slow machine is no failure).

At the end of every run pytest prints the ten slowest tests (setup, call and teardown added up;
a module or session fixture's build counts towards the first test that uses it) and one
`TIME BUDGET WARNING` line for the whole run or for any test past its budget:

    KERAS_RETINA_SUITE_BUDGET  seconds for the whole run, wall clock (default 720: 12 minutes)
    KERAS_RETINA_TEST_BUDGET   seconds for one test (default 120)

`benchmarks/test_durations.py` keeps a whole run's durations as a results file (docs/testing.md).
"""

import os
import time

_SUITE_BUDGET = float(os.environ.get("KERAS_RETINA_SUITE_BUDGET", 720))
_TEST_BUDGET = float(os.environ.get("KERAS_RETINA_TEST_BUDGET", 120))
_durations = {}  # test id -> seconds
_started = []


def pytest_sessionstart(session):
    _started.append(time.monotonic())


def pytest_runtest_logreport(report):
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not _durations or not _started:
        return
    write = terminalreporter.write_line
    wall = time.monotonic() - _started[0]
    slowest = sorted(_durations.items(), key=lambda item: -item[1])
    terminalreporter.section("time budget")
    write(f"{len(_durations)} tests in {wall:.0f} s wall clock ({sum(_durations.values()):.0f} s of test time); "
          f"budget {_SUITE_BUDGET:.0f} s for the run, {_TEST_BUDGET:.0f} s a test. The ten slowest:")
    for name, seconds in slowest[:10]:
        write(f"{seconds:8.1f} s  {name}")
    if wall > _SUITE_BUDGET:
        write(f"TIME BUDGET WARNING: the run took {wall:.0f} s, past its {_SUITE_BUDGET:.0f} s budget.")
    over = [(name, seconds) for name, seconds in slowest if seconds > _TEST_BUDGET]
    if over:
        write(f"TIME BUDGET WARNING: {len(over)} test(s) past the {_TEST_BUDGET:.0f} s budget of one test: "
              + ", ".join(f"{name} ({seconds:.0f} s)" for name, seconds in over))
