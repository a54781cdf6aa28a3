"""The whole detector at one input size fixed at export: the graph LiteRT and ONNX files hold.

`detection_function(model, label_map, input_size, batch)` is a `tf.function`:

- input `images`: uint8 `[B, H, W, 3]` RGB, (H, W) = `input_size` (sides multiples of 32); B is
  1 for LiteRT (a phone runs one frame at a time; the graph then has no loop) or None (any
  batch) for ONNX.
- outputs, the TF Object Detection API's names and meanings as in the SavedModel (`export`),
  with D = max_detections (100):
  `detection_boxes` float32 `[B, D, 4]` `[ymin, xmin, ymax, xmax]` normalised to the input
  (0..1 of H and W); `detection_scores` float32 `[B, D]`, descending; `detection_classes`
  float32 `[B, D]`, the dataset's category ids (COCO ids for COCO), 0 on padding rows;
  `num_detections` float32 `[B]`. Class names are not a tensor (LiteRT and ONNX graphs have no
  string ops worth using): they travel in the file's metadata (`deploy_metadata`).

Inside: the model (its own input normalisation), then the decoder of `postprocess` (decoding,
per-level top-k, score threshold, class-wise NMS; paper section 4.1) run under the name scope
POSTPROCESS_SCOPE, so quantisation can tell the network (quantised) from the postprocessing
(kept in float: anchors and decoded boxes need more than 8 bits).

How a picture of any size goes in (`letterbox`, what `predict --model=FILE` and the evaluation
do, and what a mobile app should do): scale it as the model's resize policy does (the paper's
shorter side S, longer side at most L; `resize_policy`), or less when that does not fit the
input: scale = min(S / shorter side, L / longer side, H / h, W / w) (sides rounded as the policy
rounds them), bilinear; put it at the top left and fill the rest with the model's pad colour
(black unless the model says otherwise; rounded to uint8). The file's metadata holds S, L, the
rounding and the pad colour. `to_picture` maps the outputs back: normalised to the input ->
normalised to the picture, clipped to it. Boxes are clipped to the whole input before NMS and
to the picture after it (the SavedModel, which knows the picture's size, clips before NMS; the
two differ only for boxes reaching into the padding). A frame stretched to H x W (the TFLite
Task Library's habit) also runs, but deforms objects the model learnt with their aspect kept.
"""

import numpy as np
import tensorflow as tf

from keras_retina import input_mapping, postprocess
from keras_retina.anchors import SIZE_MULTIPLE
from keras_retina.errors import UsageError

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


def detection_function(model, label_map, input_size, batch=1, **postprocess_overrides):
    """The graph described in the module docstring, as a `tf.function` with one input signature."""
    height, width = input_size
    decoder = postprocess.with_overrides(model.decoder, **postprocess_overrides)
    label_ids = [float(entry["id"]) for entry in label_map]

    def detect(images):
        raw = model(tf.cast(images, tf.float32), training=False)
        with tf.name_scope(POSTPROCESS_SCOPE):
            out = decoder(raw, image_size=(height, width))
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


def letterbox(pixels, input_size, policy):
    """uint8 `[h, w, 3]` picture -> (uint8 `[H, W, 3]` input, scale), with the model's
    `resize_policy.ResizePolicy`: see the module docstring."""
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    scale = min(float(policy.scale(height, width)), input_size[0] / height, input_size[1] / width)
    resized, _ = input_mapping.resize(tf.convert_to_tensor(pixels), tf.zeros([0, 4]), scale,
                                      rounding=policy.rounding, method=policy.method)
    padded = input_mapping.pad_to(resized, input_size, policy.pad_color)
    return tf.cast(tf.round(tf.clip_by_value(padded, 0.0, 255.0)), tf.uint8).numpy(), scale


def to_picture(boxes, scale, input_size, picture_hw, rounding="round"):
    """`[D, 4]` boxes normalised to the input -> normalised to the picture of `picture_hw`
    (clipped to it); `scale` is `letterbox`'s, `rounding` the policy's."""
    pixels = np.asarray(boxes, np.float32) * np.array([*input_size, *input_size], np.float32)
    return np.asarray(input_mapping.to_original(pixels, scale, tuple(picture_hw), normalised=True, rounding=rounding))
