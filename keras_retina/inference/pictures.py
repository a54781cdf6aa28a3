"""`keras_retina predict` on pictures: detections drawn on each, and every one in COCO results format.

`predict_pictures(detect, paths, output_dir, score_threshold)`: each picture is read as viewers
show it (`ops.images.read_picture`: EXIF orientation applied), given to `detect` (a
`detector.picture_detector`), drawn with its boxes, names and scores into `output_dir` (a new
name per picture, `output_names`: inputs are never overwritten), and its detections appended to
`output_dir/detections.json` (COCO results; image ids from `image_ids`), rewritten atomically
every few seconds and at the end. A picture that cannot be read is named on stderr and skipped;
returns the number of such pictures.
"""

import os
import sys
import time

import tensorflow as tf

from keras_retina.errors import UsageError
from keras_retina.files import write_json
from keras_retina.ops import boxes as box_lib
from keras_retina.ops import drawing
from keras_retina.ops import images as image_lib

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
    os.makedirs(output_dir, exist_ok=True)
    targets, ids = output_names(paths, output_dir), image_ids(paths)
    results_path = os.path.join(output_dir, "detections.json")
    if os.path.realpath(results_path) in {os.path.realpath(p) for p in paths}:
        raise UsageError(f"--output_dir={output_dir}: detections.json there is one of the pictures.")
    results, failed, written = [], [], -float("inf")
    for path, target, image_id in zip(paths, targets, ids):
        try:
            pixels = image_lib.read_picture(path)
            boxes, scores, classes, names = detect(pixels.numpy())
        except (OSError, tf.errors.InvalidArgumentError, image_lib.BadImage) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"{path}: cannot read this image ({message}); skipped.", file=sys.stderr)
            failed.append(path)
            continue
        picture = drawing.Image.fromarray(pixels.numpy())
        drawn = drawing.draw_detections(picture, boxes, scores, names, score_threshold, classes)
        drawn.save(target, **({"quality": 95} if target.lower().endswith((".jpg", ".jpeg")) else {}))
        width, height = picture.size
        pixel_boxes = box_lib.denormalise(tf.constant(boxes, tf.float32), height, width)
        for bbox, score, cls in zip(box_lib.coco_bboxes(pixel_boxes), scores, classes):
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
