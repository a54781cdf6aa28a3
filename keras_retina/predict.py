"""`keras_retina predict`: detections drawn on the user's pictures, and in COCO results format.

Pictures go in as viewers show them (`images.read_picture`: EXIF orientation applied), through
the exported model's uint8 signature (or the same serving graph built from a model_dir), or
through a LiteRT / ONNX file's runtime (`deployed_model`: letterboxed into its fixed input), so
the boxes drawn and written match the picture. Each picture is written to `output_dir` with
its boxes, names and scores; `detections.json` holds every detection in COCO results format.
"""

import os
import sys
import time

import tensorflow as tf

from keras_retina import boxes as box_lib, deployed_model, evaluation, export as export_lib, images as image_lib
from keras_retina import visualize
from keras_retina.commands import POSTPROCESS_FLAGS, postprocess_overrides
from keras_retina.errors import DataError, UsageError
from keras_retina.precision import set_precision
from keras_retina.run_dir import RunDir, write_json


SAVE_EVERY_SECONDS = 5  # detections.json is rewritten at most this often (and at the end)


def _detector(options, mixed_precision):
    """A function: uint8 picture `[H, W, 3]` -> (boxes `[n, 4]` yxyx normalised to the picture,
    scores `[n]`, category ids `[n]`, class names), from --model (a LiteRT / ONNX file),
    --saved_model's serving_image_tensor signature or a server around --model_dir's model."""
    given = [f"--{name}={options[name]}" for name in ("model", "saved_model", "model_dir") if options[name]]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} {'both' if len(given) == 2 else 'each'} name a model; give one.")
    if options["model"]:
        settings = [f"--{flag}" for flag in POSTPROCESS_FLAGS if options.get(flag) is not None]
        if settings:
            raise UsageError(f"{', '.join(settings)}: a LiteRT / ONNX file's postprocessing was fixed when it was "
                             f"exported; export it again with them.")
        return deployed_model.load(options["model"]).detect_picture
    if options["saved_model"]:
        try:
            signature = tf.saved_model.load(options["saved_model"]).signatures["serving_image_tensor"]
        except (OSError, KeyError) as error:
            raise DataError(f"--saved_model={options['saved_model']}: not an exported keras_retina "
                            f"version folder ({type(error).__name__}: {str(error)[:200]}).") from None
        return lambda pixels: _first_image(signature(inputs=tf.convert_to_tensor(pixels[None])))
    if options["model_dir"]:
        set_precision(mixed_precision)
        net, label_map, _, _ = RunDir(options["model_dir"]).load_model()
        # The readers' pixel limit, not the serving one: local pictures are the user's own.
        server = export_lib.DetectionServer(net, label_map, max_image_pixels=image_lib.MAX_PIXELS,
                                            **postprocess_overrides(options))
        return lambda pixels: _first_image(server.serve_image_tensor(tf.convert_to_tensor(pixels[None])))
    raise UsageError("predict needs --model (a .tflite / .onnx file), --saved_model (an exported version "
                     "folder) or --model_dir.")


def _first_image(out):
    """The serving signature's outputs for a batch of one -> the detector's tuple."""
    out = {k: v.numpy()[0] for k, v in out.items()}
    n = int(out["num_detections"])
    names = [name.decode() for name in out["detection_class_names"][:n]]
    return out["detection_boxes"][:n], out["detection_scores"][:n], out["detection_classes"][:n], names


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


def predict(configs, options, paths):
    """Draws detections on each picture; returns 1 when some picture could not be read.
    detections.json is rewritten (atomically) after a picture when SAVE_EVERY_SECONDS have passed
    since the last write, and at the end, so a crash loses at most those last seconds."""
    detect = _detector(options, configs["train"].mixed_precision)
    os.makedirs(options["output_dir"], exist_ok=True)
    targets, ids = output_names(paths, options["output_dir"]), image_ids(paths)
    results_path = os.path.join(options["output_dir"], "detections.json")
    if os.path.realpath(results_path) in {os.path.realpath(p) for p in paths}:
        raise UsageError(f"--output_dir={options['output_dir']}: detections.json there is one of the pictures.")
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
        picture = visualize.Image.fromarray(pixels.numpy())
        drawn = visualize.draw_detections(picture, boxes, scores, names, options["score_threshold"], classes)
        drawn.save(target, **({"quality": 95} if target.lower().endswith((".jpg", ".jpeg")) else {}))
        width, height = picture.size
        pixel_boxes = box_lib.denormalise(tf.constant(boxes, tf.float32), height, width)
        for bbox, score, cls in zip(evaluation.coco_bboxes(pixel_boxes), scores, classes):
            results.append({"image_id": image_id, "file_name": os.path.basename(path),
                            "category_id": int(cls), "bbox": bbox, "score": float(score)})
        shown = [f"{nm} {sc:.2f}" for nm, sc in zip(names, scores) if sc >= options["score_threshold"]]
        print(f"{path}: {len(shown)} detection(s) >= {options['score_threshold']}"
              f"{': ' + ', '.join(shown[:8]) if shown else ''}{' ...' if len(shown) > 8 else ''} -> {target}")
        if time.monotonic() - written >= SAVE_EVERY_SECONDS:
            write_json(results, results_path, indent=None)
            written = time.monotonic()
    write_json(results, results_path, indent=None)
    print(f"Detections (COCO results format) of {len(paths) - len(failed)} picture(s) written to {results_path}")
    return 1 if failed else 0
