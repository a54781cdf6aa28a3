"""Ground truth -> per-anchor classification and box-regression targets (the `LabelEncoder` layer).

Paper section 4 ("Anchors"): an anchor with IoU >= 0.5 to a ground-truth box is assigned to it,
one with IoU < 0.4 to every box is background, and the rest are ignored. With
`allow_low_quality_matches=True` (the RPN rule the paper uses, as Detectron, detectron2 and the
Model Garden do) each ground-truth box also gets its best anchor(s) as foreground whatever their
IoU, unless it is 0; an anchor that is the best of several boxes goes to the one it overlaps most.
`assigner="atss"` replaces those rules with ATSS's per-box thresholds (`modeling.atss`; no anchor
ignored); the targets' format is the same, so the network, its losses and exports are unchanged.

Outputs, per anchor, in anchor order (`modeling.anchors`): `cls_targets` int32, the class 0..K-1
for foreground, BACKGROUND (-1) or IGNORE (-2); `box_targets` float32 `[ty, tx, th, tw]`
(`ops.box_coder`) for foreground anchors, 0 elsewhere. Plain TensorFlow, vectorised over the
batch (eagerly, in a `tf.function` or a `tf.data` map); boxes are matched BOX_CHUNK (128) at a
time, so memory is O(B * A_total * 128) and time O(B * A_total * N).
"""

import keras
import tensorflow as tf

from keras_retina import renamed
from keras_retina.modeling import anchors as anchor_lib
from keras_retina.modeling import atss
from keras_retina.ops import box_coder
from keras_retina.ops import boxes as box_lib

BACKGROUND = -1
IGNORE = -2

# Paper section 4.
FOREGROUND_IOU = 0.5
BACKGROUND_IOU = 0.4
BOX_CHUNK = 128  # ground-truth boxes compared with every anchor at a time (bounds memory)
ASSIGNERS = ("max_iou", "atss")  # the paper's fixed IoU thresholds, or ATSS


