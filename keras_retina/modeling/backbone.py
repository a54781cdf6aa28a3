"""Backbones: image (RGB, 0-255) -> C3, C4, C5 feature maps (strides 8, 16, 32).

`build_backbone(name, input_shape, weights, freeze_batchnorm, freeze_at, bn_epsilon)` -> a `keras.Model`:
`[B, H, W, 3]` RGB 0-255 (normalised inside) -> {"C3": `[B, H/8, W/8, C3]`, "C4": `[B, H/16, W/16, C4]`,
"C5": `[B, H/32, W/32, C5]`} float. `name`, one of BACKBONES:
- "resnet50", "resnet101": keras.applications ResNets (paper 4.1), caffe-style input normalisation;
- "torchvision_resnet50/101", "detectron2_resnet50/101": those libraries' layouts (`pytorch_resnet`),
  for converted weights (no ImageNet download);
- "tiny": a five-stage conv-GroupNorm-ReLU network (16-128 channels) for tests and CPU demos.
`weights`: None (random init), "imagenet" (keras.applications') or a weights file path.
`freeze_batchnorm` (ResNets): every BN frozen and folded into its conv (`FoldedConvBatchNorm`).
`freeze_at` = k (Detectron's FREEZE_AT, 0..5, ResNets only): the stem (k >= 1) and stages
conv2..conv{k} frozen; `default_freeze_at` is 2 with pretrained weights, else 0.
UsageError (a ValueError) for settings a backbone does not take (`check_settings`, which ModelConfig
applies too); DataError for weights it cannot use.
"""

import os
import re

import keras
import tensorflow as tf
from keras import ops

from keras_retina.errors import DataError, UsageError
from keras_retina.modeling import pytorch_resnet

BACKBONES = ("resnet50", "resnet101", "torchvision_resnet50", "torchvision_resnet101", "detectron2_resnet50",
             "detectron2_resnet101", "tiny")
DEFAULT_BACKBONE = "resnet50"

