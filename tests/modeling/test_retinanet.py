import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_retina import RetinaNet, num_anchors
from keras_retina.data import synthetic
from keras_retina.errors import UsageError
from keras_retina.evaluation import coco_metrics
from keras_retina.modeling.anchors import AnchorGenerator
from keras_retina.ops import boxes as box_lib

from conftest import TINY, assert_close, keras_file_round_trip


def _tiny(num_classes=3, **overrides):
    return RetinaNet(num_classes=num_classes, **{**TINY, "image_size": 128, **overrides})


def _data(n=8, seed=3):
    images, boxes, classes = synthetic.make_dataset(n, 128, num_classes=3, seed=seed)
    return images.astype(np.float32), boxes, classes


class _AnchorBoxHead(keras.layers.Layer):
    """A box head whose output at each location and anchor is that anchor's own box, computed from
    the feature map's grid and the anchor generator's sizes (not from its anchor list)."""

    def __init__(self, generator, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator

    def call(self, features):
        outputs = {}
        for name, x in features.items():
            stride = 2 ** int(name[1:])
            rows, cols = tf.shape(x)[1], tf.shape(x)[2]
            half = tf.constant([(self.generator.anchor_size * stride * 2 ** (s / self.generator.num_scales)
                                 / np.sqrt(r) / 2,
                                 self.generator.anchor_size * stride * 2 ** (s / self.generator.num_scales)
                                 * np.sqrt(r) / 2)
                                for s in range(self.generator.num_scales) for r in self.generator.aspect_ratios],
                               tf.float32)
            cy, cx = tf.meshgrid((tf.cast(tf.range(rows), tf.float32) + 0.5) * stride,
                                 (tf.cast(tf.range(cols), tf.float32) + 0.5) * stride, indexing="ij")
            centers = tf.stack([cy, cx], -1)[:, :, None, :]
            grid = tf.concat([centers - half, centers + half], -1)  # [rows, cols, A, 4]
            boxes = tf.reshape(grid, [1, rows, cols, -1])
            outputs[name] = tf.zeros_like(x[..., :1]) + boxes
        return outputs


def test_raw_outputs_in_anchor_order():
    """The raw box output at anchor index i is what the head computed for anchor i: a head that
    outputs each anchor's own box gives exactly the generator's anchors for the input's shape,
    level by level, row by row, at any shape the one model is called on."""
    generator = AnchorGenerator(num_scales=2, aspect_ratios=(0.5, 1.0, 2.0))
    model = _tiny(anchor_generator=generator, box_head=_AnchorBoxHead(generator))
    for shape in ((128, 96), (64, 160), (96, 96)):
        out = model(np.zeros((2,) + shape + (3,), np.float32))
        assert out["classification"].shape == (2, generator.num_anchors(shape), 3)
        assert_close(out["box"][0], generator.anchors(shape), atol=1e-4)
        assert_close(out["box"][1], generator.anchors(shape), atol=1e-4)


def test_resnet50_fpn_at_640_is_the_papers_network():
    model = RetinaNet(num_classes=80, backbone="resnet50", image_size=640)
    assert model.input_shape == (None, None, None, 3)  # any size
    out = model(np.zeros((1, 640, 640, 3), np.float32))
    assert out["classification"].shape == (1, 76725, 80) and out["box"].shape == (1, 76725, 4)

    def conv(k, cin, cout):
        return k * k * cin * cout + cout

    fpn = (conv(1, 512, 256) + conv(1, 1024, 256) + conv(1, 2048, 256) + 3 * conv(3, 256, 256)
           + conv(3, 2048, 256) + conv(3, 256, 256))  # laterals, P3-P5 outputs, P6 from C5, P7
    heads = 2 * 4 * conv(3, 256, 256) + conv(3, 256, 9 * 80) + conv(3, 256, 9 * 4)
    assert model.fpn.count_params() == fpn
    assert model.classification_head.count_params() + model.box_head.count_params() == heads
    assert model.count_params() == model.backbone.count_params() + fpn + heads


@pytest.mark.parametrize("backbone,size", [("resnet50", 800), ("tiny", 160)])
def test_sizes_that_are_not_multiples_of_128(backbone, size):
    model = RetinaNet(num_classes=2, backbone=backbone, image_size=size, fpn_filters=16,
                      head_filters=16, head_convs=1)
    out = model(np.zeros((1, size, size + 64, 3), np.float32))
    assert out["box"].shape == (1, num_anchors((size, size + 64)), 4)
    assert out["classification"].shape == (1, num_anchors((size, size + 64)), 2)


@pytest.mark.parametrize("shape", [(128, 128), (128, 192), (224, 96)])
def test_encoder_and_decoder_agree_on_anchor_order(shape):
    """Perfect raw outputs built from the encoder's targets decode back to the ground truth, on
    square and non-square inputs."""
    model = _tiny()
    gt_boxes = np.array([[[10.0, 20.0, 60.0, 50.0], [70.0, 24.0, 120.0, 84.0]]], np.float32)
    gt_classes = np.array([[2, 0]], np.int32)
    targets = model.label_encoder(gt_boxes, gt_classes, input_size=shape)
    cls_targets = np.asarray(targets["cls_targets"])
    logits = np.full(cls_targets.shape + (3,), -10.0, np.float32)
    for a in np.flatnonzero(cls_targets[0] >= 0):
        logits[0, a, cls_targets[0, a]] = 10.0
    out = model.decoder({"classification": logits, "box": np.asarray(targets["box_targets"])}, input_size=shape)
    n = int(out["num_detections"][0])
    assert n == 2  # NMS merges each box's foreground anchors into one detection
    found = {int(c): b for c, b in zip(np.asarray(out["classes"][0, :n]), np.asarray(out["boxes"][0, :n]))}
    assert_close(found[2], gt_boxes[0, 0], atol=1e-3)
    assert_close(found[0], gt_boxes[0, 1], atol=1e-3)


def test_predict_returns_final_detections():
    model = _tiny(max_detections=20)
    images, _, _ = _data(3)
    out = model.predict(images, batch_size=2, verbose=0)
    assert set(out) == {"boxes", "scores", "classes", "num_detections"}
    assert out["boxes"].shape == (3, 20, 4) and out["classes"].dtype == np.int32
    assert np.all(out["num_detections"] <= 20)


def test_raw_and_pre_encoded_targets_give_the_same_loss():
    model = _tiny()
    model.compile(optimizer="sgd")
    images, boxes, classes = _data(4)
    raw = model.evaluate(images, {"boxes": boxes, "classes": classes}, batch_size=4, verbose=0,
                         return_dict=True)
    encoded = tf.data.Dataset.from_tensor_slices((images, {"boxes": boxes, "classes": classes})).map(
        lambda x, y: (x, model.label_encoder(y["boxes"], y["classes"], input_size=(128, 128)))).batch(4)
    pre = model.evaluate(encoded, verbose=0, return_dict=True)
    for key in ("loss", "cls_loss", "box_loss"):
        assert pre[key] == pytest.approx(raw[key], rel=1e-5), key
    assert raw["cls_loss"] > 0 and raw["box_loss"] > 0


def test_image_without_boxes_trains_with_finite_loss():
    model = _tiny()
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    images, boxes, classes = _data(4)
    classes[1:] = -1  # three of four images have no objects
    history = model.fit(images, {"boxes": boxes, "classes": classes}, batch_size=4, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_bad_targets_are_explained():
    model = _tiny()
    model.compile(optimizer="sgd")
    images, boxes, _ = _data(2)
    with pytest.raises(ValueError, match="expects training targets as a dict"):
        model.fit(images, boxes, verbose=0)
    with pytest.raises(ValueError, match="got keys \\['bbox'\\]"):
        model.fit(images, {"bbox": boxes}, verbose=0)
    with pytest.raises(ValueError, match="100x100: each side must be a positive multiple of 32"):
        model.fit(np.zeros((2, 100, 100, 3), np.float32), {"boxes": boxes, "classes": np.zeros((2, 3), np.int32)},
                  verbose=0)
    with pytest.raises(UsageError, match="multiple of 32"):
        RetinaNet(num_classes=3, backbone="tiny", image_size=100, resize="square")


def test_tf_checkpoint_holds_every_weight(tmp_path):
    """Resume and export rely on tf.train.Checkpoint seeing every variable of the model."""
    model = _tiny(head_convs=3)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    keras.utils.set_random_seed(77)
    other = _tiny(head_convs=3)
    tf.train.Checkpoint(model=other).restore(path).assert_existing_objects_matched()
    assert len(other.weights) == len(model.weights)
    for restored, saved in zip(other.weights, model.weights):
        assert_close(restored, saved, atol=0)


NON_DEFAULT = dict(
    backbone="tiny", image_size=[128, 256], resize="square", num_scales=2, aspect_ratios=[0.5, 1.0, 2.0, 3.0],
    anchor_size=3.0, fpn_filters=16, p6_input="P5", head_filters=8, head_convs=1,
    prior_probability=0.02, classification_loss="focal_star", focal_alpha=0.3, focal_gamma=3.0,
    focal_star_beta=0.5, box_loss_weight=2.0, smooth_l1_beta=0.2, foreground_iou=0.55,
    background_iou=0.35, allow_low_quality_matches=False, box_coder_weights=[10.0, 10.0, 5.0, 5.0],
    score_threshold=0.01, pre_nms_top_k=300, nms_iou_threshold=0.6, max_detections=30, anchor_assigner="atss",
    atss_top_k=5,
)


def test_config_and_keras_file_round_trip(tmp_path):
    model = RetinaNet(num_classes=4, name="custom_retinanet", **NON_DEFAULT)
    config = model.get_config()
    assert {k: config[k] for k in NON_DEFAULT} == NON_DEFAULT
    clone = RetinaNet.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 128, 256, 3)).astype(np.float32)
    expected = model.predict(images, verbose=0)
    tf.nest.map_structure(assert_close, clone.predict(images, verbose=0), expected)

    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    restored = keras_file_round_trip(model, tmp_path)
    assert isinstance(restored, RetinaNet) and restored.get_config() == config
    tf.nest.map_structure(assert_close, restored.predict(images, verbose=0), expected)
    # The restored model keeps training.
    _, boxes, classes = _data(2)
    restored.fit(images, {"boxes": boxes * [1, 2, 1, 2], "classes": classes}, verbose=0)


