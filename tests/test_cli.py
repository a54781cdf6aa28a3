"""The `keras_retina` command end to end, as a user runs it (subprocesses)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import TINY_FLAGS, assert_same_final_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, cwd, env=None, timeout=600):
    full_env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "keras_retina.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def _data_flags(coco, val=True):
    flags = [f"--train_annotations={coco['train'][0]}", f"--train_images={coco['train'][1]}"]
    if val:
        flags += [f"--val_annotations={coco['val'][0]}", f"--val_images={coco['val'][1]}"]
    return flags


@pytest.mark.parametrize("args,message", [
    (["train", "--image_size=100"], "--image_size=100: --image_size must be a multiple of 32"),
    (["train", "--strategy=gpu_cluster"], "--strategy"),
    (["train", "--lr_boundaries=80,60"], "--lr_boundaries"),
    (["train", "--train_steps=50", "--lr_boundaries=60"], "below --train_steps"),
    (["train", "--model_dir=run"], "exactly one training source"),
    (["train", "--model_dir=run", "--train_annotations=missing.json", "--train_images=."], "missing.json"),
    (["evaluate"], "--model_dir is required"),
    (["fit"], "usage: keras_retina"),
    (["train", "--flagfile=nowhere.flags"], "--flagfile=nowhere.flags: no such file"),
    (["train", "--freeze_backbone_at=6"], "--freeze_backbone_at"),
    (["train", "--backbone=tiny", "--freeze_backbone_at=2"], "--freeze_backbone_at needs a ResNet"),
])
def test_bad_flags_are_rejected_before_any_work(tmp_path, args, message):
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()


def test_train_evaluate_check_data(tmp_path, tiny_coco):
    # A flagfile that includes another, as configs/r101.flags includes r50.flags.
    (tmp_path / "base.flags").write_text("\n".join(TINY_FLAGS) + "\n")
    (tmp_path / "run.flags").write_text("--flagfile=base.flags\n--model_dir=run\n--train_steps=8\n"
                                        "--checkpoint_every_steps=4\n--eval_every_steps=4\n")
    result = _cli("train", "--flagfile=run.flags", *_data_flags(tiny_coco), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Anchor coverage" in result.stdout and "[eval] step 4" in result.stdout
    assert "Trained 8 steps at batch 4" in result.stdout and "AP50" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 8 and "AP" in summary["metrics"]

    result = _cli("evaluate", "--model_dir=run", cwd=tmp_path)  # finds its val data in config.json
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AR100" in result.stdout and "ckpt-8" in result.stdout
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics-8.json").read_text())
    assert metrics["AP"] == pytest.approx(summary["metrics"]["AP"], abs=1e-6)

    result = _cli("check-data", "--image_size=64", *_data_flags(tiny_coco), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Anchor coverage") == 2  # train and val


def test_resume_after_the_process_is_killed(tmp_path, tiny_coco):
    args = ["train", *TINY_FLAGS, "--model_dir=run", "--train_steps=60",
            "--checkpoint_every_steps=5", *_data_flags(tiny_coco, val=False)]
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen([sys.executable, "-m", "keras_retina.cli", *args], cwd=tmp_path,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = tmp_path / "run" / "checkpoints" / "checkpoint"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and _latest_step(index) < 10:
        time.sleep(0.005)  # a checkpoint interval of this tiny model is ~0.15 s
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "run" / "summary.json").exists()

    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    resumed_at = int(result.stdout.split("Resuming from")[1].split("at step ")[1].split()[0])
    assert resumed_at >= 10 and resumed_at % 5 == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 60


def _latest_step(index):
    """The step of the latest checkpoint in a CheckpointManager folder's index file (0: none)."""
    found = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', index.read_text(), re.M) if index.exists() else None
    return int(found.group(1)) if found else 0


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_on_two_local_processes(tmp_path, tiny_coco):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    args = ["train", *TINY_FLAGS, "--model_dir=run", "--strategy=multi_worker", "--train_steps=6",
            "--checkpoint_every_steps=3", "--eval_every_steps=3", *_data_flags(tiny_coco)]
    processes = []
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen([sys.executable, "-m", "keras_retina.cli", *args], cwd=tmp_path,
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert all("on 2 replica(s)" in out for out in outputs)
    # Synchronous training: both workers log the same losses; only the chief evaluates and saves.
    losses = [re.findall(r"step - (box_loss: .*)", out) for out in outputs]
    assert len(losses[0]) == 2 and losses[0] == losses[1]
    assert "[eval] step 6" in outputs[0] and "[eval]" not in outputs[1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 6 and "AP" in summary["metrics"]


@pytest.mark.parametrize("config,size", [("r50", "640"), ("r50_800", "800"), ("r101", "800")])
def test_shipped_coco_flagfiles_parse_and_run_on_own_data(tmp_path, tiny_coco, config, size):
    """The README's own-data recipe: a COCO flagfile with the TFDS source swapped for COCO JSON."""
    # From another folder: the flagfile and its include come from the installed configs.
    result = _cli("check-data", f"--flagfile=configs/{config}.flags", "--tfds_name=",
                  *_data_flags(tiny_coco), "--max_images=4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"image_size={size}" in result.stdout


def test_killed_again_and_again_deterministic_run_ends_with_the_same_weights(tmp_path, tiny_coco):
    """SIGKILL at random moments, three times, rerunning the same command each time: the run
    ends at the same final step, and with --deterministic its weights equal an uninterrupted
    run's exactly."""
    import random

    args = ["train", *TINY_FLAGS, "--train_steps=45", "--checkpoint_every_steps=3", "--deterministic",
            "--scale_min=0.8", "--scale_max=1.2", *_data_flags(tiny_coco, val=False)]
    result = _cli(*args, "--model_dir=straight", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    index = tmp_path / "killed" / "checkpoints" / "checkpoint"
    rng = random.Random(6)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen([sys.executable, "-m", "keras_retina.cli", *args, "--model_dir=killed"],
                                   cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The moment is measured in checkpoint intervals, not seconds (an interval of this tiny model
        # is ~0.1 s here and would be shorter on a faster machine): wait for two new checkpoints,
        # then kill somewhere within the next interval, sometimes in the middle of writing one.
        seen = [(_latest_step(index), time.time())]
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None and len(seen) < 3:
            step = _latest_step(index)
            if step > seen[-1][0]:
                seen.append((step, time.time()))
            time.sleep(0.005)
        if process.poll() is None:
            time.sleep(rng.uniform(0.0, 1.0) * (seen[-1][1] - seen[-2][1]))
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()
    assert kills == 3, "training ran to the end before it could be killed three times"
    result = _cli(*args, "--model_dir=killed", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "killed" / "summary.json").read_text())["steps"] == 45
    assert_same_final_weights(tmp_path / "straight", tmp_path / "killed", "ckpt-39")


KILL_DURING_SAVE = """
import os, signal, sys
import tensorflow as tf
from keras_retina import cli

original = tf.train.Checkpoint._write  # what CheckpointManager.save calls
saves = []

def write(self, file_prefix, options=None):
    saves.append(file_prefix)
    if len(saves) == 3:  # the third checkpoint: data written, then cut short; the index not updated
        options.experimental_write_callbacks = None  # CheckpointManager's index update
        path = original(self, file_prefix, options=options)
        data = path + ".data-00000-of-00001"
        with open(data, "r+b") as f:
            f.truncate(os.path.getsize(data) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, file_prefix, options=options)

tf.train.Checkpoint._write = write
sys.argv = ["keras_retina"] + sys.argv[1:]
cli.run()
"""


def test_kill_while_a_checkpoint_is_written_leaves_the_latest_readable(tmp_path, tiny_coco):
    import tensorflow as tf

    args = ["train", *TINY_FLAGS, "--model_dir=run", "--train_steps=12", "--checkpoint_every_steps=3",
            *_data_flags(tiny_coco, val=False)]
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    latest = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert latest.endswith("ckpt-6")  # the half-written ckpt-9 never became "latest"
    assert len(tf.train.load_checkpoint(latest).get_variable_to_shape_map()) > 20  # and ckpt-6 reads
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stdout and "ckpt-6 at step 6" in result.stdout
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 12
