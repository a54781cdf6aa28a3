"""`keras_retina predict`: detections drawn on the user's pictures, and in COCO results format.

Pictures go in as viewers show them (`images.read_picture`: EXIF orientation applied), through
the exported model's uint8 signature (or the same serving graph built from a model_dir), so
the boxes drawn and written match the picture. Each picture is written to `output_dir` with
its boxes, names and scores; `detections.json` holds every detection in COCO results format.
"""

import json
import os
import sys

import tensorflow as tf

from keras_retina import boxes as box_lib, evaluation, export as export_lib, images as image_lib, visualize
from keras_retina.commands import postprocess_overrides
from keras_retina.errors import DataError, UsageError
from keras_retina.optimization import set_precision
from keras_retina.run_dir import RunDir


def _detector(options, mixed_precision):
    """The serving_image_tensor function of --saved_model, or of a server around --model_dir's
    model (returned with it: a tf.function method holds its instance only weakly)."""
    if options["saved_model"]:
        try:
            return tf.saved_model.load(options["saved_model"]).signatures["serving_image_tensor"], None
        except (OSError, KeyError) as error:
            raise DataError(f"--saved_model={options['saved_model']}: not an exported keras_retina "
                            f"version folder ({type(error).__name__}: {str(error)[:200]}).") from None
    if options["model_dir"]:
        set_precision(mixed_precision)
        net, label_map, _, _ = RunDir(options["model_dir"]).load_model()
        server = export_lib.DetectionServer(net, label_map, **postprocess_overrides(options))
        return server.serve_image_tensor, server
    raise UsageError("predict needs --saved_model (an exported version folder) or --model_dir.")


def predict(configs, options, paths):
    """Draws detections on each picture; returns 1 when some picture could not be read."""
    detect, _server = _detector(options, configs["train"].mixed_precision)
    os.makedirs(options["output_dir"], exist_ok=True)
    results, failed = [], []
    for index, path in enumerate(paths, start=1):
        try:
            pixels = image_lib.read_picture(path)
            out = {k: v.numpy()[0] for k, v in detect(inputs=pixels[None]).items()}
        except (OSError, tf.errors.InvalidArgumentError, image_lib.BadImage) as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(f"{path}: cannot read this image ({message}); skipped.", file=sys.stderr)
            failed.append(path)
            continue
        picture = visualize.Image.fromarray(pixels.numpy())
        n = int(out["num_detections"])
        boxes, scores = out["detection_boxes"][:n], out["detection_scores"][:n]
        names = [name.decode() for name in out["detection_class_names"][:n]]
        drawn = visualize.draw_detections(picture, boxes, scores, names, options["score_threshold"],
                                          out["detection_classes"][:n])
        stem, ext = os.path.splitext(os.path.basename(path))
        target = os.path.join(options["output_dir"],
                              stem + (ext if ext.lower() in (".jpg", ".jpeg", ".png") else ".png"))
        drawn.save(target, **({"quality": 95} if target.lower().endswith((".jpg", ".jpeg")) else {}))
        width, height = picture.size
        image_id = int(stem) if stem.isdigit() else index
        pixel_boxes = box_lib.denormalise(tf.constant(boxes, tf.float32), height, width)
        for bbox, score, cls in zip(evaluation.coco_bboxes(pixel_boxes), scores, out["detection_classes"][:n]):
            results.append({"image_id": image_id, "file_name": os.path.basename(path),
                            "category_id": int(cls), "bbox": bbox, "score": float(score)})
        shown = [f"{nm} {sc:.2f}" for nm, sc in zip(names, scores) if sc >= options["score_threshold"]]
        print(f"{path}: {len(shown)} detection(s) >= {options['score_threshold']}"
              f"{': ' + ', '.join(shown[:8]) if shown else ''}{' ...' if len(shown) > 8 else ''} -> {target}")
    with open(os.path.join(options["output_dir"], "detections.json"), "w") as f:
        json.dump(results, f)
    print(f"Detections (COCO results format) written to {os.path.join(options['output_dir'], 'detections.json')}")
    return 1 if failed else 0
