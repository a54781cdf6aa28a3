"""The `keras_retina` command as the tests run it.

`keras_retina(*args, cwd=...)` runs one command and returns a `subprocess.CompletedProcess`
(returncode, stdout, stderr as text), the same whichever way it ran:

- in this process (the default): `keras_retina.cli.run(args)` in the folder `cwd`, with `env`'s
  variables set for the call, stdout and stderr captured at the file-descriptor level (so
  TensorFlow's own C++ lines are caught as a subprocess's would be), the exit status taken from
  `SystemExit` and an uncaught exception printed as the interpreter prints it (status 1). The
  command sees the devices a fresh process would: this process has two logical CPUs (conftest, for
  the tests that run two replicas on purpose), a fresh one a single CPU, so `--strategy=mirrored`
  mirrors over the first CPU only (two replicas would trace every training step twice, and train
  differently from the user's command). What a command may leave behind process-wide is reset
  afterwards (the Keras dtype policy, op determinism, the working folder, the environment). This
  saves the seconds of importing TensorFlow per command;
- as a real `python -m keras_retina.cli` process (`subprocess=True`), where the process boundary
  is what the test proves: kills and resumes, signals, TF_CONFIG clusters, TensorFlow's start-up
  output, memory limits.
"""

import contextlib
import os
import subprocess as _subprocess
import sys
import tempfile
import traceback

from conftest import REPO


def keras_retina(*args, cwd, env=None, timeout=900, subprocess=False, two_replicas=False):
    """Runs `keras_retina ARGS` in folder `cwd`. env: extra environment variables for the command;
    timeout: seconds, for a subprocess; subprocess: run it as its own Python process;
    two_replicas: in this process, `--strategy=mirrored` mirrors over both of its logical CPUs."""
    args = [str(a) for a in args]
    if subprocess:
        full_env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        return _subprocess.run([sys.executable, "-m", "keras_retina.cli", *args], cwd=cwd, env=full_env,
                               capture_output=True, text=True, timeout=timeout)
    from keras_retina.cli import main

    with _inside(cwd, env or {}, two_replicas), _captured() as output:
        try:
            main.run(args)
            code = 0
        except SystemExit as end:
            code = _exit_status(end.code)
        except Exception:  # noqa: BLE001 - what the interpreter does with an uncaught exception
            traceback.print_exc()
            code = 1
    return _subprocess.CompletedProcess(["keras_retina", *args], code, output["stdout"], output["stderr"])


def _exit_status(code):
    """sys.exit's argument as the process's exit status (a message: printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def _inside(cwd, env, two_replicas=False):
    """The working folder and environment variables of one command, and afterwards the process-wide
    settings a command may change set back (what a fresh process would start with)."""
    import keras
    from tensorflow.python.distribute import mirrored_strategy
    from tensorflow.python.framework import config as tf_config  # the public API can only enable it

    folder, saved = os.getcwd(), {name: os.environ.get(name) for name in env}
    os.chdir(cwd)
    os.environ.update({name: str(value) for name, value in env.items()})
    every_device = mirrored_strategy.all_local_devices  # MirroredStrategy()'s default devices

    def as_a_fresh_process(num_gpus=None):
        devices = every_device(num_gpus)
        return devices if two_replicas or devices[0].device_type == "GPU" else devices[:1]

    mirrored_strategy.all_local_devices = as_a_fresh_process
    try:
        yield
    finally:
        mirrored_strategy.all_local_devices = every_device
        os.chdir(folder)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        keras.mixed_precision.set_global_policy("float32")
        tf_config.disable_op_determinism()


@contextlib.contextmanager
def _captured():
    """Everything written to stdout and stderr, by Python or by C++ (file descriptors 1 and 2),
    while the block runs: {"stdout": text, "stderr": text} once it has ended."""
    output = {}
    sys.stdout.flush()
    sys.stderr.flush()
    streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = open(1, "w", closefd=False, buffering=1, encoding="utf-8", errors="backslashreplace")
        sys.stderr = open(2, "w", closefd=False, buffering=1, encoding="utf-8", errors="backslashreplace")
        try:
            yield output
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            for name, file in (("stdout", out), ("stderr", err)):
                file.seek(0)
                output[name] = file.read().decode("utf-8", "backslashreplace")
