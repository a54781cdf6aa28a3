"""The RetinaNet `keras.Model`: one object trains with `fit` and returns detections from `predict`.

Graph (paper Fig. 5): images `[B, H, W, 3]` RGB 0-255 float32 -> backbone
(C3-C5) -> FeaturePyramid (P3-P7) -> classification and box subnets ->
`call` returns raw outputs in anchor order:

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

import keras
import tensorflow as tf
from keras import ops

from keras_retina import anchors as anchor_lib
from keras_retina import box_coder
from keras_retina import losses as loss_lib
from keras_retina import postprocess
from keras_retina.backbone import DEFAULT_BACKBONE, build_backbone, default_freeze_at
from keras_retina.fpn import FeaturePyramid
from keras_retina.heads import PRIOR_PROBABILITY, PredictionHead
from keras_retina.label_encoder import BACKGROUND_IOU, FOREGROUND_IOU, LabelEncoder

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
    """RetinaNet (Lin et al., "Focal Loss for Dense Object Detection").

    Args:
      num_classes: K, number of object classes (no background class).
      backbone: "resnet50", "resnet101" or "tiny".
      image_size: int or (height, width), multiples of 32.
      backbone_weights: None, "imagenet" or a weights file path.
      freeze_backbone_batchnorm: keep ResNet BatchNorm statistics frozen.
      freeze_backbone_at: freeze the ResNet stem and stages conv2..conv{k}
        (Detectron's FREEZE_AT; 0 trains everything). None: 2 with pretrained
        `backbone_weights`, else 0 (`backbone.default_freeze_at`).
      num_scales, aspect_ratios, anchor_size: anchors (3, (0.5, 1, 2), 4).
      fpn_filters: pyramid channels (256).
      p6_input: "C5" (paper) or "P5" (Model Garden).
      head_filters, head_convs: subnet width and depth (256, 4).
      prior_probability: pi for the classification bias (0.01).
      classification_loss: "focal", "focal_star" or "balanced_ce".
      focal_alpha, focal_gamma: 0.25, 2.0 (FL* uses its own gamma, default 4).
      focal_star_beta: beta of FL* (0).
      box_loss_weight: weight of the box loss (1.0).
      smooth_l1_beta: smooth-L1 transition point (1/9).
      foreground_iou, background_iou, allow_low_quality_matches: anchor
        assignment (0.5, 0.4, True).
      box_coder_weights: (1, 1, 1, 1).
      score_threshold, pre_nms_top_k, nms_iou_threshold, max_detections:
        inference (0.05, 1000, 0.5, 100).
    """

    def __init__(
        self,
        num_classes,
        backbone=DEFAULT_BACKBONE,
        image_size=640,
        backbone_weights=None,
        freeze_backbone_batchnorm=True,
        freeze_backbone_at=None,
        num_scales=anchor_lib.NUM_SCALES,
        aspect_ratios=anchor_lib.ASPECT_RATIOS,
        anchor_size=anchor_lib.ANCHOR_SIZE,
        fpn_filters=256,
        p6_input="C5",
        head_filters=256,
        head_convs=4,
        prior_probability=PRIOR_PROBABILITY,
        classification_loss="focal",
        focal_alpha=loss_lib.FOCAL_ALPHA,
        focal_gamma=None,
        focal_star_beta=loss_lib.FOCAL_STAR_BETA,
        box_loss_weight=1.0,
        smooth_l1_beta=loss_lib.SMOOTH_L1_BETA,
        foreground_iou=FOREGROUND_IOU,
        background_iou=BACKGROUND_IOU,
        allow_low_quality_matches=True,
        box_coder_weights=box_coder.DEFAULT_WEIGHTS,
        score_threshold=postprocess.SCORE_THRESHOLD,
        pre_nms_top_k=postprocess.PRE_NMS_TOP_K,
        nms_iou_threshold=postprocess.NMS_IOU_THRESHOLD,
        max_detections=postprocess.MAX_DETECTIONS,
        **kwargs,
    ):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes={num_classes}: need at least one class.")
        height, width = anchor_lib.validate_image_size(image_size)
        if focal_gamma is None:
            focal_gamma = loss_lib.default_gamma(classification_loss)
        cls_loss_fn = loss_lib.classification_loss(
            classification_loss, focal_alpha, focal_gamma, focal_star_beta
        )
        num_anchors = anchor_lib.anchors_per_location(num_scales, aspect_ratios)
        anchor_config = dict(image_size=image_size, num_scales=num_scales,
                             aspect_ratios=aspect_ratios, anchor_size=anchor_size)

        if freeze_backbone_at is None:
            freeze_backbone_at = default_freeze_at(backbone, backbone_weights)
        backbone_model = build_backbone(backbone, (height, width, 3), backbone_weights,
                                        freeze_backbone_batchnorm, freeze_backbone_at)
        fpn = FeaturePyramid(fpn_filters, anchor_lib.MAX_LEVEL, p6_input, name="fpn")
        cls_head = PredictionHead(num_classes, num_anchors, head_filters, head_convs,
                                  prior_probability, name="classification_head")
        box_head = PredictionHead(4, num_anchors, head_filters, head_convs, None, name="box_head")

        images = keras.Input((height, width, 3), name="images")
        features = fpn(backbone_model(images))
        outputs = {
            "classification": anchor_lib.flatten_levels(cls_head(features), num_classes),
            "box": anchor_lib.flatten_levels(box_head(features), 4),
        }
        kwargs.setdefault("name", "retinanet")
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        self.backbone = backbone_model
        self.fpn = fpn
        self.classification_head = cls_head
        self.box_head = box_head
        self.label_encoder = LabelEncoder(
            foreground_iou=foreground_iou, background_iou=background_iou,
            allow_low_quality_matches=allow_low_quality_matches,
            box_coder_weights=box_coder_weights, name="label_encoder", **anchor_config,
        )
        self.decoder = postprocess.DetectionDecoder(
            box_coder_weights=box_coder_weights, score_threshold=score_threshold,
            pre_nms_top_k=pre_nms_top_k, nms_iou_threshold=nms_iou_threshold,
            max_detections=max_detections, name="detection_decoder", **anchor_config,
        )
        self.cls_loss_fn = cls_loss_fn
        self.box_loss_fn = loss_lib.SmoothL1Loss(smooth_l1_beta, reduction=None)
        self.cls_loss_tracker = keras.metrics.Mean(name="cls_loss")
        self.box_loss_tracker = keras.metrics.Mean(name="box_loss")
        self.anchors = self.label_encoder.anchors  # [A_total, 4] numpy, yxyx pixels

        self._config = dict(
            num_classes=int(num_classes), backbone=backbone,
            image_size=anchor_lib.config_image_size(image_size),
            backbone_weights=backbone_weights, freeze_backbone_batchnorm=freeze_backbone_batchnorm,
            freeze_backbone_at=int(freeze_backbone_at),
            num_scales=num_scales, aspect_ratios=list(aspect_ratios), anchor_size=anchor_size,
            fpn_filters=fpn_filters, p6_input=p6_input, head_filters=head_filters,
            head_convs=head_convs, prior_probability=prior_probability,
            classification_loss=classification_loss, focal_alpha=focal_alpha,
            focal_gamma=focal_gamma, focal_star_beta=focal_star_beta,
            box_loss_weight=box_loss_weight, smooth_l1_beta=smooth_l1_beta,
            foreground_iou=foreground_iou, background_iou=background_iou,
            allow_low_quality_matches=allow_low_quality_matches,
            box_coder_weights=list(box_coder_weights), score_threshold=score_threshold,
            pre_nms_top_k=pre_nms_top_k, nms_iou_threshold=nms_iou_threshold,
            max_detections=max_detections,
        )

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
        box_loss = self._config["box_loss_weight"] * box_loss
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
        return {"name": self.name, "trainable": self.trainable, **self._config}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Weights come from the saved file; never re-fetch or re-read backbone weights.
        return cls(**{**config, "backbone_weights": None})
