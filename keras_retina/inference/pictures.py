"""`keras_retina predict` on pictures: detections drawn on each, and every one in COCO results format.

`predict_pictures(detect, paths, output_dir, draw_threshold)`: each picture is read as viewers
show it (`ops.images.read_picture`: EXIF orientation applied), given to `detect` (a
`detector.picture_detector`), drawn with its boxes, names and scores into `output_dir` (a new
name per picture, `output_names`: inputs are never overwritten), and its detections appended to
`output_dir/detections.json` (COCO results; image ids from `image_ids`; `detections-2.json`...
when that file exists: a run never replaces a file it did not write), rewritten atomically every
few seconds and at the end. A picture that cannot be read is named on stderr and skipped;
returns the number of such pictures.

`predict_tiled_pictures(detect_batch, paths, output_dir, draw_threshold, settings)`: the same
for large pictures, each read window by window (`ops.large_picture`: tiled TIFFs of any size)
and detected by tiles (`tiling.detect_tiled`); the drawing is made on the picture's preview
(longer side at most 4096 pixels), the detections are in the picture's own pixels.

Both take `prelabels` (a `Prelabels`): the detections at each class's labelling threshold are
also written as a labelling tool's annotation files (`inference.prelabels`).
"""

import dataclasses
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from keras_retina import renamed
from keras_retina.files import make_folder, new_name, write_json
from keras_retina.inference import prelabels as prelabel_lib
from keras_retina.inference.tiling import TileSettings, detect_tiled
from keras_retina.ops import boxes as box_lib
from keras_retina.ops import drawing
from keras_retina.ops import images as image_lib
from keras_retina.ops.large_picture import open_large_picture

SAVE_EVERY_SECONDS = 5  # detections.json is rewritten at most this often (and at the end)
PROGRESS_EVERY_SECONDS = 10  # a line on tiled pictures that take longer


def output_names(paths, output_dir):
    """One new file in `output_dir` per picture: the picture's name, with "-2", "-3"... added
    where two pictures share a name, where the name is taken already (an input, a file that is
    there) or where it would be the picture itself. Inputs are never overwritten."""
    taken, names = set(), []
    for path in paths:
        stem, ext = os.path.splitext(os.path.basename(path))
        target = new_name(output_dir, stem, ext if ext.lower() in (".jpg", ".jpeg", ".png") else ".png", taken, paths)
        taken.add(target)
        names.append(target)
    return names


