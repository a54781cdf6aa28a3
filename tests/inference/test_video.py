"""`predict` on videos: an annotated copy and one JSON line per frame, each frame's detections those of
the same frame as a still picture; broken files end cleanly; memory stays flat for an hour of video."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_retina.data import synthetic
from keras_retina.errors import DataError, UsageError
from keras_retina.inference.video import TS_PACKET_SIZES, VideoSettings, detect_video

from command_line import keras_retina
from conftest import REPO, make_tiny_model_dir

av = pytest.importorskip("av")
ENV = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}


_NOTHING = (np.zeros((0, 4)), np.zeros(0), np.zeros(0), [])  # a frame's detections when there are none


def write_video(path, frames, rate=10, codec="libx264", options=None):
    with av.open(str(path), mode="w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def decoded_frames(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def demo_frames(count):
    images, _, _ = synthetic.make_dataset(count, (96, 128), seed=5, num_classes=2)
    return list(images)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("video") / "run")


def _predict(*args, cwd):
    return keras_retina("predict", *args, cwd=cwd)


def test_each_frame_gets_the_detections_of_the_same_picture(tmp_path, model_dir):
    write_video(tmp_path / "clip.mp4", demo_frames(9))
    frames = decoded_frames(tmp_path / "clip.mp4")
    (tmp_path / "stills").mkdir()
    for n, pixels in enumerate(frames):
        Image.fromarray(pixels).save(tmp_path / "stills" / f"{n}.png")
    result = _predict(f"--model_dir={model_dir}", "--nms_score_threshold=0.2", "--detect_batch_size=4", "clip.mp4",
                      "--output_dir=out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "clip.mp4: 9 frames (9 detected)" in result.stdout
    lines = [json.loads(line) for line in (tmp_path / "out" / "clip.detections.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(9))
    assert lines[3]["time"] == pytest.approx(0.3)
    annotated = decoded_frames(tmp_path / "out" / "clip.mp4")
    assert len(annotated) == 9 and annotated[0].shape == (96, 128, 3)
    with av.open(str(tmp_path / "out" / "clip.mp4")) as container:
        assert container.streams.video[0].average_rate == 10
    stills = [str(tmp_path / "stills" / f"{n}.png") for n in range(9)]
    result = _predict(f"--model_dir={model_dir}", "--nms_score_threshold=0.2", *stills, "--output_dir=still_out",
                      cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    still = json.loads((tmp_path / "still_out" / "detections.json").read_text())
    assert sum(len(line["detections"]) for line in lines) == len(still) > 9
    for line in lines:
        theirs = sorted((d for d in still if d["file_name"] == f"{line['frame']}.png"), key=lambda d: -d["score"])
        ours = sorted(line["detections"], key=lambda d: -d["score"])
        assert [d["category_id"] for d in ours] == [d["category_id"] for d in theirs]
        np.testing.assert_allclose([d["score"] for d in ours], [d["score"] for d in theirs], atol=1e-4)
        np.testing.assert_allclose([d["bbox"] for d in ours], [d["bbox"] for d in theirs], atol=0.02)


def test_every_nth_frame_and_max_frames(tmp_path, model_dir):
    write_video(tmp_path / "clip.mkv", demo_frames(12))
    result = _predict(f"--model_dir={model_dir}", "--every_nth_frame=3", "--max_frames=7", "clip.mkv",
                      "--output_dir=out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (tmp_path / "out" / "clip.detections.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 3, 6]
    assert len(decoded_frames(tmp_path / "out" / "clip.mp4")) == 7


def test_video_settings_choose_the_frames_and_are_checked_when_made(tmp_path):
    write_video(tmp_path / "clip.mkv", demo_frames(9))
    calls = []

    def one_box_each(batch):
        calls.append(len(batch))
        return [(np.array([[0.1, 0.1, 0.5, 0.5]]), np.array([0.9]), np.array([1]), ["a"])] * len(batch)

    settings = VideoSettings(every_nth_frame=2, max_frames=7, batch_size=3)
    summary = detect_video(one_box_each, str(tmp_path / "clip.mkv"), str(tmp_path / "o.mp4"), str(tmp_path / "o.jsonl"),
                           settings=settings)
    assert (summary.frames, summary.detected, summary.error) == (7, 4, None) and calls == [3, 1]
    lines = (tmp_path / "o.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 2, 4, 6]
    for field, value, message in (("every_nth_frame", 0, "must be positive"),
                                  ("max_frames", 0, "must be None \\(all\\)"), ("batch_size", -1, "must be positive")):
        with pytest.raises(UsageError, match=f"^{field}={value} {message}"):
            VideoSettings(**{field: value})
    with pytest.raises(UsageError, match="^every_nth_frame=0"):  # the keyword arguments make the same object
        detect_video(one_box_each, str(tmp_path / "clip.mkv"), str(tmp_path / "p.mp4"), str(tmp_path / "p.jsonl"),
                     every_nth_frame=0)


@pytest.mark.parametrize("suffix, options", [(".mp4", {"movflags": "faststart"}), (".mkv", {}), (".ts", {})])
def test_a_truncated_video_keeps_what_was_done_and_names_where_it_stopped(tmp_path, model_dir, suffix, options):
    """An MP4 whose index comes first (a frame count), a Matroska file (a duration) and an MPEG
    transport stream (no length: packets of 188 bytes), each cut at 60% of its bytes."""
    write_video(tmp_path / f"whole{suffix}", demo_frames(40), options=options)
    data = (tmp_path / f"whole{suffix}").read_bytes()
    cut = int(len(data) * 0.6)
    cut -= 1 if any(cut % packet == 0 for packet in TS_PACKET_SIZES) else 0
    (tmp_path / f"cut{suffix}").write_bytes(data[:cut])
    result = _predict(f"--model_dir={model_dir}", f"cut{suffix}", "--output_dir=out", cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    error = [line for line in result.stderr.splitlines() if line.startswith(f"cut{suffix}: ")]
    assert error and ("decoding stopped at frame" in error[0] or "the video ended at frame" in error[0]), error
    done = int(error[0].split(" frame ")[1].split()[0])
    assert 0 < done < 40
    lines = (tmp_path / "out" / "cut.detections.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(done))  # whole lines, every frame
    assert len(decoded_frames(tmp_path / "out" / "cut.mp4")) == done  # the video closed properly
    whole = detect_video(lambda batch: [_NOTHING] * len(batch), str(tmp_path / f"whole{suffix}"),
                         str(tmp_path / "whole-out.mp4"), str(tmp_path / "whole-out.jsonl"))
    assert (whole.frames, whole.error) == (40, None)  # the file before the cut: no false alarm
    with pytest.raises(UsageError, match="would be written over"):  # never the video being read
        detect_video(lambda batch: [], str(tmp_path / f"cut{suffix}"), str(tmp_path / "out" / ".." / f"cut{suffix}"),
                     str(tmp_path / "o.jsonl"))


def test_a_file_that_is_not_a_video_is_one_clear_error(tmp_path, model_dir):
    (tmp_path / "notes.mp4").write_text("these are notes, not a video")
    result = _predict(f"--model_dir={model_dir}", "notes.mp4", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        "keras_retina predict: error: notes.mp4: not a video FFmpeg can read")
    with pytest.raises(DataError, match="not a video"):
        detect_video(lambda batch: [], str(tmp_path / "notes.mp4"), str(tmp_path / "o.mp4"), str(tmp_path / "o.jsonl"))
    import av

    sound = av.open(str(tmp_path / "sound.m4a"), "w")  # audio only: a second of silence
    stream = sound.add_stream("aac", rate=8000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.float32), format="fltp", layout="mono")
    frame.sample_rate = 8000
    for packet in [*stream.encode(frame), *stream.encode(None)]:
        sound.mux(packet)
    sound.close()
    with pytest.raises(DataError, match=r"sound.m4a: holds no video stream \(audio\); nothing to detect on"):
        detect_video(lambda batch: [], str(tmp_path / "sound.m4a"), str(tmp_path / "o.mp4"), str(tmp_path / "o.jsonl"))


HOUR = """
import json, resource, sys
import numpy as np
from keras_retina.inference.video import detect_video

