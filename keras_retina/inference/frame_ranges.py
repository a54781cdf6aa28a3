"""A video as ranges of frames detected apart: what a batch pipeline hands its workers (`batch`).

`frame_ranges(path, settings, frames_per_range)` -> [(start, stop)] covering the frames
`detect_video` would read (all, or `settings.max_frames`), each range a whole number of detection
batches long (`settings.batch_size` chosen frames, every `settings.every_nth_frame`-th), so the
frames go through the model in the same batches as `predict` puts them.
`detect_frame_range(detect_batch, path, start, stop, settings)` -> the JSON lines `detect_video`
writes for the frames start..stop-1 ({"frame", "time", "detections"}), decoded from the key frame
before `start` (a seek, not the whole video before it). Frame numbers are counted from the
video's first frame by timestamp (time x rate), which is the count `detect_video` makes for a
video of constant frame rate; a variable-rate video is split at timestamps the same way, so its
numbers may differ from `predict`'s.
"""

import math

import numpy as np

from keras_retina.errors import DataError
from keras_retina.inference.video import _coco_detections, _length, open_video

FRAMES_PER_RANGE = 256  # frames a range holds at most (rounded up to whole detection batches)


def frame_ranges(path, settings, frames_per_range=FRAMES_PER_RANGE):
    """[(start, stop)] of the video's frames (module docstring); stop None: to the end (a video
    whose header gives neither a frame count nor a length is one range)."""
    _, source, stream, rate = open_video(path)
    try:
        count = stream.frames or 0
        length = _length(source, stream)
        if not count and length:
            count = int(math.ceil(length * float(rate)))
    finally:
        source.close()
    if settings.max_frames:
        count = min(count, settings.max_frames) if count else settings.max_frames
    if not count:
        return [(0, None)]
    step = settings.batch_size * settings.every_nth_frame
    size = max(step, frames_per_range // step * step)
    ranges = [(start, min(start + size, count)) for start in range(0, count, size)]
    if not settings.max_frames:  # a header may count short: the last range reads to the end
        ranges[-1] = (ranges[-1][0], None)
    return ranges


def detect_frame_range(detect_batch, path, start, stop, settings):
    """The detection lines of frames start..stop-1 (stop None: to the end), module docstring."""
    av, source, stream, rate = open_video(path)
    first = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    lines, chosen = [], []
    try:
        if start > 0:
            source.seek(int((first + start / float(rate)) / stream.time_base), stream=stream, backward=True)
        for frame in source.decode(stream):
            moment = float(frame.time) if frame.time is not None else None
            index = round((moment - first) * float(rate)) if moment is not None else None
            if index is None or index < start:
                continue
            if stop is not None and index >= stop:
                break
            if index % settings.every_nth_frame == 0:
                chosen.append((index, moment, frame.to_ndarray(format="rgb24")))
            if len(chosen) == settings.batch_size:
                lines += _detect(detect_batch, chosen)
                chosen = []
        if chosen:
            lines += _detect(detect_batch, chosen)
    except (av.FFmpegError, EOFError, OSError, ValueError) as error:
        raise DataError(f"{path}: decoding stopped near frame {start + len(lines)} ({error})") from None
    finally:
        source.close()
    return lines


def _detect(detect_batch, chosen):
    found = detect_batch(np.stack([pixels for _, _, pixels in chosen]))
    return [{"frame": index, "time": round(moment, 6), "detections": _coco_detections(result, pixels.shape)}
            for (index, moment, pixels), result in zip(chosen, found)]
