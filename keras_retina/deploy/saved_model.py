"""SavedModel export for TF Serving: decoding, resize, network and postprocessing in one graph.

`export_saved_model(model, label_map, export_base, version=None, postprocess=PostprocessSettings())` writes
`export_base/<version>/` (default: one more than the highest there) with `saved_model.pb`,
`variables/`, `assets/label_map.json` and `assets/model_info.json` (its compute precision and input,
`model_info`); returns its path. UsageError when that version exists.
Signatures (`DetectionServer`), each image resized (`modeling.transform`) and detected on its own:
`serving_default`, input `inputs` string `[B]` of encoded images (JPEG, PNG, BMP, a GIF's first frame;
sizes mixed); `serving_image_tensor`, input `inputs` uint8 `[B, H, W, 3]` RGB. Outputs (the TF Object
Detection API's), D = max_detections (100): `detection_boxes` float32 `[B, D, 4]` yxyx normalised to
each original image; `detection_scores` float32 `[B, D]`, descending; `detection_classes` float32
`[B, D]`, the dataset's category ids, 0 on padding rows; `detection_class_names` string `[B, D]`, ""
on padding rows; `num_detections` float32 `[B]`. A request beyond MAX_BATCH images, MAX_IMAGE_PIXELS
per image or MAX_REQUEST_PIXELS / MAX_REQUEST_BYTES in all is refused with InvalidArgument before
anything is decoded.
"""

import json
import os

import keras
import tensorflow as tf

from keras_retina.errors import UsageError
from keras_retina.files import exclusive
from keras_retina.modeling import detection_decoder, transform
from keras_retina.ops.images import decode_image, encoded_pixels

# What one request may make the server allocate: every image's pixels are read from its file
# header before anything is decoded (`ops.images.encoded_pixels`), and a refusal is InvalidArgument.
MAX_BATCH = 64
MAX_IMAGE_PIXELS = 50_000_000  # a 8660 x 5770 photo; decoded: 150 MB
MAX_REQUEST_PIXELS = 200_000_000  # encoded inputs; a uint8 tensor is in memory already
MAX_REQUEST_BYTES = 64 << 20
PARALLEL_IMAGES = 2  # images of a request in flight at once (each runs the network on its own)


class DetectionServer(tf.Module):
    """The serving graph around a trained RetinaNet (see module docstring).

    Args:
      model: a RetinaNet.
      label_map: [{"id", "name"}] per contiguous class.
      postprocess: `modeling.detection_decoder.PostprocessSettings` (None: the model's own).
      max_image_pixels: a larger picture is refused (InvalidArgument) before it is decoded.
    """

    def __init__(self, model, label_map, *, postprocess=None, max_image_pixels=MAX_IMAGE_PIXELS,
                 **renamed_keywords):
        super().__init__(name="retinanet_server")
        postprocess = detection_decoder.postprocess_settings(postprocess, renamed_keywords, "DetectionServer")
        self.model = model
        self.max_image_pixels = int(max_image_pixels)
        self.decoder = postprocess.apply(model.decoder)
        config = self.decoder.get_config()
        self.postprocess_config = {key: config[key] for key in detection_decoder.SETTINGS}
        self.policy = model.resize_policy
        self.label_ids = tf.constant([float(e["id"]) for e in label_map], tf.float32)
        self.label_names = tf.constant([str(e["name"]) for e in label_map], tf.string)

    def _detect_one(self, image):
        """uint8 [H, W, 3] -> this picture's detections (the signatures' outputs without the batch
        axis), from the network run on it alone, resized and padded as in training and evaluation
        (`transform.to_model_input`)."""
        padded, scale = transform.to_model_input(image, self.policy)
        picture = transform.resized_size(tf.shape(image)[0], tf.shape(image)[1], scale, self.policy.rounding)
        out = self.decoder(self.model(padded[None], training=False), input_size=tf.shape(padded)[:2],
                           picture_sizes=picture[None])
        out = {name: value[0] for name, value in out.items()}
        valid = tf.range(tf.shape(out["classes"])[0]) < out["num_detections"]
        boxes = transform.to_original(out["boxes"], scale, tf.shape(image)[:2], normalised=True,
                                          resized_hw=picture)
        classes = tf.maximum(out["classes"], 0)
        return {
            "detection_boxes": tf.where(valid[:, None], boxes, 0.0),
            "detection_scores": out["scores"],
            "detection_classes": tf.where(valid, tf.gather(self.label_ids, classes), 0.0),
            "detection_class_names": tf.where(valid, tf.gather(self.label_names, classes), ""),
            "num_detections": tf.cast(out["num_detections"], tf.float32),
        }

    def _detect_each(self, fn, inputs):
        count = self.postprocess_config["max_detections"]
        signature = {"detection_boxes": tf.TensorSpec([count, 4], tf.float32),
                     "detection_scores": tf.TensorSpec([count], tf.float32),
                     "detection_classes": tf.TensorSpec([count], tf.float32),
                     "detection_class_names": tf.TensorSpec([count], tf.string),
                     "num_detections": tf.TensorSpec([], tf.float32)}
        return tf.map_fn(fn, inputs, fn_output_signature=signature, parallel_iterations=PARALLEL_IMAGES)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def serve_encoded(self, inputs):
        with tf.control_dependencies(_batch_checks(inputs) + [tf.debugging.assert_less_equal(
                tf.reduce_sum(tf.cast(tf.strings.length(inputs), tf.int64)), tf.constant(MAX_REQUEST_BYTES, tf.int64),
                message=f"the images of a request have more than {MAX_REQUEST_BYTES:,} bytes together")]):
            pixels = tf.map_fn(encoded_pixels, inputs, fn_output_signature=tf.int64)
        with tf.control_dependencies([
                tf.debugging.assert_non_negative(pixels, message="an input is not a JPEG, PNG, GIF, BMP or still "
                                                 "WebP image"),
                tf.debugging.assert_less_equal(pixels, tf.constant(self.max_image_pixels, tf.int64), message=(
                    f"an image has more than {self.max_image_pixels:,} pixels (all frames of a GIF counted)")),
                tf.debugging.assert_less_equal(tf.reduce_sum(pixels), tf.constant(MAX_REQUEST_PIXELS, tf.int64),
                                               message=f"the images of a request have more than "
                                               f"{MAX_REQUEST_PIXELS:,} pixels together")]):
            inputs = tf.identity(inputs)
        return self._detect_each(lambda encoded: self._detect_one(decode_image(encoded)), inputs)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="inputs")])
    def serve_image_tensor(self, inputs):
        shape = tf.cast(tf.shape(inputs), tf.int64)
        with tf.control_dependencies(_batch_checks(inputs) + [
                tf.debugging.Assert((shape[0] == 0) | (shape[1] * shape[2] > 0), ["an image has no pixels"]),
                tf.debugging.assert_less_equal(shape[1] * shape[2], tf.constant(self.max_image_pixels, tf.int64),
                                               message=f"an image has more than {self.max_image_pixels:,} pixels")]):
            inputs = tf.identity(inputs)
        return self._detect_each(self._detect_one, inputs)


