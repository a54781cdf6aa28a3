import h5py
import keras
import numpy as np
import pytest

from conftest import assert_close
from keras_retina.backbone import build_backbone


def test_tiny_shapes():
    out = build_backbone("tiny", (128, 128, 3))(np.zeros((1, 128, 128, 3), np.float32))
    assert [tuple(out[k].shape[1:3]) for k in ("C3", "C4", "C5")] == [(16, 16), (8, 8), (4, 4)]


@pytest.mark.parametrize("name,c4_blocks", [("resnet50", 6), ("resnet101", 23)])
def test_resnet_stages_and_frozen_batchnorm(name, c4_blocks):
    model = build_backbone(name, (128, 128, 3))
    shapes = {k: tuple(v.shape[1:]) for k, v in model.output.items()}
    assert shapes == {"C3": (16, 16, 512), "C4": (8, 8, 1024), "C5": (4, 4, 2048)}
    assert model.get_layer(f"conv4_block{c4_blocks}_out") is not None
    batchnorms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert batchnorms and not any(l.trainable for l in batchnorms)
    trainable_bn = build_backbone(name, (128, 128, 3), freeze_batchnorm=False)
    assert all(l.trainable for l in trainable_bn.layers if isinstance(l, keras.layers.BatchNormalization))


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
    for name in ("conv1_conv", "conv3_block4_3_bn", "conv5_block3_3_conv"):
        for ours, theirs in zip(model.get_layer(name).weights, reference.get_layer(name).weights):
            assert_close(ours, theirs, atol=0)


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
    with pytest.raises(RuntimeError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        build_backbone("resnet50", (64, 64, 3), weights="imagenet")


def test_bad_names_and_paths():
    with pytest.raises(ValueError, match="backbone='vgg'"):
        build_backbone("vgg", (64, 64, 3))
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        build_backbone("resnet50", (64, 64, 3), weights="/nowhere/missing.h5")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_backbone("tiny", (64, 64, 3), weights="imagenet")
