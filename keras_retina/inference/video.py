"""`keras_retina predict clip.mp4`: detections on a video's frames, drawn into a copy and kept as JSON lines.

`detect_video(detect_batch, path, output_path, detections_path, settings=VideoSettings(...))`
decodes `path` with PyAV (FFmpeg: any container and codec it reads) frame by frame, as uint8 RGB
`[H, W, 3]`:

- every `every_nth_frame`-th frame (of at most `max_frames` frames read) goes to `detect_batch`
  (`detector.batch_detector`: the same detector as pictures, any kind of model) in batches of
  `batch_size` (the three are `VideoSettings`);
- `output_path` gets every frame read, each with the latest detections drawn
  (`ops.drawing`, score >= `draw_threshold`), encoded with H.264 (MPEG-4 Part 2 where FFmpeg
  lacks libx264) at the source's frame rate and size (an odd side gains one black row or
  column: H.264's 4:2:0 needs even sides);
- `detections_path` gets one JSON line per detected frame: {"frame": index from 0, "time":
  seconds, "detections": [{"bbox": [x, y, width, height] in the frame's pixels, "score",
  "category_id", "name"}]}, every detection the model returns (as `detections.json` for
  pictures), written and flushed batch by batch.

Memory holds one batch of frames and the codecs' buffers, whatever the video's length. A frame
that fails to decode ends the run: everything before it stays written whole (the video closed
properly, whole lines) and `VideoSummary.error` names the frame; so does a file that ends before its
header's frame count or length, or (MPEG-TS, which has no length) inside a packet. A file FFmpeg cannot open as a
video is a DataError.
"""

import dataclasses
import json
import os
import time
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from keras_retina import renamed
from keras_retina.errors import DataError, UsageError
from keras_retina.files import new_name
from keras_retina.ops import drawing

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
                    ".wmv", ".flv", ".3gp", ".ogv")


def is_video(path):
    return path.lower().endswith(VIDEO_EXTENSIONS)