def _batch_checks(inputs):
    return [tf.debugging.assert_less_equal(tf.shape(inputs)[0], MAX_BATCH,
                                           message=f"a request holds more than {MAX_BATCH} images")]


def next_version(export_base):
    """1 + the highest integer-named folder in `export_base` (1 when there is none)."""
    if not tf.io.gfile.isdir(export_base):
        return 1
    versions = [int(name.strip("/")) for name in tf.io.gfile.listdir(export_base) if name.strip("/").isdigit()]
    return max(versions, default=0) + 1


def export_saved_model(model: keras.Model, label_map: list[dict], export_base: str, version: int | None = None, *,
                       postprocess: detection_decoder.PostprocessSettings | None = None, **renamed_keywords) -> str:
    """Writes the SavedModel; returns its path `export_base/<version>`. `postprocess`:
    PostprocessSettings fixed in the graph. The base is locked while a version is chosen and
    written: a second export waits, then takes the next version."""
    postprocess = detection_decoder.postprocess_settings(postprocess, renamed_keywords, "export_saved_model")
    with exclusive(export_base, "keras_retina export", wait=True):
        return _export(model, label_map, export_base, version, postprocess)


def model_info(model):
    """assets/model_info.json: what the graph computes in and the input it expects."""
    from keras_retina.version import __version__

    compute = "bfloat16" if model.dtype_policy.compute_dtype == "bfloat16" else model.dtype_policy.compute_dtype
    info = {"keras_retina": __version__, "compute_precision": compute, "keras_dtype_policy": model.dtype_policy.name,
            "resize": model.resize_policy.to_json()}
    if compute == "bfloat16":
        info["note"] = ("Convolutions run in bfloat16: faster than float32 on CPUs where keras_retina's "
                        "--mixed_precision=auto measured it faster (e.g. AMX Xeons, AMD Zen 4), slower on others; "
                        "export a float32 version for those.")
    return info


def _export(model, label_map, export_base, version, postprocess):
    version = next_version(export_base) if version is None else int(version)
    path = os.path.join(export_base, str(version))
    if tf.io.gfile.exists(path):
        raise UsageError(f"{path} exists already; TF Serving versions are immutable. "
                              f"Choose another --version or leave it out to take the next one.")
    server = DetectionServer(model, label_map, postprocess=postprocess)
    # keras.export.ExportArchive saves the variables the endpoints use so that TensorFlow's
    # session-based loader (TF Serving, saved_model_cli) restores them; a plain
    # tf.saved_model.save of a module holding the Keras model does not.
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", server.serve_encoded)
    archive.add_endpoint("serving_image_tensor", server.serve_image_tensor)
    # Write next to the target and rename, so TF Serving never sees a half-written version.
    partial = path + ".partial"
    if tf.io.gfile.exists(partial):  # left by an export that died; nobody else writes here (locked)
        tf.io.gfile.rmtree(partial)
    archive.write_out(partial, verbose=False)
    # The label map's ids and names are constants in the graph; the files are for people and tools.
    tf.io.gfile.makedirs(os.path.join(partial, "assets"))
    with tf.io.gfile.GFile(os.path.join(partial, "assets", "label_map.json"), "w") as f:
        json.dump(label_map, f, indent=1)
    with tf.io.gfile.GFile(os.path.join(partial, "assets", "model_info.json"), "w") as f:
        json.dump(model_info(model), f, indent=1)
    tf.io.gfile.rename(partial, path)
    return path
