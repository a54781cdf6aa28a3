"""The RetinaNet `keras.Model`: one object trains with `fit` and returns detections from `predict`.

Graph (paper Fig. 5), assembled from parts (`builder`): images `[B, H, W, 3]`
RGB 0-255 float32 -> backbone (C3-C5) -> feature pyramid (P3-P7) ->
classification and box subnets -> `call` returns raw outputs in the anchor
generator's anchor order:

    {"classification": [B, A_total, K] logits, "box": [B, A_total, 4] deltas}

Training (`fit` / `evaluate`): targets `y` are a dict, either raw ground truth

    {"boxes": [B, N, 4] float32 yxyx pixels, "classes": [B, N] int32 0..K-1, -1 = padding}

(any N, any number of real boxes including none; the model's `LabelEncoder`
assigns anchors inside the train step), or pre-encoded by an input pipeline
with the same encoder: {"cls_targets": [B, A_total], "box_targets": [B, A_total, 4]}.
The loss is focal (classification) + `box_loss_weight` * smooth L1 (boxes),
both divided by the number of foreground anchors of the global batch
(`losses.detection_losses`). Metrics: `loss`, `cls_loss`, `box_loss`.

Distribution: build and compile inside `strategy.scope()`. Each replica
divides its local loss sum by the foreground count all-reduced over replicas;
Keras sums the replicas' gradients, so training under MirroredStrategy
computes the same loss and update as one device with the whole batch.

Inference (`predict`, `detect`): `DetectionDecoder` turns raw outputs into
{"boxes" [B, 100, 4] yxyx pixels, "scores" [B, 100], "classes" [B, 100] int32,
"num_detections" [B] int32}.
"""

import dataclasses

import keras
import tensorflow as tf
from keras import ops

from keras_retina import anchors as anchor_lib
from keras_retina import losses as loss_lib
from keras_retina.backbone import DEFAULT_BACKBONE
from keras_retina.builder import PART_NAMES, build_parts
from keras_retina.errors import UsageError
from keras_retina.model_config import ModelConfig

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

    `RetinaNet(num_classes=80, backbone="resnet50", image_size=640, **settings)` builds the
    paper's model: the settings are `ModelConfig` fields (anchors, FPN and head widths, loss
    and matching parameters, inference thresholds; every default is the paper's) and
    `builder.build_parts` makes the parts from them. Any part may be given instead
    (compare torchvision's `RetinaNet(backbone, num_classes, anchor_generator=, head=)`):

      backbone: a name ("resnet50", "resnet101", "tiny") or a keras.Model mapping
        `[B, H, W, 3]` RGB 0-255 to {"C3", "C4", "C5"}.
      anchor_generator, feature_pyramid, classification_head, box_head, label_encoder,
      decoder, box_loss: keyword-only parts (see `builder`).
      classification_loss: a name ("focal", "focal_star", "balanced_ce") or a Keras loss with
        `reduction="sum"`.

    `model.config` is the resolved ModelConfig; `get_config` holds it and the given parts, so
    `.keras` files and config round trips keep non-default parts.
    """

    def __init__(self, num_classes=None, backbone=DEFAULT_BACKBONE, image_size=640, *, anchor_generator=None,
                 feature_pyramid=None, classification_head=None, box_head=None, label_encoder=None,
                 decoder=None, box_loss=None, **settings):
        model_kwargs = {k: settings.pop(k) for k in ("name", "trainable", "dtype") if k in settings}
        given = dict(anchor_generator=anchor_generator, feature_pyramid=feature_pyramid,
                     classification_head=classification_head, box_head=box_head, label_encoder=label_encoder,
                     decoder=decoder, box_loss=box_loss)
        if not isinstance(backbone, str):
            given["backbone"], backbone = backbone, getattr(backbone, "name", "custom")
        if isinstance(settings.get("classification_loss"), keras.losses.Loss):
            given["classification_loss"] = settings.pop("classification_loss")
        given = {name: part for name, part in given.items() if part is not None}
        unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(ModelConfig)})
        if unknown:
            raise TypeError(f"RetinaNet got unknown setting(s) {unknown}; see keras_retina.ModelConfig.")
        config = ModelConfig(num_classes=num_classes, image_size=image_size,
                             backbone=DEFAULT_BACKBONE if "backbone" in given else backbone, **settings).resolved()
        if "backbone" in given:  # records the given network's name, for people; it is never rebuilt by name
            object.__setattr__(config, "backbone", backbone)
        if config.num_classes is None:
            raise UsageError("RetinaNet needs num_classes (the number of object classes).")
        parts = build_parts(config, **given)
        height, width = anchor_lib.validate_image_size(config.image_size)
        generator = parts["anchor_generator"]

        images = keras.Input((height, width, 3), name="images")
        features = parts["feature_pyramid"](parts["backbone"](images))
        outputs = {
            "classification": anchor_lib.flatten_levels(parts["classification_head"](features), num_classes),
            "box": anchor_lib.flatten_levels(parts["box_head"](features), 4),
        }
        model_kwargs.setdefault("name", "retinanet")
        super().__init__(inputs=images, outputs=outputs, **model_kwargs)
        if outputs["box"].shape[1] != generator.num_anchors(config.image_size):
            raise UsageError(f"the heads give {outputs['box'].shape[1]} anchors but the anchor generator has "
                             f"{generator.num_anchors(config.image_size)} at {config.image_size}: give heads "
                             f"with A = {generator.anchors_per_location} and a pyramid with its levels.")

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
        self.anchors = self.label_encoder.anchors  # [A_total, 4] numpy, yxyx pixels

    # ----------------------------------------------------------------- training
    def encode_targets(self, y):
        """Training targets dict (raw or pre-encoded, see module docstring) -> encoded targets."""
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
            return self.label_encoder(boxes, classes)
        raise ValueError(f"{_TARGETS_HELP}; got keys {sorted(y)}.")

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if sample_weight is not None:
            raise ValueError("RetinaNet does not use sample_weight; pass only (images, targets).")
        targets = self.encode_targets(y)
        cls_loss, box_loss = loss_lib.detection_losses(
            targets["cls_targets"], targets["box_targets"], y_pred["classification"],
            y_pred["box"], self.cls_loss_fn, self.box_loss_fn,
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
    def detect(self, images):
        """Images `[B, H, W, 3]` RGB 0-255 -> final detections (see module docstring)."""
        return self.decoder(self(images, training=False))

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self.detect(x)

    # ------------------------------------------------------------ serialisation
    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, **self.config.to_json()}
        for name, part in self.given_parts.items():
            config[name] = keras.saving.serialize_keras_object(part)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Weights come from the saved file; never re-fetch or re-read backbone weights.
        config = dict(config, backbone_weights=None)
        for name in PART_NAMES:
            if isinstance(config.get(name), dict):
                config[name] = keras.saving.deserialize_keras_object(config[name], custom_objects)
        return cls(**config)
