import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_retina import RetinaNet
from keras_retina.errors import DataError
from keras_retina.modeling.backbone import FoldedConvBatchNorm, build_backbone, fold_frozen_batchnorm

from conftest import assert_close


def test_tiny_shapes():
    out = build_backbone("tiny", (128, 128, 3))(np.zeros((1, 128, 128, 3), np.float32))
    assert [tuple(out[k].shape[1:3]) for k in ("C3", "C4", "C5")] == [(16, 16), (8, 8), (4, 4)]


@pytest.mark.parametrize("name,c4_blocks", [("resnet50", 6), ("resnet101", 23)])
def test_resnet_stages_and_frozen_batchnorm(name, c4_blocks):
    model = build_backbone(name, (128, 128, 3))
    shapes = {k: tuple(v.shape[1:]) for k, v in model.output.items()}
    assert shapes == {"C3": (16, 16, 512), "C4": (8, 8, 1024), "C5": (4, 4, 2048)}
    assert model.get_layer(f"conv4_block{c4_blocks}_out") is not None
    # Every conv is followed by a frozen BN, and every such pair is folded into one layer.
    folded = [l for l in model.layers if isinstance(l, FoldedConvBatchNorm)]
    assert len(folded) == (53 if name == "resnet50" else 104)
    assert not any(isinstance(l, (keras.layers.BatchNormalization, keras.layers.Conv2D)) for l in model.layers)
    assert not any(l.bn.trainable for l in folded)
    assert all(l.conv.trainable for l in folded)
    trainable_bn = build_backbone(name, (128, 128, 3), freeze_batchnorm=False)
    batchnorms = [l for l in trainable_bn.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert batchnorms and all(l.trainable for l in batchnorms)


def test_folded_batchnorm_matches_the_unfolded_network_and_its_gradients():
    """Folding is an optimisation only: same outputs and same kernel gradients as conv -> BN."""
    keras.utils.set_random_seed(3)
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    rng = np.random.default_rng(0)
    for layer in reference.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False  # non-trivial statistics, as after ImageNet training
            for var, low, high in ((layer.gamma, 0.5, 2), (layer.beta, -1, 1),
                                   (layer.moving_mean, -1, 1), (layer.moving_variance, 0.2, 3)):
                var.assign(rng.uniform(low, high, var.shape))
        elif isinstance(layer, keras.layers.Conv2D):
            layer.bias.assign(rng.uniform(-1, 1, layer.bias.shape))
    folded = fold_frozen_batchnorm(reference)
    assert sum(isinstance(l, FoldedConvBatchNorm) for l in folded.layers) == 53
    assert [id(v) for v in folded.trainable_weights] == [id(v) for v in reference.trainable_weights]
    images = tf.constant(rng.uniform(-120, 120, (2, 64, 64, 3)), tf.float32)

    def forward_and_grads(model):
        with tf.GradientTape() as tape:
            out = model(images, training=True)
            loss = tf.reduce_sum(out * out) * 1e-6
        return out, tape.gradient(loss, model.trainable_weights)

    ours, our_grads = forward_and_grads(folded)
    theirs, their_grads = forward_and_grads(reference)
    scale = float(np.abs(theirs).max())
    assert_close(ours / scale, theirs / scale, atol=1e-5)
    for mine, other in zip(our_grads, their_grads):
        norm = float(tf.reduce_max(tf.abs(other))) + 1e-12
        assert_close(mine / norm, other / norm, atol=1e-3)  # 53 layers deep in float32


def test_caffe_preprocessing_is_inside_the_graph():
    model = build_backbone("resnet50", (64, 64, 3))
    layer = model.get_layer("caffe_preprocessing")
    rgb = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)
    assert_close(layer(rgb), [[[[30 - 103.939, 20 - 116.779, 10 - 123.68]]]], atol=1e-4)


def _reference_resnet(seed):
    keras.utils.set_random_seed(seed)
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))


def test_loads_keras_applications_notop_h5_file(tmp_path):
    """The real ImageNet path: a file in keras.applications' legacy *_notop.h5 layout."""
    from keras.src.legacy.saving import legacy_h5_format

    reference = _reference_resnet(7)
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    keras.utils.set_random_seed(99)
    model = build_backbone("resnet50", (64, 64, 3), weights=str(path))
    for name in ("conv1", "conv3_block4_3", "conv5_block3_3"):
        ours = model.get_layer(f"{name}_conv")  # the folded conv + BN
        for part, theirs in ((ours.conv, f"{name}_conv"), (ours.bn, f"{name}_bn")):
            for mine, other in zip(part.weights, reference.get_layer(theirs).weights):
                assert_close(mine, other, atol=0)


def _notop_file(tmp_path):
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, _reference_resnet(7))
    return str(path)


def _one_sgd_step(model):
    """Kernel values of conv1, conv2_block3_3, conv3_block1_1, conv5_block3_3 before and after one step."""
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    names = ("conv1_conv", "conv2_block3_3_conv", "conv3_block1_1_conv", "conv5_block3_3_conv")
    before = {n: model.backbone.get_layer(n).conv.kernel.numpy() for n in names}
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    targets = {"boxes": np.array([[[4, 4, 40, 50]], [[10, 20, 60, 60]]], np.float32),
               "classes": np.array([[1], [0]], np.int32)}
    model.train_on_batch(images, targets)
    return {n: not np.array_equal(before[n], model.backbone.get_layer(n).conv.kernel.numpy()) for n in names}


