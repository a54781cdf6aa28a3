"""Backbones: image (RGB, 0-255) -> C3, C4, C5 feature maps (strides 8, 16, 32).

- `resnet50`, `resnet101`: keras.applications ResNets (paper section 4.1,
  "ResNet-50-FPN and ResNet-101-FPN"), with their own caffe-style input
  normalisation (RGB -> BGR, ImageNet mean subtracted) built into the graph, so
  ImageNet weights see the inputs they were trained on. C3..C5 are the outputs
  of stages conv3..conv5.
- `tiny`: a five-stage conv-GroupNorm-ReLU network (16-128 channels) for tests
  and CPU demos; trains from scratch in minutes. GroupNorm, not BatchNorm: it
  trains from scratch on a few images per step and behaves the same in training
  and inference (BatchNorm's moving statistics lag far behind such a model).

Weights (`weights=`): None (random init), "imagenet" (keras.applications'
download, or its cache in ~/.keras/models), or the path of a weights file:
the `*_notop.h5` files keras.applications publishes, or a `.weights.h5`
written by Keras for the same architecture.

BatchNorm: the paper (like Detectron) keeps the pretrained backbone's BN
statistics frozen, since a few images per device give useless batch
statistics; `freeze_batchnorm=True` (the default for ResNets) sets every BN
layer's `trainable = False`, which in Keras 3 also runs it in inference mode.

Output: dict "C3", "C4", "C5" -> `[B, H/8, W/8, C3]`, `[B, H/16, W/16, C4]`,
`[B, H/32, W/32, C5]` float.
"""

import os

import keras
from keras import ops

BACKBONES = ("resnet50", "resnet101", "tiny")

_RESNETS = {
    "resnet50": (keras.applications.ResNet50, ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out")),
    "resnet101": (keras.applications.ResNet101, ("conv3_block4_out", "conv4_block23_out", "conv5_block3_out")),
}
_IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
_TINY_WIDTHS = (16, 32, 64, 96, 128)


@keras.saving.register_keras_serializable(package="keras_retina")
class CaffePreprocessing(keras.layers.Layer):
    """RGB 0-255 -> BGR minus the ImageNet mean: what keras.applications ResNets expect."""

    def call(self, images):
        return ops.flip(ops.cast(images, self.compute_dtype), axis=-1) - ops.convert_to_tensor(
            _IMAGENET_MEAN_BGR, self.compute_dtype
        )


def build_backbone(name, input_shape, weights=None, freeze_batchnorm=True):
    """Builds a backbone.

    Args:
      name: one of `BACKBONES`.
      input_shape: (height, width, 3).
      weights: None, "imagenet", or a weights file path (see module docstring).
      freeze_batchnorm: freeze BN layers (ResNets only; `tiny` trains from scratch).

    Returns:
      A `keras.Model` mapping `[B, H, W, 3]` RGB 0-255 to dict C3..C5.
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone={name!r}: choose one of {BACKBONES}.")
    if weights not in (None, "imagenet") and not os.path.isfile(str(weights)):
        raise FileNotFoundError(f"backbone_weights={weights!r}: no such weights file.")
    if name == "tiny":
        if weights == "imagenet":
            raise ValueError("backbone='tiny' has no ImageNet weights; use resnet50/resnet101 or a path.")
        model = _tiny(input_shape)
        if weights is not None:
            model.load_weights(weights)
        return model
    return _resnet(name, input_shape, weights, freeze_batchnorm)


def _resnet(name, input_shape, weights, freeze_batchnorm):
    constructor, stage_outputs = _RESNETS[name]
    inputs = keras.Input(input_shape, name="images")
    normalised = CaffePreprocessing(name="caffe_preprocessing")(inputs)
    try:
        resnet = constructor(include_top=False, weights=weights, input_tensor=normalised)
    except Exception as error:  # keras raises a bare Exception on a failed download
        if weights != "imagenet":
            raise
        raise RuntimeError(
            f"Could not get ImageNet weights for {name} ({error}). On a machine with internet, "
            f"download {name}_weights_tf_dim_ordering_tf_kernels_notop.h5 (keras.applications) and "
            f"pass its path as backbone_weights, or copy it to ~/.keras/models/."
        ) from error
    if freeze_batchnorm:
        for layer in resnet.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    outputs = {
        f"C{level}": resnet.get_layer(layer_name).output
        for level, layer_name in zip((3, 4, 5), stage_outputs)
    }
    return keras.Model(inputs, outputs, name=name)


def _tiny(input_shape):
    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    outputs = {}
    for stage, width in enumerate(_TINY_WIDTHS, start=1):
        for i, stride in enumerate((2, 1)):
            x = keras.layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False,
                                    name=f"stage{stage}_conv{i}")(x)
            x = keras.layers.GroupNormalization(min(8, width // 4), name=f"stage{stage}_gn{i}")(x)
            x = keras.layers.ReLU(name=f"stage{stage}_relu{i}")(x)
        if stage >= 3:
            outputs[f"C{stage}"] = x
    return keras.Model(inputs, outputs, name="tiny")
