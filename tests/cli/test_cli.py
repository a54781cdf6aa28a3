"""The `keras_retina` command end to end, as a user runs it: in this process where that proves the same,
real subprocesses where the process is the point (the launcher, kills, a two-process cluster)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_retina.model_dir import ModelDir
from keras_retina.modeling import precision

from command_line import keras_retina
from conftest import REPO, TINY_FLAGS, assert_same_final_weights, checkpoint_values, make_tiny_model_dir
from dirty_data import DIRTY_RECORDS_COUNTS, dirty_records, jpeg, scene, write_corpus, write_tfrecord


def _data_flags(coco, val=True):
    flags = [f"--train_annotations={coco['train'][0]}", f"--train_images={coco['train'][1]}"]
    if val:
        flags += [f"--val_annotations={coco['val'][0]}", f"--val_images={coco['val'][1]}"]
    return flags


@pytest.mark.parametrize("args,message", [
    (["train", "--image_size=0"], "--image_size=0: --image_size must be a positive int"),
    (["train", "--image_size=100", "--resize=square", "--demo_data=d"], "image_size=100: with resize=square each side "
     "must be a positive multiple of 32"),
    (["train", "--image_size=800", "--max_image_size=600", "--demo_data=d"], "max_image_size=600 is below"),
    (["train", "--strategy=gpu_cluster"], "--strategy"),
    (["train", "--lr_boundaries=80,60"], "--lr_boundaries"),
    (["train", "--train_steps=50", "--lr_boundaries=60"], "must be below train_steps=50"),
    (["train", "--model_dir=run"], "exactly one training source"),
    (["train", "--model_dir=run", "--train_annotations=missing.json", "--train_images=."], "missing.json"),
    (["evaluate"], "--model_dir is required"),
    (["fit"], "usage: keras_retina"),
    (["train", "--flagfile=nowhere.flags"], "--flagfile=nowhere.flags: no such file"),
    (["train", "--freeze_backbone_at=6"], "--freeze_backbone_at"),
    (["train", "--backbone=tiny", "--freeze_backbone_at=2"], "freeze_backbone_at=2: only ResNet backbones"),
    (["export", "--model_dir=run"], "export needs --model_dir (the trained model) and --export_dir"),
    (["evaluate", "--model_dir=run"], "--model_dir=run: no config.json"),
    (["train", "--backbone=tiny", "--backbone_weights=imagenet"], "backbone='tiny' has no ImageNet weights"),
    (["train", "--classification_loss=focal_star", "--focal_gamma=0"], "FL* needs a gamma above 0"),
    (["train", "--box_loss_type=giou", "--box_loss_weight=-1"], "--box_loss_weight=-1"),
    (["evaluate", "--model_dir=run", "--box_voting_sigma=-1"], "--box_voting_sigma=-1"),
    (["train", "--demo_data=d", "--model_dir=run", "--backbone=tiny", "--backbone_weights=nowhere.h5"],
     "backbone_weights='nowhere.h5': no such weights file"),
    (["train", "--flagfile=configs/demo.flags", "--model_dir=run", "--train_annotations=mine.json", "--train_images=."],
     "--demo_data=demo_data and --train_annotations=mine.json name different data sources"),
])
def test_bad_flags_are_rejected_before_any_work(tmp_path, args, message):
    result = keras_retina(*args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert message in result.stderr + result.stdout and "FATAL" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_help_lists_the_commands_and_each_commands_flags_without_tensorflow_noise(tmp_path):
    """Through the installed `keras_retina` launcher, as a user runs it."""
    command = shutil.which("keras_retina", path=os.path.dirname(sys.executable))
    assert command, "pip install -e . installs the keras_retina command next to python"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}

    def run(*args):
        return subprocess.run([command, *args], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)

    result = run("--help")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    for name in ("train", "evaluate", "check-data", "export", "predict"):
        assert re.search(rf"^  {name} +\S", result.stdout, re.M), name
    assert "keras_retina train --flagfile=configs/demo.flags" in result.stdout
    result = run("train", "--help")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    groups = re.findall(r"^(\S[^:]*):$", result.stdout, re.M)
    assert groups == ["run folder and reports", "data (exactly one training source)", "model (the paper's defaults)",
                      "training (the paper's recipe by default)", "export and postprocessing"]
    assert "  --focal_alpha=\n      Focal loss alpha (default: 0.25, the paper's; 0.75 for varifocal" in result.stdout
    assert "  --lr_boundaries=60000,80000\n" in result.stdout
    result = run("export", "--help")
    assert "--export_dir" in result.stdout and "--focal_alpha" not in result.stdout
    result = run("evaluate", "--model_dir=nowhere")  # TensorFlow runs, yet prints nothing of its own
    assert result.returncode == 2 and result.stderr.strip() == (
        "keras_retina evaluate: error: --model_dir=nowhere: no config.json; is this a keras_retina model_dir?")


@pytest.mark.parametrize("kind,where", [("os", "run/eval/metrics-8.json"), ("tf", "run/checkpoints/ckpt-9_temp")])
def test_a_full_disk_is_one_line(tmp_path, monkeypatch, kind, where):
    import errno

    import tensorflow as tf

    from keras_retina.cli import evaluate

    def run(configs, options, args):
        if kind == "tf":  # what TensorFlow's checkpoint and event writers raise
            raise tf.errors.ResourceExhaustedError(None, None, "run/checkpoints/ckpt-9_temp; No space left on device")
        raise OSError(errno.ENOSPC, "No space left on device", "run/eval/metrics-8.json")

    monkeypatch.setattr(evaluate, "run", run)
    result = keras_retina("evaluate", "--model_dir=run", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"the disk is full ({where}" in result.stderr


def test_a_bug_keeps_its_traceback_and_a_data_error_is_one_line(tmp_path, monkeypatch):
    from keras_retina.cli import evaluate, main

    result = keras_retina("evaluate", "--model_dir=run", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("keras_retina evaluate: error: --model_dir=run")

    def run(configs, options, args):
        return {}["a bug"]

    monkeypatch.setattr(evaluate, "run", run)
    with pytest.raises(KeyError, match="a bug"):  # not caught: the interpreter prints its traceback
        main.run(["evaluate", "--model_dir=run"])


def test_train_evaluate_check_data(tmp_path, tiny_coco):
    # A flagfile that includes another, as configs/r101.flags includes r50.flags.
    (tmp_path / "base.flags").write_text("\n".join(TINY_FLAGS) + "\n")
    (tmp_path / "run.flags").write_text("--flagfile=base.flags\n--model_dir=run\n--train_steps=8\n"
                                        "--checkpoint_every_steps=4\n--eval_every_steps=4\n")
    result = keras_retina("train", "--flagfile=run.flags", *_data_flags(tiny_coco), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Anchor coverage" in result.stdout and "[eval] step 4" in result.stdout
    assert "Trained 8 steps at batch 4" in result.stdout and "AP50" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 8 and "AP" in summary["metrics"]

    result = keras_retina("evaluate", "--model_dir=run", cwd=tmp_path)  # finds its val data in config.json
    assert result.returncode == 0, result.stderr[-3000:]
    best = summary["best"]["step"]  # 4 or 8: evaluate takes the best checkpoint
    assert "AR100" in result.stdout and f"ckpt-{best}" in result.stdout
    metrics = json.loads((tmp_path / "run" / "eval" / f"metrics-best-{best}.json").read_text())
    assert metrics["AP"] == pytest.approx(summary["best"]["metrics"]["AP"], abs=1e-6)
    page = tmp_path / result.stdout.split("worst pictures): ")[1].split()[0]  # the report, beside its metrics
    assert page.name == "index.html" and page.parent.name == f"metrics-best-{best}_report" and page.is_file()
    report = json.loads(open(os.path.join(os.path.dirname(page), "report.json")).read())
    assert report["metrics"]["AP"] == pytest.approx(metrics["AP"], abs=1e-6)
    assert len(report["classes"]) == 3 and report["num_images"] == 8 and summary["report"].endswith("index.html")

    # the postprocessing an export would fix, measured first: one detection a picture, score voting
    # (of the latest checkpoint: written beside training's own evaluation of that step, never over it)
    result = keras_retina("evaluate", "--model_dir=run", "--max_detections=1", "--box_voting_sigma=0.025",
                          "--report=false", "--checkpoint=latest", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    eval_dir = tmp_path / "run" / "eval"
    one = json.loads((eval_dir / f"metrics-{summary['steps']}-box_voting_sigma0.025-max_detections1.json").read_text())
    assert one["postprocess"] == {"max_detections": 1, "box_voting_sigma": 0.025} and one["AR100"] == one["AR1"]
    assert "postprocess" not in json.loads((eval_dir / f"metrics-{summary['steps']}.json").read_text())

    result = keras_retina("check-data", "--image_size=64", *_data_flags(tiny_coco), "--output=counts.json",
                          "--model_dir=run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Anchor coverage") == 2  # train and val
    counts = json.loads((tmp_path / "counts.json").read_text())
    for split in ("train", "val"):  # the counts against the annotation files themselves
        coco = json.loads(open(tiny_coco[split][0]).read())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        row = counts["splits"][split]
        assert (row["pictures"], row["boxes"], row["problems"]) == (len(coco["images"]), len(coco["annotations"]), 0)
        assert {n: v["boxes"] for n, v in row["per_class"].items()} == {
            n: sum(a["category_id"] == i for a in coco["annotations"]) for i, n in names.items()}
        assert f"[{split}] {row['pictures']} pictures (" in result.stdout
        assert row["anchor_coverage"]["small"]["boxes"] + row["anchor_coverage"]["medium"]["boxes"] + row[
            "anchor_coverage"]["large"]["boxes"] == row["boxes"]
    assert counts["leakage"]["pictures"] == 24 and "[leakage] 24 pictures: no copies" in result.stdout
    unlabelled = counts["splits"]["train"]["label_checks"]["unlabelled"]  # the trained run's detections
    assert unlabelled["pictures_checked"] == 16 and "[train] the model's confident detections (" in result.stdout


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

    result = keras_retina(*args, cwd=tmp_path)
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
    # the chief alone keeps the best checkpoint, as on one machine
    best = summary["best"]["step"]
    assert best in (3, 6) and summary["best"]["checkpoint"].endswith(f"ckpt-{best}")
    assert (tmp_path / "run" / "best" / f"metrics-{best}.json").is_file()

    # A rescheduled worker that lost its temporary folder: every worker resumes from the chief's
    # checkpoint, so both run steps 7-9 together and end with equal weights. With
    # --mixed_precision=auto, each worker's own measurement (its cache: bfloat16 at half float32's
    # time on one, 1.1x on the other) is averaged across the cluster: both run bfloat16.
    key = precision.measurement_key(precision.network_shape(ModelDir(str(tmp_path / "run")).model_config()),
                                    "training", batch=2)  # --batch_size=4 over the two workers
    processes = []
    for index, ratio in enumerate((0.5, 1.1)):
        precision.write_measurement(key, {"float32": 1.0, "bfloat16": ratio}, str(tmp_path / f"home{index}/precision"))
    shutil.rmtree(tmp_path / "run" / "tmp" / "worker_1")
    for index in range(2):
        env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
               "KERAS_RETINA_HOME": str(tmp_path / f"home{index}"),
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen([sys.executable, "-m", "keras_retina.cli", *args, "--train_steps=9",
                                           "--mixed_precision=auto"], cwd=tmp_path, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert all(re.search(r"Resuming from \S*run/checkpoints/ckpt-6 at step 6", out) for out in outputs), outputs
    assert "bfloat16 measured 1.35x faster" in outputs[0] and "bfloat16 measured 1.35x faster" in outputs[1]
    assert all("--mixed_precision=auto: bfloat16 for training" in out and "cached" in out for out in outputs)
    chief = checkpoint_values(tmp_path / "run")
    worker = checkpoint_values(tmp_path / "run" / "tmp" / "worker_1")
    different = [name for name in chief if not np.array_equal(chief[name], worker[name])]
    assert chief.keys() == worker.keys() and not different, different[:5]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 9


def test_a_killed_worker_stops_the_other_with_a_clear_message_and_both_resume(tmp_path, tiny_coco):
    """A worker SIGKILLed mid-run: the other stops within a bounded time (its collective ops abort when
    the connection closes) with one line saying what to do, exit status 4; the same command on both
    resumes from the chief's checkpoint and finishes."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    args = ["train", *TINY_FLAGS, "--model_dir=run", "--strategy=multi_worker", "--checkpoint_every_steps=5",
            "--eval_every_steps=1000", *_data_flags(tiny_coco)]

    def start(steps):
        return [subprocess.Popen([sys.executable, "-m", "keras_retina.cli", *args, f"--train_steps={steps}"],
                                 cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
                                      "TF_CONFIG": json.dumps({"cluster": cluster,
                                                               "task": {"type": "worker", "index": index}})})
                for index in range(2)]

    chief, worker = start(2000)
    index = tmp_path / "run" / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 300
    while not index.exists() and time.monotonic() < deadline and chief.poll() is None:
        time.sleep(0.2)
    assert index.exists(), chief.communicate()[0][-3000:]
    worker.kill()
    worker.wait()
    killed_at = time.monotonic()
    output = chief.communicate(timeout=120)[0]
    assert time.monotonic() - killed_at < 60  # no hang: TensorFlow closes the collective ops
    assert chief.returncode == 4, output[-3000:]
    last = output.strip().splitlines()[-1]
    assert last.startswith("keras_retina train: error: a worker of the cluster stopped (") and (
        "Run the same command on every worker again: they resume from the chief's checkpoint") in last, last
    step = _latest_step(index)
    assert step >= 5 and f"ckpt-{step}" in last

    outputs = [p.communicate(timeout=600)[0] for p in start(step + 5)]
    assert all(re.search(rf"Resuming from \S*run/checkpoints/ckpt-{step} at step {step}", out) for out in outputs), (
        outputs[0][-2000:] + outputs[1][-2000:])
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == step + 5