@keras.saving.register_keras_serializable(package="keras_retina_tests")
class CornerAnchors(AnchorGenerator):
    """A geometry variant: locations centred at (y * stride, x * stride) instead of + 0.5."""

    def level_anchors(self, level, height, width, xp=np):
        return super().level_anchors(level, height, width, xp) - 0.5 * 2**level


def test_model_from_non_default_parts_round_trips(tmp_path):
    """A geometry variant is one anchor generator: the heads, encoder and decoder all get it, and
    config and .keras round trips keep it and a given loss object."""
    from keras_retina.modeling.losses import FocalLoss

    generator = CornerAnchors(num_scales=2, aspect_ratios=(1.0, 2.0), anchor_size=3.0)
    model = _tiny(anchor_generator=generator, classification_loss=FocalLoss(0.3, 1.0, reduction="sum"))
    expected_anchors = AnchorGenerator(num_scales=2, aspect_ratios=(1.0, 2.0), anchor_size=3.0).anchors(128) - 4.0
    assert_close(model.anchor_generator.anchors(128)[:4], expected_anchors[:4])  # P3: stride 8, shifted by 4
    assert model.decoder.anchor_generator is generator and model.classification_head.num_anchors == 4
    config = model.get_config()
    clone = RetinaNet.from_config(config)
    assert type(clone.anchor_generator) is CornerAnchors and clone.get_config() == config
    assert clone.cls_loss_fn.alpha == 0.3 and clone.cls_loss_fn.gamma == 1.0
    images, boxes, classes = _data(2)
    model.compile(optimizer=keras.optimizers.SGD(0.01))
    restored = keras_file_round_trip(model, tmp_path)
    assert type(restored.anchor_generator) is CornerAnchors
    assert_close(restored.anchor_generator.anchors((96, 160)), model.anchor_generator.anchors((96, 160)))
    tf.nest.map_structure(assert_close, restored.predict(images, verbose=0), model.predict(images, verbose=0))
    restored.fit(images, {"boxes": boxes, "classes": classes}, verbose=0)


