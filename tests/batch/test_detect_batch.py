"""`keras_retina detect-batch` (Apache Beam, the local runner) against `predict` on the same inputs.

The pipeline runs in the Beam environment (tests/beam_env.py); `predict` runs here. Pictures are
detected one by one in both, tiles and frames in the same batches, so detections agree to float32
rounding (1e-4 pixel, 1e-6 score: the two environments' numpy versions differ). A run killed
mid-way and run again, and a run whose shards were partly written, end with the same files:
nothing lost, nothing twice.
"""

import json
import os
import shutil
import signal
import time

import numpy as np
import pytest
from PIL import Image

from beam_env import needs_beam, run_beam, run_beam_python
from command_line import keras_retina
from conftest import make_tiny_model_dir

pytestmark = needs_beam
av = pytest.importorskip("av")


PICTURES = 240


def _batch(*args, cwd, wait=True, store=None):
    return run_beam("detect-batch", *args, cwd=cwd, wait=wait, store=store)


def _video(path, count=21, options=None):
    with av.open(str(path), mode="w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=10, options={"g": "6"})
        stream.height, stream.width, stream.pix_fmt = 64, 96, "yuv420p"
        rng = np.random.default_rng(1)
        for _ in range(count):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 96, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A tiny model_dir; 240 pictures of three sizes, one that does not decode, a video and one cut short."""
    root = tmp_path_factory.mktemp("archive")
    make_tiny_model_dir(root / "run")
    pictures = root / "pictures"
    pictures.mkdir()
    rng = np.random.default_rng(0)
    for i in range(PICTURES):
        size = ((64, 80), (80, 64), (72, 72))[i % 3]
        Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(pictures / f"p{i:03d}.jpg")
    (pictures / "broken.jpg").write_bytes(b"\xff\xd8 not a picture")
    _video(pictures / "clip.mp4")
    _video(root / "whole.mp4", 30, options={"movflags": "faststart"})  # cut short: predict keeps its first frames
    data = (root / "whole.mp4").read_bytes()
    (pictures / "cut.mp4").write_bytes(data[:int(len(data) * 0.6)])
    large = root / "large"
    large.mkdir()
    Image.fromarray(rng.integers(0, 255, (150, 230, 3), np.uint8)).save(large / "orthophoto.png")
    return root


def _coco(path):
    found = json.loads(open(path).read())
    return sorted(found, key=lambda d: (d["image_id"], -d["score"], d["category_id"], d["bbox"]))


def _assert_same(ours, theirs):
    assert len(ours) == len(theirs) and len(ours) > 0
    for a, b in zip(ours, theirs):
        assert (a["image_id"], a["file_name"], a["category_id"]) == (b["image_id"], b["file_name"], b["category_id"])
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-4)
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)


def _lines(folder, kind):
    return [json.loads(line) for name in sorted(os.listdir(folder)) if name.startswith(f"{kind}-")
            for line in open(os.path.join(folder, name))]


def test_pictures_and_a_video_as_predict_finds_them_with_a_dead_letter(archive, tmp_path):
    predicted = keras_retina("predict", f"--model_dir={archive / 'run'}", archive / "pictures", "--output_dir=predict",
                             "--detect_batch_size=4", cwd=tmp_path)
    assert predicted.returncode == 1  # the broken picture
    result = _batch(f"--model_dir={archive / 'run'}", archive / "pictures", "--output_dir=batch", "--shards=4",
                    "--workers=2", "--detect_batch_size=4", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]  # done, with two inputs failed
    cut = [json.loads(line) for line in open(tmp_path / "predict" / "cut.detections.jsonl")]
    assert 0 < len(cut) < 30
    assert f"{PICTURES + 3} input(s) in 4 shard(s)" in result.stdout
    assert f"{PICTURES} picture(s), 2 video(s) ({21 + len(cut)} frames detected)" in result.stdout, result.stdout
    assert "2 input(s) failed" in result.stdout
    _assert_same(_coco(tmp_path / "batch" / "detections.json"), _coco(tmp_path / "predict" / "detections.json"))
    failures = {f["input"]: f for f in _lines(tmp_path / "batch", "failures")}
    assert sorted(failures) == [str(archive / "pictures" / name) for name in ("broken.jpg", "cut.mp4")]
    assert failures[str(archive / "pictures" / "broken.jpg")]["reason"]
    # predict's words for the cut video (it names the path it was given, here the same)
    assert f"{failures[str(archive / 'pictures' / 'cut.mp4')]['reason']};" in predicted.stderr, predicted.stderr
    for name, frames in (("clip", 21), ("cut", len(cut))):
        ours = [line for line in _lines(tmp_path / "batch", "detections")
                if line.get("video", "").endswith(f"/{name}.mp4")]
        theirs = [json.loads(line) for line in open(tmp_path / "predict" / f"{name}.detections.jsonl")]
        assert [f["frame"] for f in ours] == [v["frame"] for v in theirs] == list(range(frames))
        for a_line, b_line in zip(ours, theirs):
            assert a_line["time"] == b_line["time"] and len(a_line["detections"]) == len(b_line["detections"])
            for a, b in zip(a_line["detections"], b_line["detections"]):
                np.testing.assert_allclose(a["bbox"], b["bbox"], atol=0.011)  # predict's video lines round to 0.01
                assert a["score"] == pytest.approx(b["score"], abs=1e-5) and a["category_id"] == b["category_id"]
    pictures = [line["picture"] for line in _lines(tmp_path / "batch", "detections") if "picture" in line]
    assert len(pictures) == len(set(pictures)) == PICTURES


def test_a_large_picture_by_tiles_as_predict_merges_it(archive, tmp_path):
    flags = ["--tile=64", "--tile_overlap=0.25", "--detect_batch_size=3", "--tile_merge=wbf"]
    predicted = keras_retina("predict", f"--model_dir={archive / 'run'}", archive / "large", "--output_dir=predict",
                             *flags, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    result = _batch(f"--model_dir={archive / 'run'}", f"{archive / 'large'}/*.png", "--output_dir=batch",
                    "--workers=1", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_same(_coco(tmp_path / "batch" / "detections.json"), _coco(tmp_path / "predict" / "detections.json"))
    (line,) = _lines(tmp_path / "batch", "detections")
    assert (line["height"], line["width"]) == (150, 230)


def test_a_killed_run_and_a_half_written_one_end_with_the_same_files(archive, tmp_path):
    flags = [f"--model_dir={archive / 'run'}", archive / "pictures", "--shards=6", "--workers=1"]
    whole = _batch(*flags, "--output_dir=whole", cwd=tmp_path)
    assert whole.returncode == 1, whole.stderr[-3000:]
    expected = {name: (tmp_path / "whole" / name).read_bytes() for name in os.listdir(tmp_path / "whole")}
    assert len([n for n in expected if n.startswith("detections-")]) == 6

    killed = _batch(*flags, "--output_dir=again", cwd=tmp_path, wait=False)  # killed while it detects
    deadline = time.monotonic() + 120
    parts = tmp_path / "again" / "parts"
    while time.monotonic() < deadline and sum(len(files) for _, _, files in os.walk(parts)) < 20:
        time.sleep(0.1)  # killed once some pictures are done, while the rest are detected
    assert killed.poll() is None and not (tmp_path / "again" / "detections.json").exists(), \
        "the run ended before it could be killed mid-way"
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    rerun = _batch(*flags, "--output_dir=again", cwd=tmp_path)
    assert rerun.returncode == 1, rerun.stderr[-3000:]
    assert "work item(s) were done before" in rerun.stdout, rerun.stdout  # resumed item by item
    assert {name: (tmp_path / "again" / name).read_bytes() for name in os.listdir(tmp_path / "again")} == expected

    # A crash between shards: two shards' files gone, one written halfway (its temporary name). The
    # rerun does those two only and ends with the same files.
    for name in ("detections-00001-of-00006.jsonl", "detections-00004-of-00006.jsonl"):
        os.remove(tmp_path / "again" / name)
    (tmp_path / "again" / "detections-00004-of-00006.jsonl.partial-0badf00d").write_text('{"picture": "p')
    resumed = _batch(*flags, "--output_dir=again", cwd=tmp_path)
    assert "4 of 6 shard(s) were finished before: skipped" in resumed.stdout, resumed.stdout
    assert {name: (tmp_path / "again" / name).read_bytes() for name in os.listdir(tmp_path / "again")} == expected

    other = _batch(*flags[:-2], "--shards=3", "--workers=1", "--output_dir=again", cwd=tmp_path)
    assert other.returncode == 2 and "holds a batch run that asked other shards" in other.stderr


# The parts a run killed while it detects leaves in an unfinished shard: each item's result, written
# by outputs.write_part as the pipeline does; argv: output folder, then a JSON list of results.
_CRASHED = """
import json, sys
from keras_retina.batch import outputs
for result in json.loads(sys.argv[2]):
    outputs.write_part(result, sys.argv[1])
"""


def test_a_rerun_keeps_the_items_done_and_tries_the_failed_ones_again(archive, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    for name in ("p000.jpg", "p001.jpg", "p002.jpg"):
        shutil.copy(archive / "pictures" / name, folder / name)
    (folder / "late.jpg").write_bytes(b"\xff\xd8 not all there yet")  # a sync still copying it, say
    flags = [f"--model_dir={archive / 'run'}", folder, "--output_dir=out", "--shards=1", "--workers=1"]
    typo = _batch(f"--model_dir={archive / 'rnu'}", *flags[1:], cwd=tmp_path)  # said before any worker starts
    assert typo.returncode == 2 and "rnu" in typo.stderr and "Traceback" not in typo.stderr, typo.stderr[-3000:]
    first = _batch(*flags, cwd=tmp_path)  # the corrected command, into the same folder
    assert first.returncode == 1 and "1 input(s) failed" in first.stdout, first.stderr[-3000:]
    before = {line["picture"]: line for line in _lines(tmp_path / "out", "detections")}
    assert len(before[str(folder / "p000.jpg")]["detections"]) > 0

    # The state of a crash while it detects: the shard's files not written; p000.jpg's part done (with
    # no detections, so the test sees it is kept, not detected again), late.jpg's part a failure.
    for name in os.listdir(tmp_path / "out"):
        if name.endswith(".jsonl") or name == "detections.json":
            os.remove(tmp_path / "out" / name)
    kept = {"uri": str(folder / "p000.jpg"), "shard": 0, "kind": "picture", "part": 0, "parts": 1, "height": 64,
            "width": 80, "boxes": [], "scores": [], "classes": [], "names": []}
    failed = {"uri": str(folder / "late.jpg"), "shard": 0, "kind": "failed", "part": 0, "parts": 1,
              "error": "not a picture"}
    run_beam_python(_CRASHED, tmp_path / "out", json.dumps([kept, failed]))
    shutil.copy(archive / "pictures" / "p003.jpg", folder / "late.jpg")  # now there whole
    rerun = _batch(*flags, cwd=tmp_path)
    assert rerun.returncode == 0 and "0 input(s) failed" in rerun.stdout, rerun.stderr[-3000:]
    assert "1 work item(s) were done before" in rerun.stdout, rerun.stdout
    after = {line["picture"]: line for line in _lines(tmp_path / "out", "detections")}
    assert after[str(folder / "p000.jpg")]["detections"] == []  # its part was kept: not detected again
    assert len(after[str(folder / "late.jpg")]["detections"]) > 0  # its failure was tried again
    assert after[str(folder / "p001.jpg")] == before[str(folder / "p001.jpg")]
    assert not (tmp_path / "out" / "parts").exists() and not (tmp_path / "out" / "pending_inputs.jsonl").exists()


_RETRIED = """
import json, os, sys
from keras_retina.batch import outputs
out = sys.argv[1]
done = {"uri": "a.jpg", "shard": 0, "kind": "picture", "part": 0, "parts": 1, "height": 4, "width": 4,
        "boxes": [[0.0, 0.0, 2.0, 2.0]], "scores": [0.9], "classes": [1], "names": ["a"]}
failed = {"uri": "a.jpg", "shard": 0, "kind": "failed", "part": 0, "parts": 1, "error": "timed out"}
# A retried item: its first try failed, its second came back; the success counts.
outputs.write_part(failed, out)
outputs.write_part(done, out)
outputs.combine_shard(0, out, 1)
path = os.path.join(out, outputs.shard_name("detections", 0, 1))
written = open(path).read()
assert json.loads(written)["detections"][0]["score"] == 0.9, written
assert open(os.path.join(out, outputs.shard_name("failures", 0, 1))).read() == ""
# A retried bundle that had written this shard finds no parts: the shard stays as it was.
outputs.combine_shard(0, out, 1)
assert open(path).read() == written
print("ok")
"""


def test_a_retried_item_and_a_retried_shard_keep_what_was_done(tmp_path):
    assert run_beam_python(_RETRIED, tmp_path).strip() == "ok"


def _found(folder):
    """{(input's file name, frame or None): detections} and {file name: reason} of a run's shards."""
    found = {(os.path.basename(line.get("picture") or line["video"]), line.get("frame")): line["detections"]
             for line in _lines(folder, "detections")}
    return found, {os.path.basename(f["input"]): f["reason"] for f in _lines(folder, "failures")}


def test_inputs_and_outputs_on_an_object_store_as_on_local_files(archive, tmp_path):
    """store:// is an object store as GCS and S3 are (tests/object_store.py): inputs listed there and
    a local file named by a file:// URI, the run written there, then resumed whole and after a lost
    shard; the same detections as a run on local files."""
    store, local = tmp_path / "store", tmp_path / "photos [2020]"  # a folder whose name reads as a glob
    names = ["p000.jpg", "p001.jpg", "p002.jpg", "p003.jpg", "broken.jpg", "clip.mp4"]
    for name in names:
        for root in (store / "bucket" / "photos", local):
            root.mkdir(parents=True, exist_ok=True)
            shutil.copy(archive / "pictures" / name, root / name)
    shutil.copy(archive / "pictures" / "p004.jpg", local / "p004.jpg")  # named by file:// in both runs
    (store / "bucket" / "list.txt").write_text(f"store://bucket/photos/\nfile://{local / 'p004.jpg'}\n")
    flags = [f"--model_dir={archive / 'run'}", "--shards=2", "--workers=1", "--detect_batch_size=4"]
    ours = _batch(*flags, "--input_list=store://bucket/list.txt", "--output_dir=store://bucket/found", cwd=tmp_path,
                  store=store)
    assert ours.returncode == 1, ours.stderr[-3000:]  # broken.jpg
    assert "7 input(s) in 2 shard(s)" in ours.stdout and "5 picture(s), 1 video(s) (21 frames" in ours.stdout, \
        ours.stdout
    theirs = _batch(*flags, local, f"--output_dir=file://{tmp_path / 'plain'}", cwd=tmp_path)
    assert theirs.returncode == 1, theirs.stderr[-3000:]
    (found, failed), (expected, expected_failed) = _found(store / "bucket" / "found"), _found(tmp_path / "plain")
    assert found.keys() == expected.keys() and len(found) == 5 + 21 and failed.keys() == {"broken.jpg"}
    assert failed["broken.jpg"] == expected_failed["broken.jpg"].replace(str(local), "store://bucket/photos")
    for key, detections in expected.items():
        assert [(d["category_id"], d["name"]) for d in found[key]] == [(d["category_id"], d["name"]) for d in
                                                                      detections]
        for a, b in zip(found[key], detections):
            np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-4)
            assert a["score"] == pytest.approx(b["score"], abs=1e-6)
    written = {path: open(path, "rb").read() for path in (store / "bucket" / "found").rglob("*") if path.is_file()}
    assert {path.name for path in written} == {"batch_run.json", "detections.json", "detections-00000-of-00002.jsonl",
                                              "detections-00001-of-00002.jsonl", "failures-00000-of-00002.jsonl",
                                              "failures-00001-of-00002.jsonl"}  # no part, temporary or work file left
    again = _batch(*flags, "--input_list=store://bucket/list.txt", "--output_dir=store://bucket/found/", cwd=tmp_path,
                   store=store)
    assert "2 of 2 shard(s) were finished before: skipped" in again.stdout, again.stdout
    assert {path: open(path, "rb").read() for path in (store / "bucket" / "found").rglob("*") if path.is_file()} \
        == written
    os.remove(store / "bucket" / "found" / "detections-00001-of-00002.jsonl")  # a crash before that shard ended
    resumed = _batch(*flags, "--input_list=store://bucket/list.txt", "--output_dir=store://bucket/found",
                     cwd=tmp_path, store=store)
    assert "1 of 2 shard(s) were finished before: skipped" in resumed.stdout, resumed.stdout
    assert {path: open(path, "rb").read() for path in (store / "bucket" / "found").rglob("*") if path.is_file()} \
        == written

    # A bucket this machine cannot reach (no network, no credentials): the flag and TensorFlow's words.
    unreachable = _batch("--saved_model=gs://keras-retina-no-such-bucket/serving/1", local, "--output_dir=out",
                         cwd=tmp_path)
    assert unreachable.returncode == 2 and "--saved_model=gs://keras-retina-no-such-bucket/serving/1: " in \
        unreachable.stderr and "Traceback" not in unreachable.stderr, unreachable.stderr[-2000:]
    globbed = _batch(*flags, local, "--output_dir=found[1]", cwd=tmp_path)
    assert globbed.returncode == 2 and "--output_dir=found[1]: a folder whose name holds" in globbed.stderr, \
        globbed.stderr[-2000:]
    # The [beam] extra alone, as CI installs it, has no S3 client.
    s3 = _batch(*flags, "s3://bucket/photos/", "--output_dir=out", cwd=tmp_path)
    assert s3.returncode == 2 and 's3://bucket/photos/: s3:// needs Beam\'s aws extra, which is not installed ' \
        'here: pip install "apache-beam[aws]"' in s3.stderr, s3.stderr[-2000:]
