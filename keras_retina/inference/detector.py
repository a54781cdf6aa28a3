"""One picture detector from any kind of model: a model_dir, an exported SavedModel, a LiteRT / ONNX file.

`picture_detector(model=FILE | saved_model=FOLDER | model_dir=DIR)` returns a function: uint8
picture `[H, W, 3]` (as viewers show it) -> (boxes `[n, 4]` yxyx normalised to the picture,
scores `[n]`, category ids `[n]`, class names). `batch_detector(...)` (same arguments) returns
one for a batch of pictures of one size (video frames, tiles): uint8 `[B, H, W, 3]` -> a list of
B such tuples; a model_dir and a SavedModel run the batch in one call, a file picture by picture.
A model_dir is served by the SavedModel's own graph built in process
(`deploy.saved_model.DetectionServer`), a SavedModel through its uint8 signature, a file through
its runtime (`deploy.runtime`: letterboxed into its fixed input), so
every kind maps boxes back to the picture the same way. `postprocess`
(`modeling.detection_decoder.PostprocessSettings`) applies to a model_dir; exported models have
theirs fixed (SettingsError when given for a file).
"""

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_retina.deploy import runtime
from keras_retina.deploy import saved_model as saved_model_lib
from keras_retina.errors import DataError, SettingsError, UsageError
from keras_retina.model_dir import CHECKPOINTS, ModelDir
from keras_retina.modeling import detection_decoder
from keras_retina.modeling.precision import set_precision
from keras_retina.ops import images as image_lib

# (boxes [n, 4] yxyx normalised to the picture, scores [n], category ids [n], class names)
Detections = tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]


def picture_detector(model: str | None = None, saved_model: str | None = None, model_dir: str | None = None,
                     mixed_precision: str = "none", checkpoint: str = "best", *,
                     postprocess: detection_decoder.PostprocessSettings | None = None,
                     **renamed_keywords) -> Callable[[np.ndarray], Detections]:
    """A function: uint8 picture `[H, W, 3]` -> its detections (module docstring).

    model: a .tflite / .onnx file; saved_model: an exported SavedModel version folder; model_dir: a
      training run's folder (give one of the three).
    mixed_precision: a model_dir's compute precision ("none", "bfloat16", "auto").
    checkpoint: a model_dir's "best" or "latest" checkpoint.
    postprocess: a model_dir's decoder settings (a file's or SavedModel's were fixed at export).
    """
    postprocess = detection_decoder.postprocess_settings(postprocess, renamed_keywords, "picture_detector")
    detect = batch_detector(model, saved_model, model_dir, mixed_precision, checkpoint, postprocess=postprocess)
    return lambda pixels: detect(pixels[None])[0]


def batch_detector(model: str | None = None, saved_model: str | None = None, model_dir: str | None = None,
                   mixed_precision: str = "none", checkpoint: str = "best", *,
                   postprocess: detection_decoder.PostprocessSettings | None = None,
                   **renamed_keywords) -> Callable[[np.ndarray], list[Detections]]:
    """A function: uint8 pictures of one size `[B, H, W, 3]` -> B detections (module docstring);
    the arguments are `picture_detector`'s."""
    postprocess = detection_decoder.postprocess_settings(postprocess, renamed_keywords, "batch_detector")
    check_model(model, saved_model, model_dir, checkpoint, postprocess=postprocess)
    if model:
        detect_picture = runtime.load(model).detect_picture
        return lambda batch: [detect_picture(pixels) for pixels in batch]
    if saved_model:
        try:
            signature = tf.saved_model.load(saved_model).signatures["serving_image_tensor"]
        except (OSError, KeyError) as error:
            raise DataError(f"--saved_model={saved_model}: not an exported keras_retina "
                            f"version folder ({type(error).__name__}: {str(error)[:200]}).") from None
        return lambda batch: _per_picture(signature(inputs=tf.convert_to_tensor(batch)))
    if model_dir:
        run = ModelDir(model_dir)
        set_precision(mixed_precision, run.model_config)
        net, label_map, _, _ = run.load_model(which=checkpoint)
        # The readers' pixel limit, not the serving one: local pictures are the user's own.
        server = saved_model_lib.DetectionServer(net, label_map, postprocess=postprocess,
                                                 max_image_pixels=image_lib.MAX_PIXELS)
        return lambda batch: _per_picture(server.serve_image_tensor(tf.convert_to_tensor(batch)))
    raise UsageError("predict needs --model (a .tflite / .onnx file), --saved_model (an exported version "
                     "folder) or --model_dir.")


def check_model(model: str | None = None, saved_model: str | None = None, model_dir: str | None = None,
                checkpoint: str = "best", *, postprocess: detection_decoder.PostprocessSettings | None = None):
    """What `batch_detector` would refuse, found without loading the model (a batch run's launcher
    checks it before any worker loads it): two models named, a missing file or folder, a model_dir
    without config.json or checkpoint, an unknown --checkpoint, postprocessing settings for a
    LiteRT / ONNX file. A UsageError / DataError naming the flag."""
    given = [f"--{name}={value}" for name, value in (("model", model), ("saved_model", saved_model),
                                                      ("model_dir", model_dir)) if value]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} {'both' if len(given) == 2 else 'each'} name a model; give one.")
    if model:
        settings = sorted(postprocess.given()) if postprocess is not None else []
        if settings:
            raise SettingsError(settings, "a LiteRT / ONNX file's postprocessing was fixed when it was exported; "
                                          "export it again with them.")
        runtime.check_file(model)
    elif saved_model:
        if not tf.io.gfile.exists(saved_model.rstrip("/") + "/saved_model.pb"):
            raise DataError(f"--saved_model={saved_model}: not an exported keras_retina version folder (no "
                            f"saved_model.pb there; give EXPORT_DIR/NAME/VERSION).")
    elif model_dir:
        if checkpoint not in CHECKPOINTS:
            raise UsageError(f"--checkpoint={checkpoint}: choose one of {', '.join(CHECKPOINTS)}.")
        run = ModelDir(model_dir)
        run.model_config()  # a DataError naming the folder when config.json is missing or not ours
        if run.latest_checkpoint() is None:
            raise DataError(f"--model_dir={model_dir}: no checkpoint in {run.checkpoint_dir} yet.")


def _per_picture(out):
    """The serving signature's outputs for a batch -> the detector's tuple per picture."""
    out = {k: v.numpy() for k, v in out.items()}
    found = []
    for i in range(len(out["num_detections"])):
        n = int(out["num_detections"][i])
        names = [name.decode() for name in out["detection_class_names"][i, :n]]
        found.append((out["detection_boxes"][i, :n], out["detection_scores"][i, :n],
                      out["detection_classes"][i, :n], names))
    return found
