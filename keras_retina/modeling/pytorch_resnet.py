"""ResNet-50/101 laid out as torchvision and detectron2 build them, for weights converted from either.

`build(depth, layout, input_shape, name, bn_epsilon)` -> a `keras.Model` from `[B, H, W, 3]` RGB 0-255
to {"C3", "C4", "C5"} (strides 8, 16, 32; channels 512, 1024, 2048: torchvision's layer2..layer4,
detectron2's res3..res5); ValueError for a depth other than 50/101, another layout or bn_epsilon < 0.
Where a layout (`LAYOUTS`) differs from keras.applications' ResNets (`backbone.RESNETS`):
- a stage's stride is in the 3x3 conv of its first block (torchvision, "ResNet v1.5") or in the
  first 1x1 conv (detectron2's STRIDE_IN_1X1, as MSRA's ResNets and keras.applications);
- convolutions have no bias and PyTorch's padding (kernel // 2 on every side); each is followed by a
  BatchNorm of epsilon `bn_epsilon` (BN_EPSILON, 1e-5), which `backbone` freezes and folds;
- input normalisation inside the network (`InputNormalization`): torchvision RGB / 255 minus the
  ImageNet mean over its std, detectron2 BGR 0-255 minus its pixel mean. `mean_color(layout)` is
  the RGB colour that normalises to 0, which converted models pad with.
Layer names follow keras.applications (conv1_conv, conv2_block1_1_conv, ...), so `freeze_at` works.
"""

import keras
from keras import ops

BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BN_EPSILON = 1e-5  # FrozenBatchNorm2d's default, torchvision and detectron2

LAYOUTS = {
    # layout: (stride in the first 1x1 conv, input scale, mean, std, BGR), mean/std in units after scaling
    "torchvision": (False, 1.0 / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), False),
    "detectron2": (True, 1.0, (103.53, 116.28, 123.675), (1.0, 1.0, 1.0), True),
}


@keras.saving.register_keras_serializable(package="keras_retina")
class InputNormalization(keras.layers.Layer):
    """RGB 0-255 -> (channels(x) * scale - mean) / std, channels reversed when `bgr`."""

    def __init__(self, scale, mean, std, bgr, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.mean, self.std, self.bgr = float(scale), tuple(mean), tuple(std), bool(bgr)

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.bgr:
            x = ops.flip(x, axis=-1)
        if self.scale != 1.0:
            x = x * self.scale
        return (x - ops.convert_to_tensor(self.mean, self.compute_dtype)) / ops.convert_to_tensor(
            self.std, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, mean=list(self.mean), std=list(self.std), bgr=self.bgr)
        return config


def mean_color(layout):
    """The RGB 0-255 colour the layout's normalisation maps to 0: the padding both libraries'
    batches effectively have (they pad after normalising)."""
    _, scale, mean, _, bgr = LAYOUTS[layout]
    rgb = mean[::-1] if bgr else mean
    return tuple(round(m / scale, 6) for m in rgb)


def _conv_bn(x, filters, kernel, stride, name, bn_epsilon):
    """conv (PyTorch padding: kernel // 2 on every side, no bias) -> BatchNorm."""
    pad = kernel // 2
    if pad and stride > 1:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"  # stride 1: 'same' pads kernel // 2 on every side, as PyTorch does
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding=padding, use_bias=False,
                            name=f"{name}_conv")(x)
    return keras.layers.BatchNormalization(epsilon=bn_epsilon, name=f"{name}_bn")(x)


def _bottleneck(x, filters, stride, name, stride_in_1x1, bn_epsilon):
    stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
    if stride != 1 or x.shape[-1] != 4 * filters:
        shortcut = _conv_bn(x, 4 * filters, 1, stride, f"{name}_0", bn_epsilon)
    else:
        shortcut = x
    y = keras.layers.ReLU(name=f"{name}_1_relu")(_conv_bn(x, filters, 1, stride_1x1, f"{name}_1", bn_epsilon))
    y = keras.layers.ReLU(name=f"{name}_2_relu")(_conv_bn(y, filters, 3, stride_3x3, f"{name}_2", bn_epsilon))
    y = _conv_bn(y, 4 * filters, 1, 1, f"{name}_3", bn_epsilon)
    return keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([shortcut, y]))


def build(depth, layout, input_shape=(None, None, 3), name=None, bn_epsilon=BN_EPSILON):
    """The ResNet-`depth` (50 or 101) of `layout` ("torchvision" or "detectron2"): a
    `keras.Model` from `[B, H, W, 3]` RGB 0-255 to {"C3", "C4", "C5"}, BatchNorm (epsilon
    `bn_epsilon`, >= 0) not yet frozen (`backbone.build_backbone` freezes and folds it)."""
    if depth not in BLOCKS or layout not in LAYOUTS:
        raise ValueError(f"ResNet-{depth} in the {layout!r} layout: choose depth {sorted(BLOCKS)} and layout "
                         f"{sorted(LAYOUTS)}.")
    if not bn_epsilon >= 0:
        raise ValueError(f"bn_epsilon={bn_epsilon}: must be >= 0.")
    stride_in_1x1, scale, mean, std, bgr = LAYOUTS[layout]
    inputs = keras.Input(input_shape, name="images")
    x = InputNormalization(scale, mean, std, bgr, name="input_normalization")(inputs)
    x = keras.layers.ReLU(name="conv1_relu")(_conv_bn(x, 64, 7, 2, "conv1", bn_epsilon))
    x = keras.layers.ZeroPadding2D(1, name="pool1_pad")(x)  # zeros = PyTorch's -inf here: the pool follows a ReLU
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    outputs = {}
    for stage, (blocks, filters) in enumerate(zip(BLOCKS[depth], (64, 128, 256, 512)), start=2):
        for block in range(1, blocks + 1):
            stride = 2 if block == 1 and stage > 2 else 1
            x = _bottleneck(x, filters, stride, f"conv{stage}_block{block}", stride_in_1x1, bn_epsilon)
        if stage >= 3:
            outputs[f"C{stage}"] = x
    return keras.Model(inputs, outputs, name=name or f"{layout}_resnet{depth}")
