"""The RetinaNet `keras.Model`: one object trains with `fit` and returns detections from `predict`.

Graph (paper Fig. 5, parts from `modeling.builder`): images `[B, H, W, 3]` RGB 0-255 float32, sides
multiples of 32 (else ValueError) -> backbone (C3-C5) -> feature pyramid (P3-P7) -> subnets. `call`
returns {"classification": `[B, A_total, K]` logits, "box": `[B, A_total, 4]` deltas} in anchor order.

Training (`fit` / `evaluate`): `y` is {"boxes": `[B, N, 4]` float32 yxyx pixels, "classes": `[B, N]`
int32 0..K-1, -1 = padding} (the model's `LabelEncoder` assigns anchors in the train step) or
pre-encoded {"cls_targets": `[B, A_total]`, "box_targets": `[B, A_total, 4]`}. Loss: focal +
`box_loss_weight` * smooth L1 (or `box_loss_type`'s loss; IoU losses on the decoded boxes), over
the global batch's foreground count (`losses.detection_losses`), so a step under MirroredStrategy
equals one device's; metrics `loss`, `cls_loss`, `box_loss`.
Inference (`predict`, `detect`): the `DetectionDecoder`'s {"boxes" `[B, D, 4]` yxyx pixels of the
input, "scores" `[B, D]`, "classes" `[B, D]` int32, "num_detections" `[B]` int32}, D = 100.
`model.resize_policy` maps pictures to inputs and back (`modeling.transform.to_model_input`, `to_original`).
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_retina.errors import UsageError
from keras_retina.modeling import anchors as anchor_lib
from keras_retina.modeling import box_losses
from keras_retina.modeling import losses as loss_lib
from keras_retina.modeling.backbone import DEFAULT_BACKBONE
from keras_retina.modeling.builder import PART_NAMES, build_parts
from keras_retina.modeling.model_config import ModelConfig, upgrade_settings
from keras_retina.ops import box_coder

_TARGETS_HELP = (
    "RetinaNet expects training targets as a dict: {'boxes': [B, N, 4] float32 "
    "[ymin, xmin, ymax, xmax] pixels, 'classes': [B, N] int32 (-1 = padding)} or the "
    "pre-encoded {'cls_targets': [B, A], 'box_targets': [B, A, 4]}"
)


def _for_multi_worker_reduce(logs):
    """Keras 3 reduces step logs across workers with `reduce(MEAN, axis=0)`, which fails on
    scalars (keras-team/keras#20585); under MultiWorkerMirroredStrategy give them an axis."""
    strategy = tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or len(resolver.cluster_spec().as_dict().get("worker", [])) < 2:
        return logs
    return {name: ops.reshape(value, (1,)) for name, value in logs.items()}


@keras.saving.register_keras_serializable(package="keras_retina")
class RetinaNet(keras.Model):
    """RetinaNet (Lin et al., "Focal Loss for Dense Object Detection"), assembled from parts.

    `RetinaNet(num_classes=80, backbone="resnet50", image_size=640, **settings)`: the settings are
    `ModelConfig` fields (every default the paper's; TypeError for an unknown one, UsageError without
    num_classes), from which `builder.build_parts` makes the parts; or `RetinaNet(config=ModelConfig(
    ...))`, the config used as it is (training does). Any part may be given instead (compare
    torchvision's `RetinaNet(backbone, num_classes, anchor_generator=, head=)`):
      backbone: a name ("resnet50", "tiny", ...) or a keras.Model `[B, H, W, 3]` RGB 0-255 -> {"C3".."C5"}.
      anchor_generator, feature_pyramid, classification_head, box_head, label_encoder, decoder,
        box_loss: keyword-only parts (see `builder`).
      classification_loss: "focal", "focal_star", "balanced_ce" or a Keras loss with `reduction="sum"`.
    `image_size` is the shorter side S (with `max_image_size` L and `resize="shorter_side"`: the paper's
    policy) or the square's side (`resize="square"`); the network runs on any input size. `model.config`
    is the resolved ModelConfig; `get_config` holds it and the given parts, so `.keras` files keep them.
    """

    def __init__(self, num_classes=None, backbone=DEFAULT_BACKBONE, image_size=800, *, config=None,
                 anchor_generator=None, feature_pyramid=None, classification_head=None, box_head=None,
                 label_encoder=None, decoder=None, box_loss=None, **settings):
        model_kwargs = {k: settings.pop(k) for k in ("name", "trainable", "dtype") if k in settings}
        given = dict(anchor_generator=anchor_generator, feature_pyramid=feature_pyramid,
                     classification_head=classification_head, box_head=box_head, label_encoder=label_encoder,
                     decoder=decoder, box_loss=box_loss)
        if not isinstance(backbone, str):
            given["backbone"], backbone = backbone, getattr(backbone, "name", "custom")
        if isinstance(settings.get("classification_loss"), keras.losses.Loss):
            given["classification_loss"] = settings.pop("classification_loss")
        given = {name: part for name, part in given.items() if part is not None}
        if config is not None:
            config = _given_config(config, num_classes, image_size, settings)
        else:
            unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(ModelConfig)})
            if unknown:
                raise TypeError(f"RetinaNet got unknown setting(s) {unknown}; see keras_retina.ModelConfig.")
            config = ModelConfig(num_classes=num_classes, image_size=image_size,
                                 backbone=DEFAULT_BACKBONE if "backbone" in given else backbone, **settings)
        config = config.resolved()
        if "backbone" in given:  # records the given network's name, for people; it is never rebuilt by name
            config = _renamed_backbone(config, backbone)
        if config.num_classes is None:
            raise UsageError("RetinaNet needs num_classes (the number of object classes).")
        num_classes = config.num_classes
        parts = build_parts(config, **given)
        generator = parts["anchor_generator"]

        images = keras.Input((None, None, 3), name="images")
        features = parts["feature_pyramid"](parts["backbone"](images))
        heads = {"classification": parts["classification_head"](features), "box": parts["box_head"](features)}
        _check_layout(generator, heads, num_classes)
        outputs = {"classification": anchor_lib.flatten_levels(heads["classification"], num_classes),
                   "box": anchor_lib.flatten_levels(heads["box"], 4)}
        model_kwargs.setdefault("name", "retinanet")
        super().__init__(inputs=images, outputs=outputs, **model_kwargs)

        self.config = config
        self.given_parts = given
        self.backbone = parts["backbone"]
        self.fpn = parts["feature_pyramid"]
        self.classification_head = parts["classification_head"]
        self.box_head = parts["box_head"]
        self.anchor_generator = generator
        self.label_encoder = parts["label_encoder"]
        self.decoder = parts["decoder"]
        self.cls_loss_fn = parts["classification_loss"]
        self.box_loss_fn = parts["box_loss"]
        self.cls_loss_tracker = keras.metrics.Mean(name="cls_loss")
        self.box_loss_tracker = keras.metrics.Mean(name="box_loss")
        self.resize_policy = config.resize_policy

    def call(self, inputs, training=None, mask=None):
        _check_input_size(inputs)
        return super().call(inputs, training=training, mask=mask)

    # ----------------------------------------------------------------- training
    def encode_targets(self, y, input_size):
        """Training targets dict (raw or pre-encoded, see module docstring) for inputs of
        `input_size` (height, width) -> encoded targets."""
        if not isinstance(y, dict):
            raise ValueError(f"{_TARGETS_HELP}; got {type(y).__name__}.")
        if "cls_targets" in y and "box_targets" in y:
            return y
        if "boxes" in y and "classes" in y:
            boxes, classes = y["boxes"], y["classes"]
            if isinstance(boxes, tf.RaggedTensor):
                boxes = boxes.to_tensor(0.0)
            if isinstance(classes, tf.RaggedTensor):
                classes = classes.to_tensor(-1)
            return self.label_encoder(boxes, classes, input_size=input_size)
        raise ValueError(f"{_TARGETS_HELP}; got keys {sorted(y)}.")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if sample_weight is not None:
            raise ValueError("RetinaNet does not use sample_weight; pass only (images, targets).")
        targets = self.encode_targets(y, _input_size(x))
        box_targets, box_outputs = targets["box_targets"], y_pred["box"]
        quality = None
        on_boxes = getattr(self.box_loss_fn, "on_boxes", False)  # IoU losses compare the decoded boxes
        if on_boxes or getattr(self.cls_loss_fn, "quality_aware", False):
            anchors = self.anchor_generator.anchors(_input_size(x))
            weights = self.config.box_coder_weights
            decoded_targets = box_coder.decode(box_targets, anchors, weights)
            decoded_outputs = box_coder.decode(box_outputs, anchors, weights)
            if getattr(self.cls_loss_fn, "quality_aware", False):  # the score's target: how well the box fits
                quality = ops.stop_gradient(box_losses.aligned_iou(decoded_outputs, decoded_targets))
            if on_boxes:
                box_targets, box_outputs = decoded_targets, decoded_outputs
        cls_loss, box_loss = loss_lib.detection_losses(
            targets["cls_targets"], box_targets, y_pred["classification"], box_outputs, self.cls_loss_fn,
            self.box_loss_fn, quality=quality,
        )
        box_loss = self.config.box_loss_weight * box_loss
        total = cls_loss + box_loss
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if self.losses:  # weight regularisers, if a user added some
            total = total + ops.sum(self.losses) / replicas
        # Per-replica values are shares of the global loss; trackers show the whole.
        batch = ops.shape(y_pred["box"])[0]
        self.cls_loss_tracker.update_state(cls_loss * replicas, sample_weight=batch)
        self.box_loss_tracker.update_state(box_loss * replicas, sample_weight=batch)
        return total

    def train_step(self, data):
        return _for_multi_worker_reduce(super().train_step(data))

    def test_step(self, data):
        return _for_multi_worker_reduce(super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3 (keras-team/keras#20585, tensorflow#72388): under a strategy, fit() reduces the
        # first batch across replicas to build metrics symbolically, which fails under
        # MultiWorkerMirroredStrategy. RetinaNet is built at construction and compiles no
        # metrics or losses, so once its optimizer is built there is nothing left to build.
        if self.optimizer is not None and self.optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # ---------------------------------------------------------------- inference
    def detect(self, images, picture_sizes=None):
        """Images `[B, H, W, 3]` RGB 0-255 -> final detections (see module docstring);
        `picture_sizes` `[B, 2]`: each picture's (height, width) inside its padded input, boxes are
        clipped to it (default: to the whole input)."""
        return self.decoder(self(images, training=False), input_size=_input_size(images),
                            picture_sizes=picture_sizes)

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.detect(x)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):
        """Keras `predict`; an array or tensor of at most `batch_size` (32) images goes straight
        to Keras' `predict_on_batch` (one compiled call, no dataset or progress bar), with the
        same numpy dict as the result."""
        rows = getattr(x, "shape", None)
        if (steps is None and not callbacks and rows is not None and len(rows) == 4
                and isinstance(x, (np.ndarray, tf.Tensor)) and 0 < rows[0] <= (batch_size or 32)):
            _check_input_size(x)
            return self.predict_on_batch(x)
        return super().predict(x, batch_size=batch_size, verbose=verbose, steps=steps, callbacks=callbacks)

    # ------------------------------------------------------------ serialisation
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, **self.config.to_json()}
        for name, part in self.given_parts.items():
            config[name] = keras.saving.serialize_keras_object(part)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Weights come from the saved file; never re-fetch or re-read backbone weights.
        config = dict(upgrade_settings(config), backbone_weights=None)
        for name in PART_NAMES:
            if isinstance(config.get(name), dict):
                config[name] = keras.saving.deserialize_keras_object(config[name], custom_objects)
        return cls(**config)