memory = []

def stand_in(batch):  # one box per frame; the memory of decoding, drawing and encoding is measured
    memory.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    return [(np.array([[0.2, 0.2, 0.6, 0.7]]), np.array([0.9]), np.array([1]), ["a"]) for _ in batch]

summary = detect_video(stand_in, sys.argv[1], sys.argv[2], sys.argv[3], batch_size=8)
print(json.dumps({"frames": summary.frames, "seconds": summary.seconds, "early": memory[len(memory) // 10],
                  "peak": memory[-1]}))
"""


def test_an_hour_of_video_runs_in_flat_memory(tmp_path):
    """3600 frames of 64 x 64 at one frame per second: peak memory after a tenth of the hour and
    at its end differ by little (nothing grows with the video's length)."""
    rng = np.random.default_rng(0)
    with av.open(str(tmp_path / "hour.mp4"), mode="w") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.height = stream.width = 64
        stream.pix_fmt = "yuv420p"
        for n in range(3600):
            pixels = np.full((64, 64, 3), n % 255, np.uint8)
            pixels[rng.integers(0, 64), :] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    result = subprocess.run([sys.executable, "-c", HOUR, str(tmp_path / "hour.mp4"), str(tmp_path / "out.mp4"),
                             str(tmp_path / "out.jsonl")], env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"1 hour of video (3600 frames): {found['seconds']:.0f} s, peak memory {found['early']} MiB after "
          f"a tenth, {found['peak']} MiB at the end")
    assert found["frames"] == 3600
    assert found["peak"] - found["early"] < 40
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 3600
