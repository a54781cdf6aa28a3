"""A video detected as ranges of frames (what batch pipelines hand their workers) gives `predict`'s lines."""

import json

import numpy as np
import pytest

from keras_retina.inference.frame_ranges import detect_frame_range, frame_ranges
from keras_retina.inference.video import VideoSettings, detect_video

av = pytest.importorskip("av")


def _write(path, count, rate=10, key_every=None):
    with av.open(str(path), mode="w") as container:
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
                                                                   (".mp4", 5, 3, 50)])
def test_ranges_give_the_lines_of_the_whole_video(tmp_path, suffix, key_every, every_nth, max_frames):
    path = tmp_path / f"clip{suffix}"
    _write(path, 83, key_every=key_every)
    settings = VideoSettings(every_nth_frame=every_nth, max_frames=max_frames, batch_size=4)
    detect_video(_square, str(path), str(tmp_path / "out.mp4"), str(tmp_path / "lines.jsonl"), settings=settings)
    whole = [json.loads(line) for line in open(tmp_path / "lines.jsonl")]
    ranges = frame_ranges(str(path), settings, frames_per_range=20)
    step = 4 * every_nth
    assert all(stop - start >= step and start % step == 0 for start, stop in ranges[:-1])
    assert ranges[0][0] == 0 and len(ranges) > 2
    parts = [line for start, stop in ranges for line in detect_frame_range(_square, str(path), start, stop, settings)]
    assert parts == whole  # same frames, same boxes, same batches (the score says the batch's size)
    assert len(whole) == len(range(0, max_frames or 83, every_nth))
