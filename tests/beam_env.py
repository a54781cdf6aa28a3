"""The Apache Beam environment the batch pipelines' tests run `keras_retina` in.

Beam pins numpy, protobuf and pyarrow below what the test environment holds, so the pipelines run
in an environment of their own, installed as the README says (`pip install "keras-retina[beam]"`):
its python is $KERAS_RETINA_BEAM_PYTHON, which `.ci/run` makes; there the tests never skip.
"""

import os
import subprocess

import pytest

from conftest import REPO

BEAM = os.environ.get("KERAS_RETINA_BEAM_PYTHON")
needs_beam = pytest.mark.skipif(not BEAM and os.environ.get("CI") != "true",
                                reason="no Beam environment ($KERAS_RETINA_BEAM_PYTHON)")


def run_beam(*args, cwd, wait=True, store=None):
    """`keras_retina ARGS` in the Beam environment: a CompletedProcess, or with wait=False the
    running Popen (its own process group, for a kill). With `store` (a folder), the command also
    reads and writes store:// URIs, objects kept in that folder (tests/object_store.py)."""
    assert BEAM, "CI makes the Beam environment: $KERAS_RETINA_BEAM_PYTHON is unset"
    command = [BEAM, "-m", "keras_retina.cli", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if store is not None:
        command[1:3] = [os.path.join(REPO, "tests", "object_store.py")]
        env["KERAS_RETINA_TEST_STORE"] = str(store)
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def run_beam_python(script, *args):
    """`python -c SCRIPT ARGS` in the Beam environment (keras_retina importable): its stdout; fails on an error."""
    assert BEAM, "CI makes the Beam environment: $KERAS_RETINA_BEAM_PYTHON is unset"
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([BEAM, "-c", script, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout
