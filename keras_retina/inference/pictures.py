"""`keras_retina predict` on pictures: detections drawn on each, and every one in COCO results format.

`predict_pictures(detect, paths, output_dir, score_threshold)`: each picture is read as viewers
show it (`ops.images.read_picture`: EXIF orientation applied), given to `detect` (a
`detector.picture_detector`), drawn with its boxes, names and scores into `output_dir` (a new
name per picture, `output_names`: inputs are never overwritten), and its detections appended to
`output_dir/detections.json` (COCO results; image ids from `image_ids`), rewritten atomically
every few seconds and at the end. A picture that cannot be read is named on stderr and skipped;
returns the number of such pictures.

`predict_tiled_pictures(detect_batch, paths, output_dir, score_threshold, **tiling)`: the same
for large pictures, each read window by window (`ops.large_picture`: tiled TIFFs of any size)
and detected by tiles (`tiling.detect_tiled`); the drawing is made on the picture's preview
(longer side at most 4096 pixels), the detections are in the picture's own pixels.
"""

import os
import sys
import time

import numpy as np
import tensorflow as tf

from keras_retina.errors import UsageError
from keras_retina.files import write_json
from keras_retina.inference.tiling import detect_tiled
from keras_retina.ops import boxes as box_lib
from keras_retina.ops import drawing
from keras_retina.ops import images as image_lib
from keras_retina.ops.large_picture import open_large_picture

SAVE_EVERY_SECONDS = 5  # detections.json is rewritten at most this often (and at the end)


def output_names(paths, output_dir):
    """One new file in `output_dir` per picture: the picture's name, with "-2", "-3"... added
    where two pictures share a name, where the name is taken already (an input, a file that is
    there) or where it would be the picture itself. Inputs are never overwritten."""
    inputs = {os.path.realpath(p) for p in paths}
    taken, names = set(), []
    for path in paths:
        stem, ext = os.path.splitext(os.path.basename(path))
        ext = ext if ext.lower() in (".jpg", ".jpeg", ".png") else ".png"
        target, n = os.path.join(output_dir, stem + ext), 1
        while target in taken or os.path.realpath(target) in inputs or os.path.exists(target):
            n += 1
            target = os.path.join(output_dir, f"{stem}-{n}{ext}")
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


def predict_pictures(detect, paths, output_dir, score_threshold=drawing.DRAW_SCORE_THRESHOLD):
    def picture(path):
        pixels = image_lib.read_picture(path).numpy()
        boxes, scores, classes, names = detect(pixels)
        height, width = pixels.shape[:2]
        drawn = drawing.draw_detections(pixels, boxes, scores, names, score_threshold, classes)
        return drawn, np.asarray(boxes) * np.array([height, width, height, width]), scores, classes, names

    return _predict(picture, paths, output_dir, score_threshold)


def predict_tiled_pictures(detect_batch, paths, output_dir, score_threshold=drawing.DRAW_SCORE_THRESHOLD,
                           **tiling):
    def picture(path):
        large = open_large_picture(path)
        try:
            found = detect_tiled(detect_batch, large, **tiling)
        finally:
            large.close()
        shown = np.array(found.preview.shape[:2] * 2, np.float64)
        normalised = found.boxes * found.preview_scale / shown
        drawn = drawing.draw_detections(found.preview, normalised, found.scores, found.names, score_threshold,
                                        found.classes)
        print(f"{path}: {large.width} x {large.height}, {found.tiles} tiles", flush=True)
        return drawn, found.boxes, found.scores, found.classes, found.names

    return _predict(picture, paths, output_dir, score_threshold)


def _predict(picture, paths, output_dir, score_threshold):
    """`picture(path)` -> (drawn PIL image, boxes [n, 4] yxyx pixels, scores, category ids, names)
    for each path; the drawings, detections.json and the lines printed."""
    os.makedirs(output_dir, exist_ok=True)
    targets, ids = output_names(paths, output_dir), image_ids(paths)
    results_path = os.path.join(output_dir, "detections.json")
    if os.path.realpath(results_path) in {os.path.realpath(p) for p in paths}:
        raise UsageError(f"--output_dir={output_dir}: detections.json there is one of the pictures.")
    results, failed, written = [], [], -float("inf")
    for path, target, image_id in zip(paths, targets, ids):
        try:
            drawn, pixel_boxes, scores, classes, names = picture(path)
        except (OSError, tf.errors.InvalidArgumentError, image_lib.BadImage) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"{path}: cannot read this image ({message}); skipped.", file=sys.stderr)
            failed.append(path)
            continue
        drawn.save(target, **({"quality": 95} if target.lower().endswith((".jpg", ".jpeg")) else {}))
        for bbox, score, cls in zip(box_lib.coco_bboxes(np.asarray(pixel_boxes, np.float32)), scores, classes):
            results.append({"image_id": image_id, "file_name": os.path.basename(path),
                            "category_id": int(cls), "bbox": bbox, "score": float(score)})
        shown = [f"{nm} {sc:.2f}" for nm, sc in zip(names, scores) if sc >= score_threshold]
        print(f"{path}: {len(shown)} detection(s) >= {score_threshold}"
              f"{': ' + ', '.join(shown[:8]) if shown else ''}{' ...' if len(shown) > 8 else ''} -> {target}")
        if time.monotonic() - written >= SAVE_EVERY_SECONDS:
            write_json(results, results_path, indent=None)
            written = time.monotonic()
    write_json(results, results_path, indent=None)
    print(f"Detections (COCO results format) of {len(paths) - len(failed)} picture(s) written to {results_path}")
    return len(failed)