def test_parts_that_do_not_fit_are_refused():
    from keras_retina.modeling.heads import PredictionHead

    with pytest.raises(UsageError, match="the box head gives channels .* but the anchor generator needs"):
        _tiny(box_head=PredictionHead(4, num_anchors=3, filters=8, num_convs=1))
    with pytest.raises(TypeError, match="unknown setting"):
        _tiny(fpn_channels=3)


def test_learns_to_find_every_box():
    """A tiny model fit for 300 steps on 8 synthetic images finds every object again."""
    images, boxes, classes = _data(8)
    model = _tiny()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    # 300 steps as 10 epochs of 30 (an epoch of Keras' own has a cost of its own: 150 of 2 steps
    # took a quarter more CPU time)
    batches = tf.data.Dataset.from_tensor_slices((images, {"boxes": boxes, "classes": classes})).batch(4).repeat()
    history = model.fit(batches, steps_per_epoch=30, epochs=10, shuffle=False, verbose=0)
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    out = model.predict(images, verbose=0)
    missed = []
    for i in range(len(images)):
        n = out["num_detections"][i]
        for box, cls in zip(boxes[i], classes[i]):
            if cls < 0:
                continue
            iou = np.asarray(box_lib.pairwise_iou(box[None], out["boxes"][i, :n]))[0]
            if not np.any((iou >= 0.5) & (out["classes"][i, :n] == cls)):
                missed.append((i, cls, box.round(1).tolist()))
    assert (classes >= 0).sum() >= 10 and not missed, missed

    # --mixed_precision=bfloat16 on the trained weights finds the same objects (issue #5):
    # every float32 detection scoring >= 0.5 has a bfloat16 twin (same class, IoU >= 0.9), and
    # the other way round.
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        fast = RetinaNet(**model.get_config())
    finally:
        keras.mixed_precision.set_global_policy("float32")
    fast.set_weights(model.get_weights())
    assert fast.get_layer("classification_head").compute_dtype == "bfloat16"
    fast_out = fast.predict(images, verbose=0)
    checked, missing = coco_metrics.unmatched_detections(out, fast_out)
    assert checked >= 10 and not missing, missing
    checked, extra = coco_metrics.unmatched_detections(fast_out, out)
    assert checked >= 10 and not extra, extra