@keras.saving.register_keras_serializable(package="keras_retina")
class LabelEncoder(keras.layers.Layer):
    """Assigns ground-truth boxes to anchors (module docstring).

    Args:
      input_size: int or (height, width) of the model input when every input has it (then
        `anchors` holds its anchors), or None: each call gives the input's size.
      anchor_generator: an `anchors.AnchorGenerator` (default: the paper's geometry).
      foreground_iou, background_iou: 0.5 and 0.4; anchors in between are ignored (ValueError
        unless 0 < background_iou <= foreground_iou <= 1).
      allow_low_quality_matches: each box's best anchor(s) foreground even below `foreground_iou`.
      box_coder_weights: (wy, wx, wh, ww) for `ops.box_coder.encode`.
      assigner: "max_iou" (the paper's thresholds above) or "atss" (`modeling.atss`; the three
        settings above are then unused).
      atss_top_k: ATSS's candidate locations per level and box (9).

    Call: `boxes` `[B, N, 4]` or `[N, 4]` float32 yxyx pixels of the input; `classes` `[B, N]` or `[N]`
    int, 0..K-1, < 0 padding; `input_size` (height, width), default the layer's. Returns {"cls_targets":
    `[B, A_total]` int32, "box_targets": `[B, A_total, 4]` float32}, no batch axis when inputs had none.
    """

    def __init__(
        self,
        input_size=None,
        anchor_generator=None,
        foreground_iou=FOREGROUND_IOU,
        background_iou=BACKGROUND_IOU,
        allow_low_quality_matches=True,
        box_coder_weights=box_coder.DEFAULT_WEIGHTS,
        *,
        assigner="max_iou",
        atss_top_k=atss.TOP_K,
        **kwargs,
    ):
        input_size = renamed.argument(kwargs, "image_size", "input_size", input_size, "LabelEncoder")
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if not 0.0 < background_iou <= foreground_iou <= 1.0:
            raise ValueError(
                f"Need 0 < background_iou <= foreground_iou <= 1, got "
                f"background_iou={background_iou}, foreground_iou={foreground_iou}."
            )
        if assigner not in ASSIGNERS or atss_top_k < 1:
            raise ValueError(f"assigner={assigner!r}, atss_top_k={atss_top_k}: choose an assigner of {ASSIGNERS} "
                             f"and a positive atss_top_k.")
        self.assigner, self.atss_top_k = assigner, int(atss_top_k)
        self.input_size = None if input_size is None else anchor_lib.config_input_size(input_size)
        self.anchor_generator = anchor_lib.deserialize_generator(anchor_generator)
        self.foreground_iou = foreground_iou
        self.background_iou = background_iou
        self.allow_low_quality_matches = allow_low_quality_matches
        self.box_coder_weights = tuple(box_coder_weights)
        # [A_total, 4] numpy at the fixed image size, if there is one
        self.anchors = None if input_size is None else self.anchor_generator.anchors(input_size)

    def call(self, boxes, classes, input_size=None, **renamed_arguments):
        input_size = anchor_lib.call_input_size("LabelEncoder", input_size, self.input_size, renamed_arguments)
        boxes = tf.convert_to_tensor(boxes, tf.float32)
        classes = tf.cast(classes, tf.int32)
        unbatched = boxes.shape.rank == 2
        if unbatched:
            boxes, classes = boxes[None], classes[None]
        if boxes.shape.rank != 3 or classes.shape.rank != 2:
            raise ValueError(
                "LabelEncoder expects boxes [B, N, 4] and classes [B, N] (or [N, 4] and [N]); "
                f"got boxes {boxes.shape} and classes {classes.shape}."
            )
        cls_targets, box_targets = self._encode(boxes, classes, self.anchor_generator.anchors(input_size),
                                                self.anchor_generator.level_counts(input_size))
        if unbatched:
            cls_targets, box_targets = cls_targets[0], box_targets[0]
        return {"cls_targets": cls_targets, "box_targets": box_targets}

    def _encode(self, boxes, classes, anchors, level_counts):
        batch = tf.shape(boxes)[0]
        # One always-invalid padding box keeps every reduction over N non-empty.
        boxes = tf.concat([boxes, tf.zeros([batch, 1, 4])], axis=1)
        classes = tf.concat([classes, tf.fill([batch, 1], -1)], axis=1)
        valid = classes >= 0  # [B, N]
        anchors = tf.convert_to_tensor(anchors, tf.float32)  # [A, 4]

        if self.assigner == "atss":
            best_iou, matched = atss.atss_match(anchors, level_counts, self.anchor_generator.anchors_per_location,
                                                boxes, valid, top_k=self.atss_top_k, chunk=BOX_CHUNK)
            foreground = best_iou >= 0.0  # a positive of some box (-1: of none)
            background = tf.logical_not(foreground)
        else:
            best_iou, matched, forced_iou, forced_box = self._match(anchors, boxes, valid)
            foreground = best_iou >= self.foreground_iou
            if self.allow_low_quality_matches:
                forced = forced_iou > 0.0  # the anchor is the best of some box
                matched = tf.where(forced, forced_box, matched)
                foreground = tf.logical_or(foreground, forced)
            background = tf.logical_and(best_iou < self.background_iou, tf.logical_not(foreground))
        matched_classes = tf.gather(classes, matched, batch_dims=1)  # [B, A]
        cls_targets = tf.where(
            foreground, matched_classes, tf.where(background, BACKGROUND, IGNORE)
        )
        matched_boxes = tf.gather(boxes, matched, batch_dims=1)  # [B, A, 4]
        deltas = box_coder.encode(matched_boxes, anchors[None], self.box_coder_weights)
        box_targets = tf.where(foreground[..., None], deltas, 0.0)
        return cls_targets, box_targets

    def _match(self, anchors, boxes, valid):
        """Per anchor: (best IoU over the boxes [B, A], that box [B, A], the IoU of the box it is the
        best anchor of, if any, else -1 [B, A], that box [B, A]); ties go to the first box.

        Boxes are compared with all anchors BOX_CHUNK at a time, so memory stays
        O(B * A * BOX_CHUNK) for images with thousands of boxes; the result equals comparing all
        at once."""
        batch, count = tf.shape(boxes)[0], tf.shape(boxes)[1]
        num_anchors = tf.shape(anchors)[0]

        def step(start, best_iou, matched, forced_iou, forced_box):
            chunk = box_lib.pairwise_iou(anchors[None], boxes[:, start:start + BOX_CHUNK])  # [B, A, c]
            chunk = tf.where(valid[:, None, start:start + BOX_CHUNK], chunk, -1.0)
            chunk_best = tf.reduce_max(chunk, axis=2)
            better = chunk_best > best_iou  # strictly: on a tie the lower-indexed box keeps the anchor
            best_iou = tf.where(better, chunk_best, best_iou)
            matched = tf.where(better, tf.argmax(chunk, axis=2, output_type=tf.int32) + start, matched)
            if self.allow_low_quality_matches:
                best_per_box = tf.reduce_max(chunk, axis=1, keepdims=True)  # [B, 1, c]
                # Among the boxes an anchor is best for, the one it overlaps most.
                candidates = tf.where((chunk == best_per_box) & (best_per_box > 0.0), chunk, -1.0)
                chunk_forced = tf.reduce_max(candidates, axis=2)
                better = chunk_forced > forced_iou
                forced_iou = tf.where(better, chunk_forced, forced_iou)
                forced_box = tf.where(better, tf.argmax(candidates, axis=2, output_type=tf.int32) + start,
                                      forced_box)
            return start + BOX_CHUNK, best_iou, matched, forced_iou, forced_box

        shape = tf.stack([batch, num_anchors])
        state = (tf.constant(0), tf.fill(shape, -2.0), tf.zeros(shape, tf.int32), tf.fill(shape, -1.0),
                 tf.zeros(shape, tf.int32))
        _, best_iou, matched, forced_iou, forced_box = tf.while_loop(
            lambda start, *_: start < count, step, state, parallel_iterations=1)
        return best_iou, matched, forced_iou, forced_box

    @classmethod
    def from_config(cls, config):
        # layer configs saved before the rename hold the input's size as "image_size"
        return super().from_config(renamed.config_key(config, "image_size", "input_size"))

    def get_config(self):
        config = super().get_config()
        config.update(
            input_size=self.input_size,
            anchor_generator=keras.saving.serialize_keras_object(self.anchor_generator),
            foreground_iou=self.foreground_iou,
            background_iou=self.background_iou,
            allow_low_quality_matches=self.allow_low_quality_matches,
            box_coder_weights=list(self.box_coder_weights),
            assigner=self.assigner,
            atss_top_k=self.atss_top_k,
        )
        return config
