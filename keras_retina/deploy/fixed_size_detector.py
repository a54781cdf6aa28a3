"""The whole detector at one input size fixed at export: the graph LiteRT and ONNX files hold.

`detection_function(model, label_map, input_size, batch=1, decoder=None)` -> a
`tf.function` with one input signature:
- input `images`: uint8 `[B, H, W, 3]` RGB, (H, W) = `input_size` (sides multiples of 32); B is 1
  (LiteRT) or None (any batch: ONNX).
- outputs, the TF Object Detection API's names as in `deploy.saved_model`, D = max_detections (100):
  `detection_boxes` float32 `[B, D, 4]` yxyx normalised to the input (0..1 of H and W);
  `detection_scores` float32 `[B, D]`, descending; `detection_classes` float32 `[B, D]`, the
  dataset's category ids, 0 on padding rows; `num_detections` float32 `[B]`. Class names travel
  in the file's metadata (`deploy.metadata`).
The model runs, then `modeling.detection_decoder` (paper 4.1) under the name scope POSTPROCESS_SCOPE.
Pictures of any size go in by `modeling.transform.letterbox` and come back by `to_picture`.
`parse_input_size(text)` -> (H, W) (UsageError when malformed); `default_input_size(policy)`.
"""

import tensorflow as tf

from keras_retina.errors import UsageError
from keras_retina.modeling.anchors import SIZE_MULTIPLE

# Quantisation keeps this scope in float: anchors and decoded boxes need more than 8 bits.
POSTPROCESS_SCOPE = "postprocess"
INPUT_NAME = "images"
MAX_SIDE = 8192  # sides of the fixed input (and the most a file we are handed may claim)


def parse_input_size(text, flag="--input_size"):
    """"H,W" or "S" (a square) -> (H, W), each a positive multiple of 32, at most MAX_SIDE."""
    try:
        sides = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        sides = ()
    if len(sides) == 1:
        sides = sides * 2
    if len(sides) != 2 or any(s <= 0 or s % SIZE_MULTIPLE or s > MAX_SIDE for s in sides):
        raise UsageError(f"{flag}={text}: give HEIGHT,WIDTH (or one side for a square), each a positive "
                         f"multiple of {SIZE_MULTIPLE} up to {MAX_SIDE}, e.g. 480,640.")
    return sides


def default_input_size(policy):
    """The policy's canvas for every resized picture, `mixed_canvas`: up32(L) x up32(L) for the
    paper's shorter-side policy (1344 x 1344 at 800/1333, 128 x 128 for the demo), the square's
    canvas for "square". Every picture then goes in at the model's own scale, whatever its
    orientation. A smaller --input_size trades accuracy for speed; a camera's own aspect
    (480,640) wastes no pixels on padding."""
    return tuple(int(side) for side in policy.mixed_canvas)


def detection_function(model, label_map, input_size, batch=1, decoder=None):
    """The graph described in the module docstring, as a `tf.function` with one input signature;
    `decoder`: the model's with export time's settings (`PostprocessSettings.apply`), else
    the model's own."""
    height, width = input_size
    decoder = decoder or model.decoder
    label_ids = [float(entry["id"]) for entry in label_map]

    def detect(images):
        raw = model(tf.cast(images, tf.float32), training=False)
        with tf.name_scope(POSTPROCESS_SCOPE):
            out = decoder(raw, input_size=(height, width))
            valid = tf.range(decoder.max_detections)[None, :] < out["num_detections"][:, None]
            classes = tf.gather(tf.constant(label_ids, tf.float32), tf.maximum(out["classes"], 0))
            return {
                "detection_boxes": out["boxes"] / tf.constant([height, width, height, width], tf.float32),
                "detection_scores": out["scores"],
                "detection_classes": tf.where(valid, classes, 0.0),
                "num_detections": tf.cast(out["num_detections"], tf.float32),
            }

    return tf.function(detect, input_signature=[tf.TensorSpec([batch, height, width, 3], tf.uint8,
                                                              name=INPUT_NAME)])
