"""One picture detector from any kind of model: a model_dir, an exported SavedModel, a LiteRT / ONNX file.

`picture_detector(model=FILE | saved_model=FOLDER | model_dir=DIR)` returns a function: uint8
picture `[H, W, 3]` (as viewers show it) -> (boxes `[n, 4]` yxyx normalised to the picture,
scores `[n]`, category ids `[n]`, class names). A model_dir is served by the SavedModel's own
graph built in process (`deploy.saved_model.DetectionServer`), a SavedModel through its uint8
signature, a file through its runtime (`deploy.runtime`: letterboxed into its fixed input), so
every kind maps boxes back to the picture the same way. `postprocess` settings (score_threshold,
pre_nms_top_k, nms_iou_threshold, max_detections) apply to a model_dir; exported models have
theirs fixed (UsageError when given for a file).
"""

import tensorflow as tf

from keras_retina.deploy import runtime
from keras_retina.deploy import saved_model as saved_model_lib
from keras_retina.errors import DataError, UsageError
from keras_retina.model_dir import ModelDir
from keras_retina.modeling.precision import set_precision
from keras_retina.ops import images as image_lib


def picture_detector(model=None, saved_model=None, model_dir=None, mixed_precision="none", **postprocess):
    given = [f"--{name}={value}" for name, value in (("model", model), ("saved_model", saved_model),
                                                      ("model_dir", model_dir)) if value]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} {'both' if len(given) == 2 else 'each'} name a model; give one.")
    if model:
        settings = sorted(name for name, value in postprocess.items() if value is not None)
        if settings:
            raise UsageError(f"{', '.join(settings)}: a LiteRT / ONNX file's postprocessing was fixed when it was "
                             f"exported; export it again with them.")
        return runtime.load(model).detect_picture
    if saved_model:
        try:
            signature = tf.saved_model.load(saved_model).signatures["serving_image_tensor"]
        except (OSError, KeyError) as error:
            raise DataError(f"--saved_model={saved_model}: not an exported keras_retina "
                            f"version folder ({type(error).__name__}: {str(error)[:200]}).") from None
        return lambda pixels: _first_image(signature(inputs=tf.convert_to_tensor(pixels[None])))
    if model_dir:
        set_precision(mixed_precision)
        net, label_map, _, _ = ModelDir(model_dir).load_model()
        # The readers' pixel limit, not the serving one: local pictures are the user's own.
        server = saved_model_lib.DetectionServer(net, label_map, max_image_pixels=image_lib.MAX_PIXELS, **postprocess)
        return lambda pixels: _first_image(server.serve_image_tensor(tf.convert_to_tensor(pixels[None])))
    raise UsageError("predict needs --model (a .tflite / .onnx file), --saved_model (an exported version "
                     "folder) or --model_dir.")


def _first_image(out):
    """The serving signature's outputs for a batch of one -> the detector's tuple."""
    out = {k: v.numpy()[0] for k, v in out.items()}
    n = int(out["num_detections"])
    names = [name.decode() for name in out["detection_class_names"][:n]]
    return out["detection_boxes"][:n], out["detection_scores"][:n], out["detection_classes"][:n], names


