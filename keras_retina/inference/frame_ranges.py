"""A video as ranges of frames detected apart: what a batch pipeline hands its workers (`batch`).

`frame_ranges(path, settings, frames_per_range)` -> a `Plan`: ranges [(start, stop)] covering the
frames `detect_video` would read (all, or `settings.max_frames`), each range a whole number of
detection batches long (`settings.batch_size` chosen frames, every `settings.every_nth_frame`-th),
so the frames go through the model in the same batches as `predict` puts them; and what the file
says of its end.
`detect_frame_range(detect_batch, path, start, stop, settings)` -> (the JSON lines `detect_video`
writes for the frames start..stop-1 ({"frame", "time", "detections"}), decoded from the key frame
before `start` (a seek, not the whole video before it); the last frame read; FFmpeg's reason when
decoding stopped, or None).
`video_end(path, ends, ranges)`: where the ranges' frames end and why, when the video is shorter
than it says or cannot be decoded further (truncated), in `predict`'s words and at its frame.
Frame numbers are counted from the
video's first frame by timestamp (time x rate), which is the count `detect_video` makes for a
video of constant frame rate whose frames all decode; `predict` numbers the frames it decodes, so
after a frame that does not decode (a damaged stream) or in a variable-rate video its numbers may
differ from these (the frames, their times and detections are the same).
"""

import dataclasses
import itertools
import math

import numpy as np

from keras_retina.inference.video import (
    _coco_detections,
    _ended_early,
    _import_av,
    _length,
    cut_stream_message,
    cut_stream_size,
    open_video,
)

FRAMES_PER_RANGE = 256  # frames a range holds at most (rounded up to whole detection batches)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a video is detected in ranges: the ranges [(start, stop)], and what the file says of its
    end (`ends`: the header's frame count or None, its length in seconds or None, the frame rate,
    the file's size when it is a transport stream cut inside a packet or None; all None when only
    the first --max_frames are read), which `video_end` judges the frames read by."""

    ranges: list
    ends: tuple = (None, None, 25.0, None)


def frame_ranges(path, settings, frames_per_range=FRAMES_PER_RANGE):
    """The video's Plan (module docstring); a range's stop None: to the end (a video whose header
    gives neither a frame count nor a length is one range)."""
    _, source, stream, rate = open_video(path)
    try:
        announced = stream.frames or None
        length = _length(source, stream)
        cut_size = cut_stream_size(path, source)
    finally:
        source.close()
    count = announced or (int(math.ceil(length * float(rate))) if length else 0)
    ends = (announced, length, float(rate), cut_size)
    if settings.max_frames:
        count = min(count, settings.max_frames) if count else settings.max_frames
        ends = (None, None, float(rate), None)  # a part of the video: not judged on its end
    if not count:
        return Plan([(0, None)], ends)
    step = settings.batch_size * settings.every_nth_frame
    size = max(step, frames_per_range // step * step)
    ranges = [(start, min(start + size, count)) for start in range(0, count, size)]
    if not settings.max_frames:  # a header may count short: the last range reads to the end
        ranges[-1] = (ranges[-1][0], None)
    return Plan(ranges, ends)


def video_end(path, ends, ranges):
    """(one past the number of the last frame read, the frames decoded (`predict`'s count), why the
    video stopped early or None, in `predict`'s words) from the Plan's `ends` and each range's (frames
    read, FFmpeg's reason or None) of `detect_frame_range`, in order: the first range whose
    decoding stopped ends the video there, as it ends `predict`."""
    announced, length, rate, cut_size = ends
    end, decoded, last_time = 0, 0, None  # predict counts the frames it decoded: a lost frame shifts its count
    for last, stopped in ranges:
        if last is not None:
            decoded += last[0]
            if last[1] >= end:
                end, last_time = last[1], last[2]
        if stopped:
            return end, decoded, f"{path}: decoding stopped at frame {decoded} ({stopped})"
    early = _ended_early(path, decoded, announced, length, last_time, rate) if announced or length else None
    return end, decoded, early or (cut_stream_message(path, decoded, cut_size) if cut_size else None)


def _frames_from(av, path, start):
    """(container, its stream, the time of its first frame, the frame rate, an iterator of decoded
    frames beginning at or before frame `start`): a seek to the key frame before `start`; where the
    container seeks only roughly (a transport stream, a cut file) and lands past it, again from
    further back, and at last from the beginning."""
    back = 0.0
    while True:
        _, source, stream, rate = open_video(path)
        first = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base \
            else 0.0
        target = start / float(rate) - back
        if start == 0 or target <= 0:
            return source, stream, first, rate, source.decode(stream)
        try:
            source.seek(int((first + target) / stream.time_base), stream=stream, backward=True)
            frames = source.decode(stream)
            head = next(frames, None)
        except (av.FFmpegError, EOFError, OSError, ValueError):
            head = None
        if head is not None and head.time is not None and round((float(head.time) - first) * float(rate)) <= start:
            return source, stream, first, rate, itertools.chain([head], frames)
        source.close()
        back = max(2.0, back * 2)


def detect_frame_range(detect_batch, path, start, stop, settings):
    """(the detection lines of frames start..stop-1 (stop None: to the end), (frames decoded, one
    past the last frame's number, its time) or None when none was, FFmpeg's reason when decoding
    stopped early or None) (module docstring): a file that cannot be decoded further keeps the
    lines before, as `predict` does."""
    av = _import_av()
    source, stream, first, rate, frames = _frames_from(av, path, start)
    lines, chosen, last, error = [], [], None, None
    try:
        for frame in frames:
            moment = float(frame.time) if frame.time is not None else None
            index = round((moment - first) * float(rate)) if moment is not None else None
            if index is None or index < start:
                continue
            if stop is not None and index >= stop:
                break
            last = (last[0] + 1 if last else 1, index + 1, moment)
            if index % settings.every_nth_frame == 0:
                chosen.append((index, moment, frame.to_ndarray(format="rgb24")))
            if len(chosen) == settings.batch_size:
                lines += _detect(detect_batch, chosen)
                chosen = []
    except (av.FFmpegError, EOFError, OSError, ValueError) as failure:
        error = str(failure)
    finally:
        source.close()
    if chosen:
        lines += _detect(detect_batch, chosen)
    return lines, last, error


def _detect(detect_batch, chosen):
    found = detect_batch(np.stack([pixels for _, _, pixels in chosen]))
    return [{"frame": index, "time": round(moment, 6), "detections": _coco_detections(result, pixels.shape)}
            for (index, moment, pixels), result in zip(chosen, found)]
