"""Detection on large pictures by tiles: aerial and satellite scans, drone photos, slides.

A detector shrinks a picture to its own scale (800 pixels for COCO models), so the 10-60 pixel
objects of a 5000-pixel orthophoto vanish. `detect_tiled` cuts the picture into overlapping
tiles instead (`ops.tiles.tile_windows`), each `tile` x `tile` model pixels; `scale` < 1 first
shrinks the picture (a tile then covers `tile / scale` of its pixels). Tiles are read from a
`ops.large_picture` picture (only the window of each, so memory follows the batch of tiles),
detected in batches by a `detector.batch_detector`, their boxes mapped back to the picture's
pixels and merged:

- "nms": class-wise non-maximum suppression at `merge_iou` over all tiles' detections, which
  removes the copies of an object that lies inside two overlapping tiles;
- "merge": then, of the boxes left scoring at least `MERGE_MIN_SCORE`, a box cut by a tile's
  inner border (it ends within `CUT_MARGIN` pixels of an edge its tile shares with a neighbour)
  and the boxes of its class overlapping it by `merge_iou` of the smaller box are merged into
  the box around them (best score kept), greedily from the best score: an object cut by a
  border comes back whole; boxes inside tiles are never merged with each other, and the many
  low-scoring boxes a detector returns are left as they are;
- "wbf": weighted box fusion instead of NMS (`ops.box_fusion`): the copies of an object from
  overlapping tiles become their score-weighted average (boxes cut by a tile's edge join by the
  overlap of the smaller box and do not move it; an object no tile holds whole becomes the box
  around its parts), the best score kept.

`whole_picture=True` also detects on the whole picture shrunk to the model (for objects larger
than a tile) and merges those detections in the same way. While the tiles are read, a preview
of the picture (longer side at most `preview_side`) is assembled from them for drawing.

The windows are counted first and made one batch at a time (memory follows the batch, whatever
the picture's size); a picture needing more than `max_tiles` windows (MAX_TILES by default) is
refused before any is read, naming the count and `--max_tiles`: a header can claim a picture of a
million pixels a side, and a real 100,000-pixel orthophoto takes hours, which the user decides.

Returns `TiledDetections`: boxes `[N, 4]` yxyx in the picture's pixels, scores, category ids,
names, the number of tiles, and the preview with its scale.
"""

import dataclasses
import itertools
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from PIL import Image

from keras_retina.errors import UsageError
from keras_retina.ops.box_fusion import fuse_boxes
from keras_retina.ops.large_picture import LargePicture
from keras_retina.ops.tiles import MAX_TILES, count_windows, iter_windows

MERGES = ("nms", "merge", "wbf")
CUT_MARGIN = 2.0  # pixels: a box ending this close to a tile's inner edge was cut by it
MERGE_MIN_SCORE = 0.3  # boxes below this are not merged (as drawn: ops.drawing.DRAW_THRESHOLD)


@dataclasses.dataclass
class TiledDetections:
    boxes: np.ndarray  # [N, 4] yxyx, the picture's pixels
    scores: np.ndarray
    classes: np.ndarray  # category ids
    names: list
    tiles: int
    preview: np.ndarray  # uint8 [h, w, 3], the picture shrunk by `preview_scale`
    preview_scale: float


