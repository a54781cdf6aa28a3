"""Raw head outputs -> final detections (paper section 4.1, "Inference"): the `DetectionDecoder` layer.

Per pyramid level the `pre_nms_top_k` (1000) highest-scoring (anchor, class) pairs with score above
`score_threshold` (0.05) are decoded; the candidates of all levels go through class-wise greedy NMS
at IoU `nms_iou_threshold` (0.5), and the `max_detections` (100) best are kept. Boxes are clipped to
the picture (`picture_sizes`, default the whole input) "before_nms" (ours, torchvision's) or
"after_nms" (detectron2's), as `clip_boxes` says; with `drop_empty_boxes` a box with no area once
clipped is never a detection. Settings out of range raise ValueError.

Input: dict `classification` `[B, A_total, K]` logits and `box` `[B, A_total, 4]` deltas in anchor
order; `input_size`: the input's (height, width), ints or a tensor; optional `picture_sizes` int
`[B, 2]`. Output: dict `boxes` `[B, D, 4]` float32 yxyx pixels of the model input, `scores` `[B, D]`
float32 descending, `classes` `[B, D]` int32 0..K-1, `num_detections` `[B]` int32 (D = max_detections);
padding rows have boxes 0, scores 0, classes -1.

Score voting (`box_voting_sigma` > 0; off by default, the paper has none): after NMS each detection's
box becomes the average of the candidates of its class (above the score threshold, overlapping it by
more than 0.01 IoU, itself included), weighted by score x exp(-(1 - IoU)^2 / sigma): the score voting
of PAA (Kim and Lee, ECCV 2020; sigma 0.025 in the authors' code, the same rule in mmdetection's). Its
score and class stay. The many overlapping candidates of an object each see its edges a little
differently; their average fits better than the single best, which matters most at IoU 0.75.
`PostprocessSettings` are SETTINGS chosen after
training (export, predict); `.apply(decoder)` copies a decoder with them.
"""

import dataclasses
import warnings

import keras
import tensorflow as tf

from keras_retina import renamed
from keras_retina.errors import SettingsError
from keras_retina.modeling import anchors as anchor_lib
from keras_retina.ops import box_coder
from keras_retina.ops import boxes as box_lib

SCORE_THRESHOLD = 0.05
PRE_NMS_TOP_K = 1000
NMS_IOU_THRESHOLD = 0.5
MAX_DETECTIONS = 100
BOX_VOTING_SIGMA = 0.0  # off: the paper's decoder. PAA's score voting uses 0.025
VOTING_MIN_IOU = 0.01  # candidates overlapping a detection at most this much do not vote (PAA's code)
SETTINGS = ("score_threshold", "pre_nms_top_k", "nms_iou_threshold", "max_detections",
            "box_voting_sigma")  # set at export time
# The rules of SETTINGS, stated once: the decoder checks its arguments with them, ModelConfig its fields
# and the command line the flags that override them at export and predict time.
CHECKS = {
    "score_threshold": (lambda v: 0 <= v < 1, "must be in [0, 1)."),
    "pre_nms_top_k": (lambda v: v >= 1, "must be positive."),
    "nms_iou_threshold": (lambda v: 0 < v <= 1, "must be in (0, 1]."),
    "max_detections": (lambda v: v >= 1, "must be positive."),
    "box_voting_sigma": (lambda v: v >= 0, "must be 0 (off) or positive (0.025: PAA's)."),
}
CLIPPING = ("before_nms", "after_nms")
CONVENTIONS = ("clip_boxes", "drop_empty_boxes")  # a library's order of clipping and NMS: the model's