def image_ids(paths):
    """COCO image ids: the file names' numbers when every name is a plain, distinct ASCII number
    (COCO's own 000000397133.jpg), else the pictures' positions 1..n."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    numbers = [int(s) if s.isascii() and s.isdigit() else None for s in stems]
    if None not in numbers and len(set(numbers)) == len(numbers):
        return numbers
    return list(range(1, len(paths) + 1))


def predict_pictures(detect: Callable, paths: list[str], output_dir: str, draw_threshold: float | None = None,
                     *, prelabels: "Prelabels | None" = None, **renamed_arguments) -> int:
    draw_threshold = renamed.argument(renamed_arguments, "score_threshold", "draw_threshold", draw_threshold,
                                      "predict_pictures")
    renamed.no_others(renamed_arguments, "predict_pictures")
    draw_threshold = drawing.DRAW_THRESHOLD if draw_threshold is None else draw_threshold

    def picture(path):
        pixels = image_lib.read_picture(path).numpy()
        boxes, scores, classes, names = detect(pixels)
        height, width = pixels.shape[:2]
        drawn = drawing.draw_detections(pixels, boxes, scores, names, draw_threshold, classes)
        return drawn, np.asarray(boxes) * np.array([height, width, height, width]), scores, classes, names, (
            height, width)

    return _predict(picture, paths, output_dir, draw_threshold, prelabels)


def predict_tiled_pictures(detect_batch, paths, output_dir, draw_threshold=None, settings=None, *, prelabels=None,
                           **tiling):
    draw_threshold = renamed.argument(tiling, "score_threshold", "draw_threshold", draw_threshold,
                                      "predict_tiled_pictures")
    draw_threshold = drawing.DRAW_THRESHOLD if draw_threshold is None else draw_threshold
    settings = settings or TileSettings(**tiling)  # checked once, before any picture

    def picture(path):
        large = open_large_picture(path)
        try:
            found = detect_tiled(detect_batch, large, settings=settings, progress=_tile_progress(path))
        finally:
            large.close()
        shown = np.array(found.preview.shape[:2] * 2, np.float64)
        normalised = found.boxes * found.preview_scale / shown
        drawn = drawing.draw_detections(found.preview, normalised, found.scores, found.names, draw_threshold,
                                        found.classes)
        print(f"{path}: {large.width} x {large.height}, {found.tiles} tiles", flush=True)
        return drawn, found.boxes, found.scores, found.classes, found.names, (large.height, large.width)

    return _predict(picture, paths, output_dir, draw_threshold, prelabels)


def _tile_progress(path, every=PROGRESS_EVERY_SECONDS):
    """`progress(done, total)` for `detect_tiled`: a line every `every` seconds on a long picture,
    with tiles done, tiles per second and the time left at that pace."""
    start = last = time.monotonic()

    def progress(done, total):
        nonlocal last
        now = time.monotonic()
        if now - last < every or done >= total:
            return
        last = now
        pace = done / max(now - start, 1e-9)
        left = int((total - done) / max(pace, 1e-9))
        print(f"{path}: {done:,} of {total:,} tiles, {pace:.1f} tiles/s, about {left // 3600}:{left // 60 % 60:02d}:"
              f"{left % 60:02d} left", flush=True)

    return progress


def _predict(picture, paths, output_dir, draw_threshold, prelabels=None):
    """`picture(path)` -> (drawn PIL image, boxes [n, 4] yxyx pixels, scores, category ids, names,
    (height, width)) for each path; the drawings, detections.json, the pre-labels and the lines printed."""
    if prelabels is not None:
        prelabel_lib.check_names(paths, prelabels.settings.format)
    make_folder(output_dir, "--output_dir")
    kept = []
    targets, ids = output_names(paths, output_dir), image_ids(paths)
    results_path = new_name(output_dir, "detections", ".json", targets, paths)
    results, failed, written = [], [], -float("inf")
    for path, target, image_id in zip(paths, targets, ids):
        try:
            drawn, pixel_boxes, scores, classes, names, (height, width) = picture(path)
        except image_lib.READ_ERRORS as error:
            print(f"{path}: cannot read this image ({image_lib.unreadable_reason(error)}); skipped.", file=sys.stderr)
            failed.append(path)
            continue
        drawn.save(target, **({"quality": 95} if target.lower().endswith((".jpg", ".jpeg")) else {}))
        if prelabels is not None:
            kept.append(prelabels.cut(path, height, width, pixel_boxes, scores, classes))
        for bbox, score, cls in zip(box_lib.coco_bboxes(np.asarray(pixel_boxes, np.float32)), scores, classes):
            results.append({"image_id": image_id, "file_name": os.path.basename(path),
                            "category_id": int(cls), "bbox": bbox, "score": float(score)})
        shown = [f"{nm} {sc:.2f}" for nm, sc in zip(names, scores) if sc >= draw_threshold]
        print(f"{path}: {len(shown)} detection(s) >= {draw_threshold}"
              f"{': ' + ', '.join(shown[:8]) if shown else ''}{' ...' if len(shown) > 8 else ''} -> {target}")
        if time.monotonic() - written >= SAVE_EVERY_SECONDS:
            write_json(results, results_path, indent=None)
            written = time.monotonic()
    write_json(results, results_path, indent=None)
    print(f"Detections (COCO results format) of {len(paths) - len(failed)} picture(s) written to {results_path}")
    if prelabels is not None:
        written = prelabel_lib.write_prelabels(prelabels.settings, kept, prelabels.label_map, output_dir)
        print(f"Pre-labels ({prelabels.settings.format}) of {len(kept)} picture(s), "
              f"{sum(len(p.boxes) for p in kept)} box(es), written to {written}; threshold: {prelabels.how}")
    return len(failed)


@dataclasses.dataclass
class Prelabels:
    """What `predict --save_annotations` needs beside the detections: its settings, the model's label
    map, each category id's labelling threshold and where they come from (`prelabels` module)."""

    settings: prelabel_lib.PrelabelSettings
    label_map: list
    thresholds: dict
    how: str

    def cut(self, path, height, width, boxes, scores, classes):
        """A picture's detections at their classes' thresholds, as a `prelabels.Picture`."""
        scores, classes = np.asarray(scores, np.float64), np.asarray(classes, np.int64)
        keep = scores >= np.array([self.thresholds.get(int(c), prelabel_lib.DEFAULT_THRESHOLD) for c in classes])
        return prelabel_lib.Picture(path, int(height), int(width), np.asarray(boxes, np.float64).reshape(-1, 4)[keep],
                                    scores[keep], classes[keep])