def test_pretrained_resnet_freezes_stem_and_conv2_like_detectron(tmp_path):
    """FREEZE_AT = 2 by default with pretrained weights: conv1 and conv2_x keep their weights and
    get no gradient; everything from conv3 on trains. 0 (the default from scratch) trains all."""
    small = dict(num_classes=2, backbone="resnet50", image_size=64, fpn_filters=8, head_filters=8,
                 head_convs=1)
    pretrained = RetinaNet(**small, backbone_weights=_notop_file(tmp_path))
    assert pretrained.get_config()["freeze_backbone_at"] == 2
    frozen = [l.name for l in pretrained.backbone.layers if isinstance(l, FoldedConvBatchNorm) and not l.trainable]
    assert len(frozen) == 11 and all(n.startswith(("conv1_", "conv2_")) for n in frozen)
    assert _one_sgd_step(pretrained) == {"conv1_conv": False, "conv2_block3_3_conv": False,
                                         "conv3_block1_1_conv": True, "conv5_block3_3_conv": True}
    # The stored setting survives a config round trip (which never re-reads backbone weights).
    rebuilt = RetinaNet.from_config(pretrained.get_config()).backbone
    assert not rebuilt.get_layer("conv2_block3_3_conv").trainable
    assert rebuilt.get_layer("conv3_block1_1_conv").trainable
    # Wrapping a trainable conv leaves its BatchNorm frozen (the fold requires it).
    assert not any(l.bn.trainable for l in rebuilt.layers if isinstance(l, FoldedConvBatchNorm))
    scratch = RetinaNet(**small)
    assert scratch.get_config()["freeze_backbone_at"] == 0
    assert all(_one_sgd_step(scratch).values())
    stem_only = RetinaNet(**small, freeze_backbone_at=1)
    assert _one_sgd_step(stem_only) == {"conv1_conv": False, "conv2_block3_3_conv": True,
                                        "conv3_block1_1_conv": True, "conv5_block3_3_conv": True}
    # Trainable BatchNorm elsewhere, but a frozen stage's BN is frozen (and folded) with it.
    bn = build_backbone("resnet50", (64, 64, 3), freeze_batchnorm=False, freeze_at=2)
    assert isinstance(bn.get_layer("conv2_block1_1_conv"), FoldedConvBatchNorm)
    assert bn.get_layer("conv3_block1_1_bn").trainable
    with pytest.raises(ValueError, match="freeze_backbone_at=2: only ResNet"):
        build_backbone("tiny", (64, 64, 3), freeze_at=2)
    with pytest.raises(ValueError, match="freeze_backbone_at=6"):
        build_backbone("resnet50", (64, 64, 3), freeze_at=6)


def test_loads_keras3_weights_file(tmp_path):
    path = str(tmp_path / "tiny.weights.h5")
    source = build_backbone("tiny", (64, 64, 3))
    source.save_weights(path)
    keras.utils.set_random_seed(99)
    model = build_backbone("tiny", (64, 64, 3), weights=path)
    for ours, theirs in zip(model.weights, source.weights):
        assert_close(ours, theirs, atol=0)


def test_imagenet_download_failure_says_what_to_do(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(DataError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        build_backbone("resnet50", (64, 64, 3), weights="imagenet")


def test_bad_names_and_paths():
    with pytest.raises(ValueError, match="backbone='vgg'"):
        build_backbone("vgg", (64, 64, 3))
    with pytest.raises(DataError, match="missing.h5"):
        build_backbone("resnet50", (64, 64, 3), weights="/nowhere/missing.h5")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_backbone("tiny", (64, 64, 3), weights="imagenet")


@pytest.mark.parametrize("name", ["torchvision_resnet50", "detectron2_resnet101"])
def test_pytorch_layout_resnets(name):
    """torchvision's and detectron2's ResNets: C3-C5 shapes, the stride where each library puts it,
    stages frozen and BatchNorm folded as for the keras.applications ones. (Their outputs equal
    torchvision's: tests/test_convert.py.)"""
    backbone = build_backbone(name, (None, None, 3), freeze_at=2)
    out = backbone(np.zeros((1, 64, 96, 3), np.float32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "C3": (1, 8, 12, 512), "C4": (1, 4, 6, 1024), "C5": (1, 2, 3, 2048)}
    first = backbone.get_layer("conv3_block1_1_conv")  # the 1x1 of the first block of conv3
    second = backbone.get_layer("conv3_block1_2_conv")  # its 3x3
    strided, plain = (first, second) if name.startswith("detectron2") else (second, first)
    assert (strided.conv.strides, plain.conv.strides) == ((2, 2), (1, 1))
    assert not backbone.get_layer("conv2_block3_3_conv").trainable and not backbone.get_layer("conv1_conv").trainable
    assert backbone.get_layer("conv3_block1_1_conv").trainable
    assert type(second).__name__ == "FoldedConvBatchNorm" and second.bn.epsilon == 1e-5
    blocks = {"torchvision_resnet50": 6, "detectron2_resnet101": 23}[name]
    assert f"conv4_block{blocks}_out" in [layer.name for layer in backbone.layers]