@dataclasses.dataclass(frozen=True, kw_only=True)
class PostprocessSettings:
    """The decoder's SETTINGS chosen after training, at export or predict time; keyword-only, frozen,
    checked when made by CHECKS (a SettingsError naming the setting). None keeps the model's value.

    score_threshold: detections scoring below it are dropped, [0, 1) (paper section 4.1: 0.05).
    pre_nms_top_k: candidates kept per pyramid level before NMS, positive (paper: 1000).
    nms_iou_threshold: the overlap at which class-wise NMS drops a box, (0, 1] (paper: 0.5).
    max_detections: detections kept per picture after NMS, positive (100).
    box_voting_sigma: 0 (off, the paper's) or sigma of score voting (module docstring; PAA: 0.025).
    """

    score_threshold: float | None = None
    pre_nms_top_k: int | None = None
    nms_iou_threshold: float | None = None
    max_detections: int | None = None
    box_voting_sigma: float | None = None

    def __post_init__(self):
        for name, value in self.given().items():
            check, message = CHECKS[name]
            if not check(value):
                raise SettingsError([name], f"{value} {message}")

    def given(self) -> dict:
        """{setting: value} of the settings given (not None)."""
        return {name: getattr(self, name) for name in SETTINGS if getattr(self, name) is not None}

    def apply(self, decoder: "DetectionDecoder") -> "DetectionDecoder":
        """A copy of `decoder` with these settings (the others its own)."""
        return DetectionDecoder.from_config({**decoder.get_config(), **self.given()})


def postprocess_settings(postprocess, keywords, where):
    """`postprocess` (PostprocessSettings or None: the model's own), or one made of the settings given
    as keyword arguments (`keywords`, SETTINGS' names), the spelling before PostprocessSettings: kept
    for one release with a DeprecationWarning. Other keywords, or both spellings: TypeError."""
    given = {name: keywords.pop(name) for name in SETTINGS if name in keywords}
    renamed.no_others(keywords, where)
    if not given:
        return postprocess or PostprocessSettings()
    if postprocess is not None:
        raise TypeError(f"{where}: give postprocess=PostprocessSettings(...) alone, not also {sorted(given)}.")
    warnings.warn(f"{where}: {', '.join(sorted(given))}= are now postprocess=PostprocessSettings(...) (the same "
                  f"meaning); the keyword arguments go in the next release.", DeprecationWarning, stacklevel=3)
    return PostprocessSettings(**given)


