"""The units of a batch run, and a worker's job on each: a picture, a group of tile windows, a range of frames.

`BatchSettings`: what every worker needs to know (tiles, video frames, how many frames a range
holds); frozen and small, it travels with the pipeline.
`expand(shard, uri, settings)` -> the `Work` items of one input: a picture (one item), a large
picture with `settings.tile` (its tile windows in groups of the tile batch, as `predict --tile`
detects them), a video (ranges of frames, `inference.frame_ranges`). Only names, windows and
frame numbers are in a Work: pixels are read by the worker that detects them.
`do_work(work, detect_batch, settings)` -> a result dict: {"uri", "shard", "kind", "part",
"parts"} and either the detections ("picture": height, width, boxes [n, 4] yxyx pixels, scores,
classes, names; "tiles": height, width and a list of `tiling.TileParts`; "frames": the JSON lines
of `detect_video`, the last frame read, why decoding stopped (or None) and what the file says of its
end) or "error": why the input could not be read (a dead letter, never an
exception: one bad picture must not stop the run). `outputs.write_part` keeps each result as a
file, so results never gather in one process.
`local_file(uri)`: a context giving a local path: a URI of a remote filesystem copied to a local
temporary file (downloaded once per process while items of that input run, in whatever thread, and
the last KEEP_COPIES kept for the next items), a local path as it is.
"""

import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading

import numpy as np

from keras_retina.batch import filesystem as fs
from keras_retina.errors import DataError, UsageError
from keras_retina.inference import frame_ranges
from keras_retina.inference.tiling import TileSettings, detect_windows, tile_count
from keras_retina.inference.video import VideoSettings, is_video
from keras_retina.ops import images as image_lib
from keras_retina.ops.large_picture import open_large_picture
from keras_retina.ops.tiles import iter_windows

READ_ERRORS = image_lib.READ_ERRORS + (DataError,)  # and a video FFmpeg cannot open


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchSettings:
    tile: TileSettings | None = None  # large pictures by tiles (predict --tile)
    video: VideoSettings = VideoSettings()
    frames_per_range: int = frame_ranges.FRAMES_PER_RANGE


@dataclasses.dataclass(frozen=True)
class Work:
    uri: str
    shard: int
    kind: str  # "picture", "tiles" or "frames"
    part: int = 0
    parts: int = 1
    windows: tuple = ()  # tiles: the windows (y0, x0, y1, x1) of this group
    frames: tuple = ()  # frames: (start, stop)
    size: tuple = ()  # tiles: the picture's (height, width)
    ends: tuple = ()  # frames: what the file says of its end (`frame_ranges.Plan.ends`)


KEEP_COPIES = 2  # remote inputs kept on local disk after use, for the next items of the same input


class _Copy:
    def __init__(self):
        self.lock, self.path, self.users = threading.Lock(), None, 0


_COPIES = {}  # uri -> _Copy, oldest first; RunInference may detect in several threads of one process
_COPIES_LOCK = threading.Lock()


@contextlib.contextmanager
def local_file(uri):
    """A local path for `uri` while the block runs (module docstring)."""
    if fs.scheme(uri) is None:  # a local path (inputs.list_inputs made file:// URIs local paths)
        yield uri
        return
    with _COPIES_LOCK:
        copy = _COPIES.setdefault(uri, _Copy())
        copy.users += 1
    try:
        with copy.lock:  # one download per input and process; the others wait for it
            if copy.path is None:
                copy.path = _download(uri)
        yield copy.path
    finally:
        with _COPIES_LOCK:
            copy.users -= 1
            unused = [u for u, c in _COPIES.items() if c.users == 0]
            for old in unused[:max(0, len(unused) - KEEP_COPIES)]:
                gone = _COPIES.pop(old)
                if gone.path:
                    shutil.rmtree(os.path.dirname(gone.path), ignore_errors=True)


def _download(uri):
    from apache_beam.io.filesystems import FileSystems

    folder = tempfile.mkdtemp(prefix="keras_retina_batch_")
    path = os.path.join(folder, os.path.basename(uri.split("?")[0]) or "input")
    try:
        with FileSystems.open(uri) as source, open(path, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
    except Exception as error:  # noqa: BLE001 - each store's client raises its own kinds (NotFound, Forbidden...)
        shutil.rmtree(folder, ignore_errors=True)
        raise OSError(f"{uri}: could not be read ({image_lib.unreadable_reason(error)})") from error
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return path


def _failed(uri, shard, error, part=0, parts=1, *, path=None):
    """A failed result; the reason names the input's URI where it named `path`, its local copy."""
    reason = image_lib.unreadable_reason(error)
    if path and path != uri:
        reason = reason.replace(path, uri)
    return {"uri": uri, "shard": shard, "kind": "failed", "part": part, "parts": parts, "error": reason[:500]}


def expand(shard, uri, settings):
    """The Work items of one input, or [a failed result] (module docstring)."""
    if not is_video(uri) and settings.tile is None:
        return [Work(uri, shard, "picture")]
    path = None
    try:
        with local_file(uri) as path:
            if is_video(uri):
                plan = frame_ranges.frame_ranges(path, settings.video, settings.frames_per_range)
                return [Work(uri, shard, "frames", i, len(plan.ranges), frames=r, ends=plan.ends)
                        for i, r in enumerate(plan.ranges)]
            with contextlib.closing(open_large_picture(path)) as picture:
                source_tile, total = tile_count(picture, settings.tile)
                windows = list(iter_windows(picture.height, picture.width, source_tile, settings.tile.overlap))
                size = (picture.height, picture.width)
    except (UsageError, *READ_ERRORS) as error:  # a picture above --max_tiles too: the run goes on
        return [_failed(uri, shard, error, path=path)]
    step = settings.tile.batch_size
    groups = [tuple(windows[i:i + step]) for i in range(0, total, step)]
    return [Work(uri, shard, "tiles", i, len(groups), windows=group, size=size) for i, group in enumerate(groups)]


def do_work(work, detect_batch, settings):
    """The detections of one Work item, or its error (module docstring)."""
    result = {"uri": work.uri, "shard": work.shard, "kind": work.kind, "part": work.part, "parts": work.parts}
    path = None
    try:
        with local_file(work.uri) as path:
            if work.kind == "frames":
                result["lines"], result["last"], result["stopped"] = frame_ranges.detect_frame_range(
                    detect_batch, path, *work.frames, settings.video)
                result["ends"] = list(work.ends)
            elif work.kind == "tiles":
                with contextlib.closing(open_large_picture(path)) as picture:
                    result["tiles"] = detect_windows(detect_batch, picture, list(work.windows), settings.tile)
                result["height"], result["width"] = work.size
            else:
                pixels = image_lib.read_picture(path).numpy()
        if work.kind == "picture":
            boxes, scores, classes, names = detect_batch(pixels[None])[0]
            height, width = pixels.shape[:2]
            result.update(height=height, width=width, scores=np.asarray(scores, np.float64),
                          boxes=np.asarray(boxes, np.float64) * np.array([height, width, height, width]),
                          classes=np.asarray(classes, np.int64), names=list(names))
    except READ_ERRORS as error:
        return _failed(work.uri, work.shard, error, work.part, work.parts, path=path)
    return result
