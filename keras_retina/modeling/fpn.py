"""Feature pyramid: backbone C3-C5 -> P3-P7 (paper section 4, "Feature Pyramid Network Backbone").

P3-P5 are FPN's top-down pathway [4]: a 1x1 lateral conv on each C_l, the coarser level upsampled
x2 (nearest) and added, then a 3x3 output conv. P6 is a 3x3 stride-2 conv on C5 (the paper's; not
on P5), P7 a 3x3 stride-2 conv on ReLU(P6). All levels have `filters` channels (256).
`p6_input="P5"` gives the Model Garden's and torchvision v1's variant. `extra_padding` is how the
stride-2 P6 and P7 convs pad: "same" (TensorFlow's: on an even side one row or column after, none
before) or "symmetric" (PyTorch's padding=1: torchvision and detectron2). Both give ceil(side / 2).
Under a bfloat16 policy the "same" P6 and P7 convs compute in float32 (see `__init__`).

Input: dict "C3".."C5" -> `[B, H/2^l, W/2^l, C_l]`.
Output: dict "P3".."P{max_level}" -> `[B, H/2^l, W/2^l, filters]`.
Invalid `p6_input`, `extra_padding` or `max_level` (5..7) raise ValueError.
"""

import keras

P6_INPUTS = ("C5", "P5")
EXTRA_PADDINGS = ("same", "symmetric")


@keras.saving.register_keras_serializable(package="keras_retina")
class FeaturePyramid(keras.layers.Layer):
    """C3-C5 -> P3-P{max_level} (max_level 5..7; 7 in the paper)."""

    def __init__(self, filters=256, max_level=7, p6_input="C5", extra_padding="same", **kwargs):
        super().__init__(**kwargs)
        if p6_input not in P6_INPUTS:
            raise ValueError(f"p6_input={p6_input!r}: choose one of {P6_INPUTS}.")
        if extra_padding not in EXTRA_PADDINGS:
            raise ValueError(f"extra_padding={extra_padding!r}: choose one of {EXTRA_PADDINGS}.")
        if not 5 <= max_level <= 7:
            raise ValueError(f"max_level={max_level}: FeaturePyramid builds P3..P5, P6 or P7.")
        self.filters = filters
        self.max_level = max_level
        self.p6_input = p6_input
        self.extra_padding = extra_padding
        # Every conv is a direct attribute: tf.train.Checkpoint (resume, SavedModel export) does
        # not see layers held in dicts or lists of a Keras 3 layer. Keras' default Glorot-uniform
        # init with zero bias is the "Xavier" fill Detectron uses for FPN layers.
        conv = keras.layers.Conv2D
        for lv in (3, 4, 5):
            setattr(self, f"lateral_c{lv}", conv(filters, 1, padding="same", name=f"lateral_c{lv}"))
            setattr(self, f"output_p{lv}", conv(filters, 3, padding="same", name=f"output_p{lv}"))
        # Under a bfloat16 policy the stride-2 "same" convs compute in float32: at canvases of 32-64
        # px they run over a single pixel, and TensorFlow 2.20's oneDNN bfloat16 filter gradient then
        # writes garbage (often NaN) into the eight kernel taps that only see padding, weights a
        # larger picture uses. At 1/64 and 1/128 of the picture's side their cost is negligible.
        exact = {"dtype": "float32"} if extra_padding == "same" and self.compute_dtype == "bfloat16" else {}
        for lv in range(6, max_level + 1):
            setattr(self, f"conv_p{lv}", conv(filters, 3, strides=2, name=f"conv_p{lv}",
                                              padding="same" if extra_padding == "same" else "valid", **exact))
        # On even sides the two paddings' sampling grids are one pixel apart: converted weights need theirs.
        self.pad = keras.layers.ZeroPadding2D(1) if extra_padding == "symmetric" else None
        self.upsample = keras.layers.UpSampling2D(2, interpolation="nearest")

    @property
    def lateral(self):
        """"C3".."C5" -> the 1x1 lateral conv on that level."""
        return {f"C{lv}": getattr(self, f"lateral_c{lv}") for lv in (3, 4, 5)}

    @property
    def output_convs(self):
        """"P3".."P5" -> the 3x3 output conv."""
        return {f"P{lv}": getattr(self, f"output_p{lv}") for lv in (3, 4, 5)}

    @property
    def extra(self):
        """"P6".."P{max_level}" -> the 3x3 stride-2 conv that makes the level."""
        return {f"P{lv}": getattr(self, f"conv_p{lv}") for lv in range(6, self.max_level + 1)}

    def build(self, input_shape):
        for lv in (5, 4, 3):
            self.lateral[f"C{lv}"].build(input_shape[f"C{lv}"])
            self.output_convs[f"P{lv}"].build(tuple(input_shape[f"C{lv}"][:-1]) + (self.filters,))
        p6_channels = input_shape["C5"][-1] if self.p6_input == "C5" else self.filters
        for name, layer in self.extra.items():
            layer.build((None, None, None, p6_channels if name == "P6" else self.filters))

    def call(self, features):
        top_down = self.lateral["C5"](features["C5"])
        merged = {5: top_down}
        for lv in (4, 3):
            top_down = self.lateral[f"C{lv}"](features[f"C{lv}"]) + self.upsample(top_down)
            merged[lv] = top_down
        outputs = {f"P{lv}": self.output_convs[f"P{lv}"](merged[lv]) for lv in (3, 4, 5)}
        previous = features["C5"] if self.p6_input == "C5" else outputs["P5"]
        for lv in range(6, self.max_level + 1):
            if lv > 6:
                previous = keras.ops.relu(previous)
            previous = self.extra[f"P{lv}"](previous if self.pad is None else self.pad(previous))
            previous = keras.ops.cast(previous, self.compute_dtype)  # P6, P7 in the pyramid's dtype
            outputs[f"P{lv}"] = previous
        return outputs

    def compute_output_shape(self, input_shape):
        batch, height, width = input_shape["C3"][:3]
        out = {}
        for lv in range(3, self.max_level + 1):
            scale = 2 ** (lv - 3)  # stride-2 'same' convs round up
            out[f"P{lv}"] = (
                batch,
                None if height is None else -(-height // scale),
                None if width is None else -(-width // scale),
                self.filters,
            )
        return out

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, max_level=self.max_level, p6_input=self.p6_input,
                      extra_padding=self.extra_padding)
        return config