@keras.saving.register_keras_serializable(package="keras_retina")
class DetectionDecoder(keras.layers.Layer):
    """Decoding, per-level top-k, score threshold, class-wise NMS (see module docstring).

    Args:
      input_size: int or (height, width) of the model input when it is fixed, or None: each
        call gives the input's size.
      anchor_generator: the `anchors.AnchorGenerator` the model was built with
        (default: the paper's geometry).
      box_coder_weights: as used by the label encoder.
      score_threshold, pre_nms_top_k, nms_iou_threshold, max_detections:
        the paper's inference parameters.
      box_voting_sigma: 0 (off) or score voting's sigma (module docstring).
      clip_boxes: "before_nms" or "after_nms"; drop_empty_boxes: bool (module docstring).
    """

    def __init__(
        self,
        input_size=None,
        anchor_generator=None,
        box_coder_weights=box_coder.DEFAULT_WEIGHTS,
        score_threshold=SCORE_THRESHOLD,
        pre_nms_top_k=PRE_NMS_TOP_K,
        nms_iou_threshold=NMS_IOU_THRESHOLD,
        *, max_detections=MAX_DETECTIONS,
        box_voting_sigma=BOX_VOTING_SIGMA,
        clip_boxes="before_nms",
        drop_empty_boxes=True,
        **kwargs,
    ):
        input_size = renamed.argument(kwargs, "image_size", "input_size", input_size, "DetectionDecoder")
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        for name, value in zip(SETTINGS, (score_threshold, pre_nms_top_k, nms_iou_threshold, max_detections,
                                          box_voting_sigma)):
            if not CHECKS[name][0](value):
                raise ValueError(f"DetectionDecoder: {name}={value} {CHECKS[name][1]}")
        if clip_boxes not in CLIPPING:
            raise ValueError(f"clip_boxes={clip_boxes!r}: choose one of {', '.join(CLIPPING)}.")
        self.clip_boxes = clip_boxes
        self.drop_empty_boxes = bool(drop_empty_boxes)
        self.input_size = None if input_size is None else anchor_lib.config_input_size(input_size)
        self.anchor_generator = anchor_lib.deserialize_generator(anchor_generator)
        self.box_coder_weights = tuple(box_coder_weights)
        self.score_threshold = score_threshold
        self.pre_nms_top_k = pre_nms_top_k
        self.nms_iou_threshold = nms_iou_threshold
        self.max_detections = max_detections
        self.box_voting_sigma = float(box_voting_sigma)

    def call(self, outputs, input_size=None, picture_sizes=None, **renamed_arguments):
        input_size = anchor_lib.call_input_size("DetectionDecoder", input_size, self.input_size, renamed_arguments)
        logits = tf.cast(outputs["classification"], tf.float32)
        deltas = tf.cast(outputs["box"], tf.float32)
        num_classes = logits.shape[-1]
        batch = tf.shape(logits)[0]
        static = anchor_lib.static_hw(input_size)
        height, width = static if static else (input_size[0], input_size[1])
        anchors_by_level = self.anchor_generator.by_level(static or input_size)
        counts = self.anchor_generator.level_counts(static or input_size)

        level_boxes, level_scores, level_classes = [], [], []
        start = 0
        for name, count in zip(sorted(anchors_by_level, key=lambda n: int(n[1:])), counts):
            level_anchors = anchors_by_level[name]
            flat_logits = tf.reshape(logits[:, start:start + count], [batch, count * num_classes])
            k = tf.minimum(self.pre_nms_top_k, count * num_classes)
            # Sigmoid is monotonic: top-k on logits, sigmoid on the k survivors only.
            top_logits, top_index = tf.math.top_k(flat_logits, k=k, sorted=False)
            anchor_index = top_index // num_classes
            selected_deltas = tf.gather(deltas[:, start:start + count], anchor_index, batch_dims=1)
            selected_anchors = tf.gather(tf.convert_to_tensor(level_anchors, tf.float32), anchor_index)
            level_boxes.append(box_coder.decode(selected_deltas, selected_anchors, self.box_coder_weights))
            level_scores.append(tf.sigmoid(top_logits))
            level_classes.append(top_index % num_classes)
            start += count

        if picture_sizes is None:
            limits = (tf.cast(height, tf.float32), tf.cast(width, tf.float32))
        else:
            sizes = tf.cast(picture_sizes, tf.float32)
            limits = (sizes[:, :1], sizes[:, 1:])  # [B, 1]: broadcast over candidates
        boxes = tf.concat(level_boxes, 1)  # [B, C, 4]
        scores = tf.concat(level_scores, 1)  # [B, C]
        classes = tf.concat(level_classes, 1)  # [B, C]
        scores = tf.where(scores > self.score_threshold, scores, 0.0)
        if self.clip_boxes == "before_nms":
            boxes = _clip(boxes, limits)
            if self.drop_empty_boxes:
                scores = tf.where(_has_area(boxes), scores, 0.0)
            low, extent = 0.0, tf.cast(tf.maximum(height, width), tf.float32)
        else:  # NMS on the decoded boxes as they are: shift the class offsets past their whole span
            low = tf.reduce_min(boxes, axis=[1, 2], keepdims=True)
            extent = tf.reduce_max(boxes, axis=[1, 2], keepdims=True) - low
        # Class-wise NMS as one NMS per image (torchvision's batched_nms trick): each class shifted by
        # class_id * (extent + 1), so boxes of different classes never overlap.
        offset = tf.cast(classes, tf.float32)[..., None] * (extent + 1.0)
        shifted = boxes - low + offset
        if logits.shape[0] == 1:  # a fixed batch of one (LiteRT's input): no loop in the graph
            keep, num_detections = self._nms_one_image((shifted[0], scores[0]))
            keep, num_detections = keep[None], num_detections[None]
        else:
            keep, num_detections = tf.map_fn(
                self._nms_one_image,
                (shifted, scores),
                fn_output_signature=(tf.TensorSpec([self.max_detections], tf.int32),
                                     tf.TensorSpec([], tf.int32)),
            )
        valid = tf.range(self.max_detections)[None, :] < num_detections[:, None]
        kept_boxes = tf.gather(boxes, keep, batch_dims=1)
        if self.box_voting_sigma > 0:
            kept_boxes = self._vote(kept_boxes, tf.gather(classes, keep, batch_dims=1), boxes, scores, classes)
        if self.clip_boxes == "after_nms":
            kept_boxes = _clip(kept_boxes, limits)
            if self.drop_empty_boxes:  # after the max_detections cut, as detectron2 drops them
                valid = valid & _has_area(kept_boxes)
                # valid rows first, in their order: keys unique, so top_k's order is exact
                rank = tf.range(self.max_detections)[None, :]
                _, order = tf.math.top_k(-tf.where(valid, rank, rank + self.max_detections), self.max_detections)
                keep = tf.gather(keep, order, batch_dims=1)
                kept_boxes = tf.gather(kept_boxes, order, batch_dims=1)
                num_detections = tf.reduce_sum(tf.cast(valid, tf.int32), axis=1)
                valid = tf.range(self.max_detections)[None, :] < num_detections[:, None]
        return {
            "boxes": tf.where(valid[..., None], kept_boxes, 0.0),
            "scores": tf.where(valid, tf.gather(scores, keep, batch_dims=1), 0.0),
            "classes": tf.where(valid, tf.gather(classes, keep, batch_dims=1), -1),
            "num_detections": num_detections,
        }

    def _vote(self, kept_boxes, kept_classes, boxes, scores, classes):
        """Score voting: each kept box `[B, D, 4]` -> the average of the candidates `[B, C, 4]` of its
        class that score above the threshold and overlap it by more than VOTING_MIN_IOU, weighted by
        score x exp(-(1 - IoU)^2 / sigma). Fixed shapes (a [B, D, C] weight matrix and a batched
        matmul), so it runs inside every exported file."""
        iou = box_lib.pairwise_iou(kept_boxes, boxes)  # [B, D, C]
        voters = ((kept_classes[:, :, None] == classes[:, None, :]) & (scores[:, None, :] > 0.0)
                  & (iou > VOTING_MIN_IOU))
        weights = tf.where(voters, scores[:, None, :] * tf.exp(-tf.square(1.0 - iou) / self.box_voting_sigma), 0.0)
        total = tf.reduce_sum(weights, axis=-1, keepdims=True)  # > 0 for a real detection: it votes for itself
        voted = tf.matmul(weights, boxes) / tf.maximum(total, 1e-12)
        return tf.where(total > 0.0, voted, kept_boxes)

    def _nms_one_image(self, args):
        boxes, scores = args
        # Padded to max_detections with the count returned beside it: the output's length is fixed,
        # which LiteRT's and ONNX's NMS kernels need (their outputs always have that length).
        # NonMaxSuppressionV5: a core TensorFlow op, which TF Serving runs.
        keep, _, count = tf.raw_ops.NonMaxSuppressionV5(
            boxes=boxes, scores=scores, max_output_size=self.max_detections,
            iou_threshold=self.nms_iou_threshold, score_threshold=self.score_threshold,
            soft_nms_sigma=0.0, pad_to_max_output_size=True,
        )
        return keep, count

    @classmethod
    def from_config(cls, config):
        # layer configs saved before the rename hold the input's size as "image_size"
        return super().from_config(renamed.config_key(config, "image_size", "input_size"))

    def get_config(self):
        config = super().get_config()
        config.update(
            input_size=self.input_size,
            anchor_generator=keras.saving.serialize_keras_object(self.anchor_generator),
            box_coder_weights=list(self.box_coder_weights),
            score_threshold=self.score_threshold,
            pre_nms_top_k=self.pre_nms_top_k,
            nms_iou_threshold=self.nms_iou_threshold,
            max_detections=self.max_detections,
            box_voting_sigma=self.box_voting_sigma,
            clip_boxes=self.clip_boxes,
            drop_empty_boxes=self.drop_empty_boxes,
        )
        return config


def _clip(boxes, limits):
    """yxyx boxes `[B, D, 4]` clipped to (height, width) `limits` (scalars or `[B, 1]`)."""
    height, width = limits
    return box_lib.clip_to_image(boxes, height, width)


def _has_area(boxes):
    """bool `[B, D]`: the box has positive height and width."""
    return (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