# The rules of TileSettings' numbers, stated once: TileSettings applies them, and the command line
# checks its --tile_* flags with them.
CHECKS = {
    "tile": (lambda v: v > 0, "must be a tile size in pixels (positive)."),
    "overlap": (lambda v: 0 <= v < 1, "must be in [0, 1)."),
    "scale": (lambda v: 0 < v <= 1, "must be in (0, 1]."),
    "batch_size": (lambda v: v > 0, "must be positive."),
    "merge_iou": (lambda v: 0 < v <= 1, "must be in (0, 1]."),
    "max_tiles": (lambda v: v > 0, "must be positive."),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TileSettings:
    """How a picture is detected by tiles (module docstring); keyword-only, frozen, checked when made
    (UsageError naming the setting).

    tile: the tile's side in model pixels (the --image_size the model was trained at).
    overlap: the share of a tile its neighbours also cover, [0, 1).
    scale: the picture shrunk by this first, (0, 1]: a tile covers tile / scale of its pixels.
    batch_size: tiles per call of the detector.
    merge: "nms" (copies from overlapping tiles removed), "merge" (boxes cut by a tile's edge joined) or
      "wbf" (copies averaged, weighted by score; cut boxes joined).
    merge_iou: the overlap at which two boxes are one object (IoU for nms and wbf, of the smaller box for
      merge and for wbf's cut boxes).
    whole_picture: also detect on the whole picture shrunk to the model (objects larger than a tile).
    max_tiles: a picture needing more tiles is refused before any is read.
    """

    tile: int
    overlap: float = 0.2
    scale: float = 1.0
    batch_size: int = 8
    merge: str = "nms"
    merge_iou: float = 0.5
    whole_picture: bool = False
    max_tiles: int = MAX_TILES

    def __post_init__(self):
        if self.merge not in MERGES:
            raise UsageError(f"merge={self.merge!r}: one of {', '.join(MERGES)}.")
        for name, (check, message) in CHECKS.items():
            if not check(getattr(self, name)):
                raise UsageError(f"{name}={getattr(self, name)} {message}")


def detect_tiled(detect_batch: Callable, picture: LargePicture, tile: int | None = None, *,
                 settings: TileSettings | None = None, preview_side: int = 4096,
                 progress: Callable[[int, int], None] | None = None, **options) -> "TiledDetections":
    """Detections of `picture` (height, width, read(window)) by tiles (module docstring), with
    `settings` (a TileSettings) or one made of `tile` and the keyword `options` (its fields).
    `progress(done, total)` is called after each batch of tiles."""
    settings = settings or TileSettings(tile=tile, **options)
    source_tile, total = tile_count(picture, settings)
    windows = iter_windows(picture.height, picture.width, source_tile, settings.overlap)
    preview_scale = min(1.0, preview_side / max(picture.height, picture.width))
    preview = np.zeros((max(1, round(picture.height * preview_scale)), max(1, round(picture.width * preview_scale)), 3),
                       np.uint8)
    parts = []
    for start in range(0, total, settings.batch_size):
        chunk = list(itertools.islice(windows, settings.batch_size))
        parts += detect_windows(detect_batch, picture, chunk, settings, preview=(preview, preview_scale))
        if progress is not None:
            progress(min(start + settings.batch_size, total), total)
    if settings.whole_picture:
        (found_boxes, found_scores, found_classes, found_names), = detect_batch(preview[None])
        found_classes = np.asarray(found_classes, np.int64)
        parts.append(TileParts(np.asarray(found_boxes, np.float64) * np.array([picture.height, picture.width] * 2),
                               np.asarray(found_scores, np.float64), found_classes, np.zeros(len(found_classes), bool),
                               dict(zip(found_classes.tolist(), found_names))))
    boxes, scores, classes, names = merge_tiles(parts, settings)
    return TiledDetections(boxes, scores, classes, names, total, preview, preview_scale)


def tile_count(picture, settings):
    """(the tile's side in the picture's pixels, the number of tiles) of `picture`; a picture needing
    more than settings.max_tiles is a UsageError before any window is read."""
    source_tile = max(1, int(round(settings.tile / settings.scale)))
    total = count_windows(picture.height, picture.width, source_tile, settings.overlap)
    if total > settings.max_tiles:
        raise UsageError(f"{getattr(picture, 'path', 'the picture')}: {picture.width:,} x {picture.height:,} pixels "
                         f"need {total:,} tiles of {source_tile} pixels, above --max_tiles={settings.max_tiles:,}; "
                         f"raise --max_tiles to run them all (it takes time in proportion), or use a larger --tile "
                         f"or a smaller --tile_scale.")
    return source_tile, total


@dataclasses.dataclass
class TileParts:
    """One tile's detections in the picture's pixels, before the merge (small: what travels between
    the stages of a batch pipeline, never the pixels)."""

    boxes: np.ndarray  # [n, 4] yxyx
    scores: np.ndarray
    classes: np.ndarray
    cut: np.ndarray  # [n] bool: ends at an edge the tile shares with a neighbour
    names: dict  # category id -> name


def detect_windows(detect_batch, picture, windows, settings, *, preview=None):
    """TileParts of each of `windows` (one call of `detect_batch`); `preview` (array, scale): the
    windows' pixels are pasted into it too."""
    source_tile = max(1, int(round(settings.tile / settings.scale)))
    pixels = [picture.read(window) for window in windows]
    if preview is not None:
        for window, part in zip(windows, pixels):
            _paste(preview[0], part, window, preview[1])
    batch = np.stack([_model_tile(part, source_tile, settings.tile) for part in pixels])
    parts = []
    for window, (found_boxes, found_scores, found_classes, found_names) in zip(windows, detect_batch(batch)):
        y0, x0, y1, x1 = window
        pixels_box = np.asarray(found_boxes, np.float64) * source_tile + np.array([y0, x0, y0, x0])
        pixels_box = np.minimum(pixels_box, np.array([y1, x1, y1, x1]))  # padding beyond a short side
        found_classes = np.asarray(found_classes, np.int64)
        parts.append(TileParts(pixels_box, np.asarray(found_scores, np.float64), found_classes,
                               _cut_by_inner_edge(pixels_box, window, picture.height, picture.width),
                               dict(zip(found_classes.tolist(), found_names))))
    return parts


def merge_tiles(parts, settings):
    """(boxes [N, 4] yxyx, scores, category ids, names) of a picture from its tiles' TileParts,
    merged by settings.merge (module docstring), best score first."""
    merge, merge_iou = settings.merge, settings.merge_iou
    names = {}
    for part in parts:
        names.update(part.names)
    boxes = np.concatenate([p.boxes for p in parts]) if parts else np.zeros((0, 4))
    scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros(0)
    classes = np.concatenate([p.classes for p in parts]) if parts else np.zeros(0, np.int64)
    cut = np.concatenate([p.cut for p in parts]) if parts else np.zeros(0, bool)
    if merge == "wbf":
        boxes, scores, classes, _ = fuse_boxes(boxes, scores, classes, merge_iou, cut)
    else:
        keep = _class_nms(boxes, scores, classes, merge_iou)
        boxes, scores, classes, cut = boxes[keep], scores[keep], classes[keep], cut[keep]
    if merge == "merge":
        confident = scores >= MERGE_MIN_SCORE
        merged = merge_cut_boxes(boxes[confident], scores[confident], classes[confident], cut[confident], merge_iou)
        boxes, scores, classes = (np.concatenate([part, rest]) for part, rest in
                                  zip(merged, (boxes[~confident], scores[~confident], classes[~confident])))
    order = np.argsort(-scores, kind="stable")
    return boxes[order], scores[order], classes[order], [names[int(c)] for c in classes[order]]


def _cut_by_inner_edge(boxes, window, height, width):
    """[n] bool: boxes ending within CUT_MARGIN of an edge of `window` that is not the picture's."""
    y0, x0, y1, x1 = window
    near = lambda value, edge, inner: inner & (np.abs(value - edge) <= CUT_MARGIN)
    return (near(boxes[:, 0], y0, y0 > 0) | near(boxes[:, 1], x0, x0 > 0) | near(boxes[:, 2], y1, y1 < height)
            | near(boxes[:, 3], x1, x1 < width))


def _model_tile(part, source_tile, tile):
    """A window's pixels as the model's `tile` x `tile` input: shrunk by the scale, padded with
    black where the picture is shorter than a tile."""
    height, width = part.shape[:2]
    if source_tile != tile:
        size = (max(1, round(width * tile / source_tile)), max(1, round(height * tile / source_tile)))
        part = np.asarray(Image.fromarray(part).resize(size, Image.BILINEAR))
    out = np.zeros((tile, tile, 3), np.uint8)
    out[:min(tile, part.shape[0]), :min(tile, part.shape[1])] = part[:tile, :tile]
    return out


def _paste(preview, part, window, scale):
    y0, x0, y1, x1 = window
    top, left = round(y0 * scale), round(x0 * scale)
    bottom, right = min(preview.shape[0], round(y1 * scale)), min(preview.shape[1], round(x1 * scale))
    if bottom <= top or right <= left:
        return
    if scale != 1.0:
        part = np.asarray(Image.fromarray(part).resize((right - left, bottom - top), Image.BILINEAR))
    preview[top:bottom, left:right] = part[:bottom - top, :right - left]


def _class_nms(boxes, scores, classes, iou):
    """Indices kept by class-wise NMS (TensorFlow's, fast on many boxes)."""
    keep = []
    for cls in np.unique(classes):
        rows = np.flatnonzero(classes == cls)
        chosen = tf.image.non_max_suppression(tf.constant(boxes[rows], tf.float32), tf.constant(scores[rows],
                                              tf.float32), max_output_size=len(rows), iou_threshold=iou).numpy()
        keep.append(rows[chosen])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def merge_cut_boxes(boxes, scores, classes, cut, threshold=0.5, cell=256.0):
    """Greedy non-maximum merging of cut boxes: from the best score down, each box not taken yet
    absorbs the boxes of its class not taken yet whose intersection covers at least `threshold`
    of the smaller of the two, where one of the two was cut by a tile's border (`cut` [n] bool);
    the result is the box around them, with the best score. Candidates are found through a grid
    of `cell`-pixel cells, so many boxes stay cheap."""
    boxes = np.asarray(boxes, np.float64)
    cut = np.asarray(cut, bool)
    order = np.argsort(-np.asarray(scores), kind="stable")
    cells = {}
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        for cy in range(int(y0 // cell), int(y1 // cell) + 1):
            for cx in range(int(x0 // cell), int(x1 // cell) + 1):
                cells.setdefault((cy, cx), []).append(i)
    taken = np.zeros(len(boxes), bool)
    out_boxes, out_scores, out_classes = [], [], []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in order:
        if taken[i]:
            continue
        taken[i] = True
        merged = boxes[i].copy()
        y0, x0, y1, x1 = boxes[i]
        near = {j for cy in range(int(y0 // cell), int(y1 // cell) + 1)
                for cx in range(int(x0 // cell), int(x1 // cell) + 1) for j in cells.get((cy, cx), ())}
        near = np.array(sorted(j for j in near if not taken[j] and classes[j] == classes[i] and (cut[i] or cut[j])),
                        np.int64)
        if near.size:
            inter_h = np.minimum(y1, boxes[near, 2]) - np.maximum(y0, boxes[near, 0])
            inter_w = np.minimum(x1, boxes[near, 3]) - np.maximum(x0, boxes[near, 1])
            inter = inter_h.clip(0) * inter_w.clip(0)
            smaller = np.minimum(area[i], area[near])
            absorbed = near[inter >= threshold * np.maximum(smaller, 1e-12)]
            if absorbed.size:
                taken[absorbed] = True
                merged = np.concatenate([np.minimum(merged[:2], boxes[absorbed, :2].min(0)),
                                         np.maximum(merged[2:], boxes[absorbed, 2:].max(0))])
        out_boxes.append(merged)
        out_scores.append(scores[i])
        out_classes.append(classes[i])
    if not out_boxes:
        return boxes[:0], np.asarray(scores)[:0], np.asarray(classes)[:0]
    return np.array(out_boxes), np.array(out_scores), np.array(out_classes)