RESNETS = {
    "resnet50": (keras.applications.ResNet50, ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out")),
    "resnet101": (keras.applications.ResNet101, ("conv3_block4_out", "conv4_block23_out", "conv5_block3_out")),
}
# name -> (depth, layout) of `pytorch_resnet`
PYTORCH_RESNETS = {f"{layout}_resnet{depth}": (depth, layout) for layout in pytorch_resnet.LAYOUTS
                   for depth in pytorch_resnet.BLOCKS}
FREEZABLE = tuple(RESNETS) + tuple(PYTORCH_RESNETS)  # backbones with stages to freeze and BatchNorm
_IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
FREEZE_AT_PRETRAINED = 2  # Detectron's TRAIN.FREEZE_AT: the stem and conv2_x
MAX_FREEZE_AT = 5  # the stem and every stage
FREEZE_AT_CHECK = (lambda v: 0 <= v <= MAX_FREEZE_AT,
                   f"choose 0 (train everything) to {MAX_FREEZE_AT} (the stem and conv2..conv{MAX_FREEZE_AT} frozen).")
_STAGE = re.compile(r"^(?:conv|pool)(\d)_")
_TINY_WIDTHS = (16, 32, 64, 96, 128)


@keras.saving.register_keras_serializable(package="keras_retina")
class CaffePreprocessing(keras.layers.Layer):
    """RGB 0-255 -> BGR minus the ImageNet mean: what keras.applications ResNets expect."""

    def call(self, images):
        return ops.flip(ops.cast(images, self.compute_dtype), axis=-1) - ops.convert_to_tensor(
            _IMAGENET_MEAN_BGR, self.compute_dtype
        )


@keras.saving.register_keras_serializable(package="keras_retina")
class FoldedConvBatchNorm(keras.layers.Layer):
    """`bn(conv(x))` for a frozen BatchNormalization, computed as one convolution.

    With s = gamma / sqrt(moving_variance + epsilon):
        bn(conv(x)) = conv(x, kernel * s) + (bias - moving_mean) * s + beta.
    The layer owns no variables: it reads the wrapped layers' variables on every
    call, so the conv kernel keeps training (its gradient is exactly that of the
    unfolded graph) and weights load and save as those of the unfolded layers.
    """

    def __init__(self, conv, bn, **kwargs):
        # A frozen stage's conv stays frozen once wrapped. Passed to the constructor, which sets the
        # flag alone: the `trainable` setter would also set it on `bn`, unfreezing the BatchNorm.
        kwargs.setdefault("trainable", conv.trainable)
        super().__init__(**kwargs)
        if not _foldable(conv, bn):
            raise ValueError(f"{conv.name} -> {bn.name}: not a channels-last Conv2D followed by a frozen "
                             f"(trainable=False) BatchNormalization with center and scale.")
        self.conv = conv
        self.bn = bn
        self.autocast = False  # read the float32 variables as they are; cast the folded kernel once
        self.built = True

    def call(self, inputs):
        conv, bn = self.conv, self.bn
        if bn.trainable:
            raise ValueError(f"{bn.name} was unfrozen after it was folded into {conv.name}; build the "
                             f"backbone with freeze_batchnorm=False to train BatchNorm.")
        scale = bn.gamma * tf.math.rsqrt(bn.moving_variance + bn.epsilon)
        shift = bn.beta - bn.moving_mean * scale
        if conv.use_bias:
            shift = shift + conv.bias * scale
        kernel = ops.cast(conv.kernel * scale, self.compute_dtype)
        outputs = tf.nn.conv2d(ops.cast(inputs, self.compute_dtype), kernel, conv.strides,
                               conv.padding.upper(), dilations=conv.dilation_rate)
        return tf.nn.bias_add(outputs, ops.cast(shift, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        raise NotImplementedError(
            "FoldedConvBatchNorm is rebuilt by build_backbone, not serialized on its own; save the "
            "RetinaNet (its config rebuilds the backbone) or its weights.")


def _foldable(conv, bn):
    return (isinstance(conv, keras.layers.Conv2D) and conv.data_format == "channels_last"
            and conv.activation is keras.activations.linear and conv.groups == 1
            and isinstance(bn, keras.layers.BatchNormalization) and not bn.trainable
            and bn.axis in (-1, 3, [-1], [3]) and bn.center and bn.scale)


def fold_frozen_batchnorm(model):
    """A functional `model` with every Conv2D -> frozen BatchNormalization pair replaced by a
    `FoldedConvBatchNorm` sharing their variables (same function, fewer passes over memory)."""
    bn_after = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and not layer.trainable:
            nodes = layer._inbound_nodes
            if len(nodes) != 1 or len(nodes[0].parent_nodes) != 1:
                continue
            source = nodes[0].parent_nodes[0].operation
            if _foldable(source, layer) and len(source._outbound_nodes) == 1:
                bn_after[id(source)] = layer
    folded_bns = {id(bn) for bn in bn_after.values()}
    if not bn_after:
        return model

    def call(layer, *args, **kwargs):
        if id(layer) in bn_after:
            return FoldedConvBatchNorm(layer, bn_after[id(layer)], name=layer.name)(*args)
        if id(layer) in folded_bns:
            return args[0]
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)


def default_freeze_at(name, weights):
    """FREEZE_AT_PRETRAINED for a ResNet given pretrained weights, else 0 (frozen random filters never learn)."""
    return FREEZE_AT_PRETRAINED if name in FREEZABLE and weights is not None else 0


def check_settings(name, weights=None, freeze_at=0, bn_epsilon=None):
    """The rules of what a backbone takes, stated once: `build_backbone` and `ModelConfig` both apply
    them. UsageError (a ValueError) naming the setting."""
    if name not in BACKBONES:
        raise UsageError(f"backbone={name!r}: choose one of {BACKBONES}.")
    if freeze_at and name not in FREEZABLE:
        raise UsageError(f"freeze_backbone_at={freeze_at}: only ResNet backbones have frozen stages; "
                         f"backbone={name!r} trains from scratch, use 0.")
    if freeze_at is not None and not FREEZE_AT_CHECK[0](freeze_at):
        raise UsageError(f"freeze_backbone_at={freeze_at}: {FREEZE_AT_CHECK[1]}")
    if bn_epsilon is not None and name not in PYTORCH_RESNETS:
        raise UsageError(f"backbone_bn_epsilon={bn_epsilon}: only the torchvision_/detectron2_ ResNets take one; "
                         f"backbone={name!r} keeps its own.")
    if weights == "imagenet" and name not in RESNETS:
        raise UsageError(f"backbone={name!r} has no ImageNet weights to download; use resnet50/resnet101, a weights "
                         f"file, or a converted model_dir (keras_retina convert, train --init_from).")


def build_backbone(name, input_shape, weights=None, freeze_batchnorm=True, freeze_at=0, bn_epsilon=None):
    """Builds a backbone.

    Args:
      name: one of `BACKBONES`.
      input_shape: (height, width, 3).
      weights: None, "imagenet", or a weights file path (see module docstring).
      freeze_batchnorm: freeze BN layers (ResNets only; `tiny` trains from scratch).
      freeze_at: freeze the stem and stages up to conv{freeze_at} (ResNets only; 0..5).
      bn_epsilon: the BatchNorm epsilon of a torchvision_/detectron2_ ResNet (None: 1e-5,
        `pytorch_resnet.BN_EPSILON`); other backbones keep their own (None only).

    Returns:
      A `keras.Model` mapping `[B, H, W, 3]` RGB 0-255 to dict C3..C5.
    """
    check_settings(name, weights, freeze_at, bn_epsilon)
    if weights not in (None, "imagenet") and not os.path.isfile(str(weights)):
        raise DataError(f"backbone_weights={weights!r}: no such weights file.")
    if name in RESNETS:
        return _resnet(name, input_shape, weights, freeze_batchnorm, int(freeze_at))
    if name == "tiny":
        model = _tiny(input_shape)
    else:
        model = pytorch_resnet.build(*PYTORCH_RESNETS[name], input_shape=input_shape, name=name,
                                     bn_epsilon=pytorch_resnet.BN_EPSILON if bn_epsilon is None else bn_epsilon)
        model = _freeze(model, freeze_batchnorm, int(freeze_at))
    if weights is not None:
        try:
            model.load_weights(weights)
        except Exception as error:  # h5py, shape or format errors, whatever the file holds
            raise DataError(f"backbone_weights={weights}: not weights of the {name} backbone "
                            f"({_first_line(error)}).") from None
    return model


def _resnet(name, input_shape, weights, freeze_batchnorm, freeze_at):
    constructor, stage_outputs = RESNETS[name]
    inputs = keras.Input(input_shape, name="images")
    normalised = CaffePreprocessing(name="caffe_preprocessing")(inputs)
    try:
        resnet = constructor(include_top=False, weights=weights, input_tensor=normalised)
    except Exception as error:  # a bare Exception on a failed download; h5py/shape errors for a file
        if weights != "imagenet":
            raise DataError(f"backbone_weights={weights}: not {name} weights ({_first_line(error)}); use "
                            f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5 or a Keras .weights.h5 of "
                            f"the same network.") from None
        raise DataError(
            f"Could not get ImageNet weights for {name} ({_first_line(error)}). On a machine with internet, "
            f"download {name}_weights_tf_dim_ordering_tf_kernels_notop.h5 (keras.applications) and "
            f"pass its path as backbone_weights, or copy it to ~/.keras/models/.") from None
    outputs = {
        f"C{level}": resnet.get_layer(layer_name).output
        for level, layer_name in zip((3, 4, 5), stage_outputs)
    }
    return _freeze(keras.Model(inputs, outputs, name=name), freeze_batchnorm, freeze_at)


def _freeze(model, freeze_batchnorm, freeze_at):
    """Freezes the stem and stages conv2..conv{freeze_at} (layers named conv<k>_/pool<k>_) and,
    with `freeze_batchnorm`, every BatchNorm; folds each frozen BatchNorm into its conv."""
    for layer in model.layers:
        stage = _STAGE.match(layer.name)
        if stage and int(stage.group(1)) <= freeze_at:
            layer.trainable = False  # its BatchNorm too, so it folds
        elif freeze_batchnorm and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return fold_frozen_batchnorm(model)


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


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