def _given_config(config, num_classes, image_size, settings):
    """A `config=` given to RetinaNet: a ModelConfig (checked when it was made) with num_classes, used
    as it is; settings beside it would be a second source of the same values (TypeError)."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"RetinaNet(config=...) takes a keras_retina.ModelConfig, got {type(config).__name__}.")
    if num_classes is not None or image_size != 800 or settings:
        raise TypeError("RetinaNet takes either config=ModelConfig(...) or settings as arguments, not both.")
    if config.num_classes is None:
        raise UsageError("RetinaNet needs num_classes (the number of object classes): give it to the ModelConfig.")
    return config


def _renamed_backbone(config, name):
    """A copy of `config` naming a given backbone network (for people; it is never rebuilt by name)."""
    renamed = dataclasses.replace(config)  # a caller's config is never changed
    object.__setattr__(renamed, "backbone", name)
    return renamed


def _input_size(images):
    """(height, width) of a batch of images: ints when static, else an int32 tensor [2]."""
    static = images.shape[1:3]
    if static[0] is not None and static[1] is not None:
        return int(static[0]), int(static[1])
    return tf.shape(images)[1:3]


def _check_input_size(images):
    """A clear error for an input whose sides are not multiples of 32 (the FPN would fail deep
    inside TensorFlow): at trace time when the shape is static, else when the graph runs."""
    multiple = anchor_lib.SIZE_MULTIPLE
    height, width = images.shape[1:3]
    if height is not None and width is not None:
        if height % multiple or width % multiple or not height or not width:
            raise ValueError(f"RetinaNet input images are {height}x{width}: each side must be a positive multiple "
                             f"of {multiple}; pad them (transform.to_model_input does, with the model's "
                             f"resize_policy).")
        return
    if not tf.executing_eagerly() and isinstance(images, tf.Tensor):
        size = tf.shape(images)[1:3]
        tf.debugging.assert_equal(size % multiple, 0, message=(
            f"RetinaNet input image sides must be multiples of {multiple}; pad them "
            f"(transform.to_model_input does, with the model's resize_policy)"))


def _check_layout(generator, heads, num_classes):
    """The heads and pyramid give the generator's levels with A anchors per location."""
    levels = [anchor_lib.level_name(lv) for lv in range(generator.min_level, generator.max_level + 1)]
    for name, values in (("classification", num_classes), ("box", 4)):
        got = {level: out.shape[-1] for level, out in heads[name].items()}
        expected = dict.fromkeys(levels, generator.anchors_per_location * values)
        if set(got) != set(expected) or any(got[k] not in (None, expected[k]) for k in got):  # None: known at run
            raise UsageError(f"the {name} head gives channels {got} but the anchor generator needs {expected} "
                             f"(A = {generator.anchors_per_location} per location on {', '.join(levels)}): give "
                             f"heads with that A and a pyramid with those levels.")