def test_mirrored_strategy_matches_single_device():
    """Two replicas on two logical CPUs: same loss and same weights after one SGD step."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2
    images, boxes, classes = _data(4)
    classes[3] = -1  # replicas see different foreground counts (one has an empty image)
    targets = {"boxes": boxes, "classes": classes}

    def one_step(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(5)
            model = _tiny()
            model.compile(optimizer=keras.optimizers.SGD(0.1))
        history = model.fit(images, targets, batch_size=4, epochs=1, shuffle=False, verbose=0)
        return history.history, model.get_weights()

    single_history, single_weights = one_step(tf.distribute.OneDeviceStrategy(devices[0]))
    mirrored_history, mirrored_weights = one_step(tf.distribute.MirroredStrategy(devices))
    for key in ("loss", "cls_loss", "box_loss"):
        assert mirrored_history[key][0] == pytest.approx(single_history[key][0], rel=1e-4), key
    for ours, theirs in zip(mirrored_weights, single_weights):
        assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_mixed_bfloat16_trains_and_predicts():
    """--mixed_precision=bfloat16: layers compute in bfloat16, losses and decoding in float32."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _tiny()
        assert model.get_layer("fpn").compute_dtype == "bfloat16"
        assert model.label_encoder.compute_dtype == model.decoder.compute_dtype == "float32"
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        images, boxes, classes = _data(4)
        history = model.fit(images, {"boxes": boxes, "classes": classes}, batch_size=4, epochs=3, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        out = model.predict(images, verbose=0)
        assert out["boxes"].dtype == np.float32 and out["scores"].dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_picture_inside_a_larger_canvas_gives_the_same_outputs_away_from_the_padding():
    """The same 480x640 picture alone and at the top left of a 640x800 zero canvas (ResNet-50-FPN):
    equal raw outputs on P3-P5 at every location at least 256 px from the padding, so detections
    there do not depend on the bucket a picture was padded into. (P6 and P7 locations see the
    padding; the tiny test backbone's GroupNorm averages over the whole canvas.)"""
    model = RetinaNet(num_classes=3, backbone="resnet50", image_size=480, fpn_filters=16, head_filters=16,
                      head_convs=1)
    picture = np.random.default_rng(0).uniform(0, 255, (1, 480, 640, 3)).astype(np.float32)
    canvas = np.zeros((1, 640, 800, 3), np.float32)
    canvas[:, :480, :640] = picture
    alone, padded = model(picture), model(canvas)
    margin, per = 256, model.anchor_generator.anchors_per_location
    start_small = start_big = compared = 0
    for level in (3, 4, 5):
        stride = 2**level
        rows, cols, big_rows, big_cols = (-(-side // stride) for side in (480, 640, 640, 800))
        ys = [y for y in range(rows) if (y + 1) * stride <= 480 - margin]
        xs = [x for x in range(cols) if (x + 1) * stride <= 640 - margin]
        for key, depth in (("classification", 3), ("box", 4)):
            small = np.asarray(alone[key][0, start_small:start_small + rows * cols * per])
            big = np.asarray(padded[key][0, start_big:start_big + big_rows * big_cols * per])
            small = small.reshape(rows, cols, per, depth)[np.ix_(ys, xs)]
            big = big.reshape(big_rows, big_cols, per, depth)[np.ix_(ys, xs)]
            assert_close(small, big, atol=1e-4, rtol=1e-4)
            compared += small.size
        start_small, start_big = start_small + rows * cols * per, start_big + big_rows * big_cols * per
    assert compared > 30000


def test_predict_on_a_small_batch_is_one_call_and_sizes_are_checked(monkeypatch):
    model = _tiny()
    images = np.random.default_rng(1).uniform(0, 255, (3, 96, 160, 3)).astype(np.float32)
    keras_path = model.predict(images, batch_size=2, verbose=0)  # 3 > batch_size: Keras' loop

    def keras_loop(*args, **kwargs):
        raise AssertionError("a small in-memory batch must not go through Keras' predict loop")

    monkeypatch.setattr(keras.Model, "predict", keras_loop)
    fast = model.predict(images, verbose=0)
    assert set(fast) == set(keras_path) and all(isinstance(v, np.ndarray) for v in fast.values())
    for key in fast:
        assert_close(fast[key], keras_path[key], atol=1e-5)
    with pytest.raises(ValueError, match="70x64: each side must be a positive multiple of 32"):
        model.predict(np.zeros((1, 70, 64, 3), np.float32))


def test_settings_saved_before_the_resize_policy_load_as_square():
    from keras_retina.modeling.model_config import upgrade_settings

    old = {k: v for k, v in _tiny().get_config().items() if k not in ("resize", "max_image_size")}
    model = RetinaNet.from_config(old)
    assert model.config.resize == "square" and model.resize_policy.buckets == ((128, 128),)
    assert upgrade_settings({"image_size": 640, "resize": "shorter_side"})["resize"] == "shorter_side"


def test_a_model_config_builds_the_model_as_it_is():
    """`RetinaNet(config=ModelConfig(...))`: no second round of settings; the config's resize policy is
    the model's; a config and settings together are refused."""
    from keras_retina import ModelConfig

    config = ModelConfig(**{**TINY, "num_classes": 3, "head_convs": 2}).resolved()
    model = RetinaNet(config=config)
    assert model.config is config and model.resize_policy is config.resize_policy
    assert model(np.zeros((1, 64, 64, 3), np.float32))["classification"].shape[-1] == 3
    with pytest.raises(TypeError, match="either config=ModelConfig"):
        RetinaNet(config=config, num_classes=3)
    with pytest.raises(TypeError, match="takes a keras_retina.ModelConfig"):
        RetinaNet(config=dict(TINY, num_classes=3))
    with pytest.raises(UsageError, match="needs num_classes"):
        RetinaNet(config=ModelConfig(**TINY))
    restored = RetinaNet.from_config(model.get_config())
    assert restored.config == model.config
