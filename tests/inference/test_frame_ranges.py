"""A video detected as ranges of frames (what batch pipelines hand their workers) gives `predict`'s lines."""

import json

import numpy as np
import pytest

from keras_retina.inference.frame_ranges import detect_frame_range, frame_ranges, video_end
from keras_retina.inference.video import TS_PACKET_SIZES, VideoSettings, detect_video

av = pytest.importorskip("av")


def _write(path, count, rate=10, key_every=None, options=None):
    with av.open(str(path), mode="w", options=options or {}) as container:
        stream = container.add_stream("libx264", rate=rate, options={"g": str(key_every)} if key_every else {})
        stream.height, stream.width, stream.pix_fmt = 48, 64, "yuv420p"
        for i in range(count):  # a bright square moving one step a frame: each frame's box tells which it is
            pixels = np.full((48, 64, 3), 30, np.uint8)
            pixels[10:26, i % 40:i % 40 + 16] = 250
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _square(batch):
    found = []
    for pixels in batch:
        ys, xs = np.nonzero(pixels[..., 0] > 140)
        h, w = pixels.shape[:2]
        found.append((np.array([[ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w]]),
                      np.array([0.5 + len(batch) / 100]), np.array([1]), ["square"]))  # the score shows the batch
    return found


@pytest.mark.parametrize("suffix,key_every,every_nth,max_frames", [(".mp4", None, 1, None), (".mkv", 7, 2, None),
                                                                   (".mp4", 5, 3, 50), (".ts", 5, 1, None)])
def test_ranges_give_the_lines_of_the_whole_video(tmp_path, suffix, key_every, every_nth, max_frames):
    path = tmp_path / f"clip{suffix}"
    _write(path, 83, key_every=key_every)
    settings = VideoSettings(every_nth_frame=every_nth, max_frames=max_frames, batch_size=4)
    detect_video(_square, str(path), str(tmp_path / "out.mp4"), str(tmp_path / "lines.jsonl"), settings=settings)
    whole = [json.loads(line) for line in open(tmp_path / "lines.jsonl")]
    plan = frame_ranges(str(path), settings, frames_per_range=20)
    ranges = plan.ranges
    step = 4 * every_nth
    assert all(stop - start >= step and start % step == 0 for start, stop in ranges[:-1])
    assert ranges[0][0] == 0 and len(ranges) > 2
    done = [detect_frame_range(_square, str(path), start, stop, settings) for start, stop in ranges]
    parts = [line for lines, _, _ in done for line in lines]
    assert parts == whole  # same frames, same boxes, same batches (the score says the batch's size)
    end, decoded, early = video_end(str(path), plan.ends, [(last, stopped) for _, last, stopped in done])
    assert early is None and end == decoded == (max_frames or 83)
    assert len(whole) == len(range(0, max_frames or 83, every_nth))


@pytest.mark.parametrize("suffix, options", [(".mp4", {"movflags": "faststart"}), (".mkv", {}), (".ts", {})])
def test_a_truncated_video_gives_predicts_frames_and_its_reason(tmp_path, suffix, options):
    """Cut at 60% of its bytes (an MP4 whose index comes first, a Matroska file, a transport stream):
    the ranges give the frames `predict` writes and say that the video stopped early, as it does."""
    _write(tmp_path / f"whole{suffix}", 83, key_every=5, options=options)
    data = (tmp_path / f"whole{suffix}").read_bytes()
    cut = int(len(data) * 0.6)
    cut -= 1 if any(cut % packet == 0 for packet in TS_PACKET_SIZES) else 0
    path = str(tmp_path / f"cut{suffix}")
    open(path, "wb").write(data[:cut])
    settings = VideoSettings(batch_size=4)
    summary = detect_video(_square, path, str(tmp_path / "out.mp4"), str(tmp_path / "lines.jsonl"), settings=settings)
    whole = [json.loads(line) for line in open(tmp_path / "lines.jsonl")]
    assert summary.error and 0 < len(whole) < 83
    plan = frame_ranges(path, settings, frames_per_range=16)
    done = [detect_frame_range(_square, path, start, stop, settings) for start, stop in plan.ranges]
    end, decoded, early = video_end(path, plan.ends, [(last, stopped) for _, last, stopped in done])
    ours = [line for lines, _, _ in done for line in lines if line["frame"] < end]
    seen = [(line["time"], line["detections"]) for line in ours]
    assert seen == [(line["time"], line["detections"]) for line in whole]
    if suffix != ".ts":  # the cut transport stream loses a frame: predict numbers the frames it decodes
        assert ours == whole
    assert early == summary.error and decoded == summary.frames  # the same words, the same count of frames
