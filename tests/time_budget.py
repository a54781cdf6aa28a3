"""The suite's time budget, shown and never asserted (machines differ; a slow machine is no failure).

At the end of every run pytest prints the ten slowest tests (setup, call and teardown added up;
a module or session fixture's build counts towards the first test that uses it) and one
`TIME BUDGET WARNING` line for the whole run or for any test past its budget:

    KERAS_RETINA_SUITE_BUDGET  seconds for the whole run, wall clock (default 720: 12 minutes)
    KERAS_RETINA_TEST_BUDGET   seconds for one test (default 120)

Beside its wall clock each test's CPU time is kept (this process's and its subprocesses', all
threads): on a machine whose cores are all busy (two pytest-xdist workers on two cores) a test's
wall clock depends on what the other worker runs at the same time; its CPU time does not, and
what the suite needs in all is the CPU time it spends. The ten largest are printed too, and each
test's CPU seconds go to the JUnit XML as its `cpu_seconds` property.

`benchmarks/test_durations.py` keeps a whole run's durations as a results file (docs/testing.md).
"""

import os
import resource
import time

import pytest

_SUITE_BUDGET = float(os.environ.get("KERAS_RETINA_SUITE_BUDGET", 720))
_TEST_BUDGET = float(os.environ.get("KERAS_RETINA_TEST_BUDGET", 120))
_durations = {}  # test id -> seconds
_cpu = {}  # test id -> CPU seconds
_started = []


def _cpu_seconds():
    """CPU seconds used so far by this process (every thread) and its finished subprocesses."""
    return sum(usage.ru_utime + usage.ru_stime for usage in
               (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)))


def pytest_sessionstart(session):
    _started.append(time.monotonic())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item._cpu_mark, item._cpu_total = _cpu_seconds(), 0.0
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report (setup, call, teardown) carries the CPU seconds of its phase; the test's
    total goes to its `cpu_seconds` property (JUnit XML) with the teardown."""
    outcome = yield
    now = _cpu_seconds()
    report = outcome.get_result()
    report.cpu_seconds = now - item._cpu_mark
    item._cpu_mark, item._cpu_total = now, item._cpu_total + report.cpu_seconds
    if call.when == "teardown":
        report.user_properties.append(("cpu_seconds", round(item._cpu_total, 2)))


def pytest_runtest_logreport(report):
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration
    cpu = getattr(report, "cpu_seconds", None)
    if cpu is not None:
        _cpu[report.nodeid] = _cpu.get(report.nodeid, 0.0) + cpu


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
    if _cpu:
        write(f"{sum(_cpu.values()):.0f} CPU seconds in all; the ten largest:")
        for name, seconds in sorted(_cpu.items(), key=lambda item: -item[1])[:10]:
            write(f"{seconds:8.1f} s  {name}")
    if wall > _SUITE_BUDGET:
        write(f"TIME BUDGET WARNING: the run took {wall:.0f} s, past its {_SUITE_BUDGET:.0f} s budget.")
    over = [(name, seconds) for name, seconds in slowest if seconds > _TEST_BUDGET]
    if over:
        write(f"TIME BUDGET WARNING: {len(over)} test(s) past the {_TEST_BUDGET:.0f} s budget of one test: "
              + ", ".join(f"{name} ({seconds:.0f} s)" for name, seconds in over))