@pytest.mark.parametrize("config,size", [("r50", "600"), ("r50_800", "800"), ("r101", "800")])
def test_shipped_coco_flagfiles_parse_and_run_on_own_data(tmp_path, tiny_coco, config, size):
    """The README's own-data recipe: a COCO flagfile with the TFDS source swapped for COCO JSON."""
    # From another folder: the flagfile and its include come from the installed configs.
    result = keras_retina("check-data", f"--flagfile=configs/{config}.flags", "--tfds_name=",
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
    # Every run in its own process, as the killed ones must be, so the runs compared exactly start
    # alike (a fresh TensorFlow: nothing left by the tests before).
    result = keras_retina(*args, "--model_dir=straight", cwd=tmp_path, subprocess=True)
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
    result = keras_retina(*args, "--model_dir=killed", cwd=tmp_path, subprocess=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "killed" / "summary.json").read_text())["steps"] == 45
    assert_same_final_weights(tmp_path / "straight", tmp_path / "killed", "ckpt-39")


KILL_DURING_SAVE = """
import os, signal, sys
import tensorflow as tf
from keras_retina.cli import main

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
main.run()
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
    result = keras_retina(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stdout and "ckpt-6 at step 6" in result.stdout
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 12


def test_cli_on_dirty_tfrecords(tmp_path):
    """Training stops with an error naming the records, or with --skip_bad_examples counts
    skips and drops in the start-of-training report and summary.json; check-data lists them."""
    write_tfrecord(str(tmp_path / "dirty.tfrecord"), dirty_records())
    (tmp_path / "labels.json").write_text(json.dumps([{"id": 1, "name": "a"}]))
    data = ["--train_tfrecord=dirty.tfrecord", "--label_map=labels.json"]
    result = keras_retina("train", *TINY_FLAGS, "--model_dir=run", "--train_steps=2", *data, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "dirty.tfrecord record 0 (source_id 1): box [nan" in result.stderr and "--skip_bad_examples" in result.stderr
    assert "Traceback" not in result.stderr
    result = keras_retina("train", *TINY_FLAGS, "--model_dir=run", "--train_steps=2", "--skip_bad_examples", *data,
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    start = result.stdout.split("Trained")[0]
    assert re.search(r"skipped\s+1 x cannot be decoded.*record 1 \(source_id 2\)", start), start
    assert re.search(r"dropped\s+1 x box with negative size or NaN", start), start
    assert re.search(r"ok\s+1 x box with zero width or height: dropped", start), start
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {kind: v["count"] for kind, v in summary["data"]["train"].items()} == DIRTY_RECORDS_COUNTS

    result = keras_retina("check-data", "--image_size=64", *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"ERROR\s+1 x cannot be decoded", result.stdout), result.stdout
    assert "read and decoded 4 images" in result.stdout  # 7 records, 1 undecodable, 2 sharing an id
    assert "Training on this data stops with an error" in result.stdout


def test_deterministic_tfrecord_training_resumes_to_the_same_weights(tmp_path):
    """--deterministic on a TFRecord source with an undecodable record (--skip_bad_examples):
    6 steps, then the same command to 12 (a resume) ends with an uninterrupted run's weights, on
    two replicas (the process's two logical CPUs: each replica's share of a batch is fixed too)."""
    good = [(10 + i, jpeg(scene(40 + 4 * i, 48, seed=i)), [(0.1, 0.2, 0.6, 0.7)], [1]) for i in range(6)]
    write_tfrecord(str(tmp_path / "train.tfrecord"), dirty_records() + good)
    (tmp_path / "labels.json").write_text(json.dumps([{"id": 1, "name": "a"}]))
    args = ["train", *TINY_FLAGS, "--checkpoint_every_steps=3", "--deterministic", "--skip_bad_examples",
            "--scale_min=0.8", "--scale_max=1.2", "--train_tfrecord=train.tfrecord", "--label_map=labels.json"]
    for run, steps in (("straight", 12), ("resumed", 6), ("resumed", 12)):
        result = keras_retina(*args, f"--train_steps={steps}", f"--model_dir={run}", cwd=tmp_path, two_replicas=True)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "on 2 replica(s)" in result.stdout
    assert "Resuming from" in result.stdout and "at step 6" in result.stdout
    assert_same_final_weights(tmp_path / "straight", tmp_path / "resumed", "ckpt-6")


def test_cli_check_data_and_train_on_the_dirty_corpus(tmp_path):
    ann_path, images_dir, _ = write_corpus(str(tmp_path / "dirty"))
    data = [f"--train_annotations={ann_path}", f"--train_images={images_dir}"]
    result = keras_retina("check-data", "--image_size=64", *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for phrase in ("ERROR", "image file missing", "cannot be decoded", "truncated.png", "duplicate image id",
                   "box entirely outside", "Training on this data stops with an error"):
        assert phrase in result.stdout, phrase

    result = keras_retina("train", *TINY_FLAGS, "--model_dir=run", "--train_steps=3", *data, cwd=tmp_path)
    assert result.returncode == 2
    assert "missing.jpg" in result.stderr and "--skip_bad_examples" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()

    result = keras_retina("train", *TINY_FLAGS, "--model_dir=run", "--train_steps=3", "--skip_bad_examples", *data,
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped" in result.stdout and "Trained 3 steps" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["train"]["missing_file"]["count"] == 1
    assert summary["data"]["train"]["unreadable_image"]["count"] == 4
    assert "skipped or dropped" in result.stdout  # the end-of-training summary says so too


def test_cli_names_a_file_that_only_fails_when_decoded(tiny_coco, tmp_path):
    """A truncated JPEG passes the header check; training stops with its name, not a TF trace."""
    ann_path, images_dir = tiny_coco["train"]
    victim = os.path.join(images_dir, sorted(os.listdir(images_dir))[3])
    with open(victim, "rb") as f:
        whole = f.read()
    with open(victim, "wb") as f:
        f.write(whole[: len(whole) // 2])
    data = [f"--train_annotations={ann_path}", f"--train_images={images_dir}"]
    result = keras_retina("train", *TINY_FLAGS, "--model_dir=run", "--train_steps=8", "--batch_size=16", *data,
                          cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "cannot be decoded" in result.stderr and os.path.basename(victim) in result.stderr
    assert "Traceback" not in result.stderr


def test_postprocessing_flags_reach_their_settings():
    from keras_retina.cli.flags import postprocess_settings
    from keras_retina.modeling.detection_decoder import PostprocessSettings

    flags = {"nms_score_threshold": 0.3, "pre_nms_top_k": 500, "nms_iou_threshold": 0.6, "max_detections": 20,
             "box_voting_sigma": 0.025}
    assert postprocess_settings(flags) == PostprocessSettings(score_threshold=0.3, pre_nms_top_k=500,
                                                              nms_iou_threshold=0.6, max_detections=20,
                                                              box_voting_sigma=0.025)
    assert postprocess_settings({}) == PostprocessSettings()


def test_check_data_with_a_model_of_other_classes(tmp_path, tiny_coco):
    """A model_dir trained on other classes is named, and its detections not compared with these labels."""
    make_tiny_model_dir(tmp_path / "other")  # classes a and b, ids 1 and 2; the data's are 1, 3, 5
    result = keras_retina("check-data", "--image_size=64", *_data_flags(tiny_coco), "--model_dir=other",
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "was trained on other classes than these labels have (id: model / data: 1: a / red_square" in result.stdout
    assert "the model's confident detections" not in result.stdout

def test_own_data_in_voc_yolo_and_csv_through_the_commands(tmp_path, tiny_coco):
    """The same commands as for COCO JSON on a labelImg-style VOC folder with --val_fraction (the
    split written to the model_dir and found again by evaluate), a Roboflow-style data.yaml (its
    val split) and a fizyr CSV; check-data writes the VOC data as COCO JSON."""
    from keras_retina.data import synthetic

    other = synthetic.write_other_formats(tiny_coco, str(tmp_path / "formats"))
    voc = other["voc"]["train"][0]
    result = keras_retina("train", *TINY_FLAGS, "--model_dir=voc_run", "--train_steps=4", "--checkpoint_every_steps=4",
                          f"--train_annotations={voc}", "--val_fraction=0.3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    held_out = json.loads((tmp_path / "voc_run" / "val_split.json").read_text())["validation_pictures"]
    summary = json.loads((tmp_path / "voc_run" / "summary.json").read_text())
    assert held_out and summary["steps"] == 4 and "AP" in summary["metrics"]
    result = keras_retina("evaluate", "--model_dir=voc_run", cwd=tmp_path)  # the same held-out pictures again
    assert result.returncode == 0 and f"on {len(held_out)} images" in result.stdout, result.stderr[-3000:]
    result = keras_retina("export", "--model_dir=voc_run", "--export_dir=serving", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for kind, extra in (("yolo", []), ("csv", [f"--val_annotations={other['csv']['val'][0]}"])):
        result = keras_retina("train", *TINY_FLAGS, f"--model_dir={kind}_run", "--train_steps=2",
                              f"--train_annotations={other[kind]['train'][0]}", *extra, cwd=tmp_path)
        assert result.returncode == 0, (kind, result.stderr[-3000:])
        assert "AP50" in result.stdout, kind
    result = keras_retina("check-data", "--image_size=64", f"--train_annotations={voc}", "--write_coco=voc.json",
                          cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "voc.json").read_text())["annotations"] and "--train_images" in result.stdout
    result = keras_retina("check-data", f"--train_annotations={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2 and "none of" not in result.stderr and "folder without .xml" in result.stderr