# The rules of VideoSettings' fields, stated once; the command line checks --every_nth_frame with them.
CHECKS = {
    "every_nth_frame": (lambda v: v > 0, "must be positive."),
    "max_frames": (lambda v: v is None or v > 0, "must be None (all) or positive."),
    "batch_size": (lambda v: v > 0, "must be positive."),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class VideoSettings:
    """Which frames of a video are detected, and how many at a time (module docstring);
    keyword-only, frozen, checked when made (UsageError naming the setting).

    every_nth_frame: detect on every Nth frame; the frames between show the latest detections.
    max_frames: stop after this many frames read (None: all of them).
    batch_size: detected frames per call of the detector.
    """

    every_nth_frame: int = 1
    max_frames: int | None = None
    batch_size: int = 8

    def __post_init__(self):
        for name, (check, message) in CHECKS.items():
            if not check(getattr(self, name)):
                raise UsageError(f"{name}={getattr(self, name)} {message}")


@dataclasses.dataclass
class VideoSummary:
    frames: int  # frames read (and written)
    detected: int  # frames detected on
    seconds: float
    error: str = None  # where decoding failed, when it did


def _import_av():
    try:
        import av
    except ImportError:
        raise UsageError("videos need PyAV (FFmpeg's Python binding): pip install av") from None
    return av


def detect_video(detect_batch: Callable, path: str, output_path: str, detections_path: str, every_nth_frame: int = 1,
                 max_frames: int | None = None, *, batch_size: int = 8, settings: VideoSettings | None = None,
                 draw_threshold: float | None = None, show_progress: bool = False,
                 **renamed_arguments) -> VideoSummary:
    """Detections on the frames of `path` (module docstring) with `settings` (a VideoSettings) or one
    made of `every_nth_frame`, `max_frames` and `batch_size`; returns a VideoSummary. Detections
    scoring `draw_threshold` or more are drawn. With `show_progress`, a Keras progress bar of the
    frames, with frames per second."""
    draw_threshold = renamed.argument(renamed_arguments, "score_threshold", "draw_threshold", draw_threshold,
                                      "detect_video")
    renamed.no_others(renamed_arguments, "detect_video")
    draw_threshold = drawing.DRAW_THRESHOLD if draw_threshold is None else draw_threshold
    settings = settings or VideoSettings(every_nth_frame=every_nth_frame, max_frames=max_frames,
                                         batch_size=batch_size)
    every_nth_frame, max_frames, batch_size = settings.every_nth_frame, settings.max_frames, settings.batch_size
    for output in (output_path, detections_path):
        if os.path.exists(output) and os.path.exists(path) and os.path.samefile(output, path):
            raise UsageError(f"{output}: the video being read would be written over; write elsewhere.")
    av, source, stream, rate = open_video(path)
    announced = stream.frames or None
    width, height = stream.codec_context.width, stream.codec_context.height
    sink = _open_sink(av, output_path, rate, width + width % 2, height + height % 2)
    total = min(announced, max_frames) if announced and max_frames else (announced or max_frames)
    progress = _progress_bar(total) if show_progress else None
    summary = VideoSummary(0, 0, 0.0)
    start = time.monotonic()
    pending, latest, last_time = [], None, None
    lines = open(detections_path, "w", encoding="utf-8")
    try:
        frames = source.decode(stream)
        while max_frames is None or summary.frames < max_frames:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except (av.FFmpegError, EOFError, OSError, ValueError) as error:
                summary.error = f"{path}: decoding stopped at frame {summary.frames} ({error})"
                break
            index = summary.frames
            pixels = frame.to_ndarray(format="rgb24")
            moment = float(frame.time) if frame.time is not None else index / float(rate)
            pending.append((index, moment, pixels, index % every_nth_frame == 0))
            last_time = moment
            summary.frames += 1
            if sum(1 for item in pending if item[3]) == batch_size:
                latest = _flush(pending, latest, detect_batch, sink, lines, draw_threshold, summary=summary)
                pending = []
                if progress is not None:
                    progress(summary.frames, summary.frames / max(time.monotonic() - start, 1e-9))
        if pending:
            latest = _flush(pending, latest, detect_batch, sink, lines, draw_threshold, summary=summary)
        if summary.error is None and max_frames is None:
            summary.error = (_ended_early(path, summary.frames, announced, _length(source, stream), last_time, rate)
                             or _cut_inside_a_packet(path, source, summary.frames))
    finally:
        lines.close()
        _close_sink(sink)
        source.close()
    summary.seconds = time.monotonic() - start
    if progress is not None:
        progress(summary.frames, summary.frames / max(summary.seconds, 1e-9))
    return summary


def open_video(path):
    """(av, the opened container, its first video stream decoding on threads, its frame rate); a
    file FFmpeg cannot open, or without a video stream, is a DataError naming it."""
    av = _import_av()
    try:
        source = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise DataError(f"{path}: not a video FFmpeg can read ({error}).") from None
    if not source.streams.video:
        kinds = sorted({stream.type for stream in source.streams}) or ["no streams at all"]
        source.close()
        raise DataError(f"{path}: holds no video stream ({', '.join(kinds)}); nothing to detect on.")
    stream = source.streams.video[0]
    stream.thread_type = "AUTO"
    return av, source, stream, stream.average_rate or stream.guessed_rate or Fraction(25)


def _length(source, stream):
    """The video's length in seconds from its header, or None."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return source.duration / 1e6 if source.duration else None


def _ended_early(path, frames, announced, length, last_time, rate):
    """Why the frames stopped before the header's count or length (a truncated file), or None."""
    if announced and frames + 1 < announced:
        return f"{path}: the video ended at frame {frames} of the {announced} its header announces (truncated?)"
    if length and (last_time is None or last_time + 2.0 / float(rate) < length):
        reached = f" ({last_time:.2f} s)" if last_time is not None else ""
        return (f"{path}: the video ended at frame {frames}{reached} of the {length:.2f} s its header announces "
                f"(truncated?)")
    return None


# An MPEG transport stream announces no length: its packets have a fixed size instead (188 bytes;
# 192 in .m2ts, 204 with error-correction bytes), and a file cut at any other byte ends inside one,
# which FFmpeg drops without a word. A cut that falls on a packet boundary (about 1 in 60) stays unseen.
TS_PACKET_SIZES = (188, 192, 204)


def _cut_inside_a_packet(path, source, frames):
    """Why a transport stream's file is cut short (its size no whole number of packets), or None."""
    size = cut_stream_size(path, source)
    return cut_stream_message(path, frames, size) if size else None


def cut_stream_size(path, source):
    """The size of a transport stream's file when it is no whole number of packets (cut short), else None."""
    if "mpegts" not in source.format.name.split(",") or not os.path.isfile(path):
        return None
    size = os.path.getsize(path)
    return None if any(size % packet == 0 for packet in TS_PACKET_SIZES) else size


def cut_stream_message(path, frames, size):
    return (f"{path}: the video ended at frame {frames} inside a transport-stream packet ({size:,} bytes is no "
            f"whole number of {'/'.join(map(str, TS_PACKET_SIZES))}-byte packets): truncated?")


def _flush(pending, latest, detect_batch, sink, lines, draw_threshold, *, summary):
    """Detects on the pending frames chosen for it, draws every pending frame, writes them."""
    chosen = [item for item in pending if item[3]]
    found = detect_batch(np.stack([item[2] for item in chosen])) if chosen else []
    by_index = {item[0]: result for item, result in zip(chosen, found)}
    for index, moment, pixels, _ in pending:
        if index in by_index:
            latest = by_index[index]
            lines.write(json.dumps({"frame": index, "time": round(moment, 6),
                                    "detections": _coco_detections(latest, pixels.shape)}) + "\n")
            summary.detected += 1
        drawn = pixels if latest is None else np.asarray(
            drawing.draw_detections(pixels, latest[0], latest[1], latest[3], draw_threshold, latest[2]))
        _write_frame(sink, drawn)
    lines.flush()
    return latest


def _coco_detections(found, shape):
    boxes, scores, classes, names = found
    height, width = shape[:2]
    out = []
    for (ymin, xmin, ymax, xmax), score, category, name in zip(boxes, scores, classes, names):
        x, y = float(xmin) * width, float(ymin) * height
        out.append({"bbox": [round(x, 2), round(y, 2), round(float(xmax) * width - x, 2),
                             round(float(ymax) * height - y, 2)],
                    "score": round(float(score), 5), "category_id": int(category), "name": name})
    return out


def _open_sink(av, output_path, rate, width, height):
    container = av.open(output_path, mode="w")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if codec == "libx264":
        stream.options = {"crf": "20", "preset": "veryfast"}
    return container, stream


def _write_frame(sink, pixels):
    av = _import_av()
    container, stream = sink
    height, width = pixels.shape[:2]
    if (height, width) != (stream.height, stream.width):
        padded = np.zeros((stream.height, stream.width, 3), np.uint8)
        padded[:height, :width] = pixels
        pixels = padded
    for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")):
        container.mux(packet)


def _close_sink(sink):
    container, stream = sink
    try:
        for packet in stream.encode(None):  # the encoder's buffered frames
            container.mux(packet)
    finally:
        container.close()


def video_output_names(path, output_dir, taken):
    """(annotated video path, detections path) in `output_dir` for video `path`; never the input
    itself or a name in `taken` (a set, updated)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    n = 1
    while True:  # the video and its lines share one free name
        name = stem if n == 1 else f"{stem}-{n}"
        video = new_name(output_dir, name, ".mp4", taken, [path])
        lines = os.path.join(output_dir, f"{name}.detections.jsonl")
        if video == os.path.join(output_dir, f"{name}.mp4") and lines not in taken and not os.path.lexists(lines):
            taken.update((video, lines))
            return video, lines
        n += 1


def _progress_bar(total):
    import keras

    bar = keras.utils.Progbar(total, unit_name="frame", stateful_metrics=["frames/s"])
    return lambda done, fps: bar.update(min(done, total) if total else done, values=[("frames/s", fps)])
