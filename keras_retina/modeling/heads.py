"""Classification and box-regression subnets, shared across pyramid levels (paper section 4).

Each subnet is `num_convs` (4) 3x3 convs with `filters` (256) channels and ReLU, then a 3x3 conv
with A * D outputs per location: D = K class logits (sigmoid applied in the loss / decoder) or
D = 4 class-agnostic box deltas. The same weights run on every level. Initialisation (section 4.1):
weights N(0, 0.01), biases 0, except the classification output bias -log((1 - pi) / pi) with
pi = 0.01, so every anchor starts at ~0.01 foreground confidence.

`norm="group_norm"` puts GroupNorm (32 groups, epsilon 1e-5) between each hidden conv (then
without bias) and its ReLU: torchvision's `retinanet_resnet50_fpn_v2` heads (from FCOS).

Input: dict "P3".."P7" -> `[B, H_l, W_l, C]`.
Output: dict "P3".."P7" -> `[B, H_l, W_l, A * D]` (channel a * D + d), which
`anchors.flatten_levels` turns into `[B, A_total, D]` in anchor order.
"""

import math

import keras

PRIOR_PROBABILITY = 0.01
NORMS = ("none", "group_norm")
GROUP_NORM_GROUPS = 32  # torchvision's v2 heads: nn.GroupNorm(32, 256) with its default eps
GROUP_NORM_EPSILON = 1e-5


@keras.saving.register_keras_serializable(package="keras_retina")
class PredictionHead(keras.layers.Layer):
    """One RetinaNet subnet.

    Args:
      values_per_anchor: D; K for the classification subnet, 4 for the box subnet.
      num_anchors: A, anchors per location (9).
      filters: channels of the hidden convs (256).
      num_convs: hidden 3x3 convs (4).
      prior_probability: pi for the output bias of the classification subnet;
        None for a zero bias (the box subnet).
      norm: "none" (the paper) or "group_norm" (module docstring).
    """

    def __init__(self, values_per_anchor, num_anchors=9, filters=256, num_convs=4,
                 prior_probability=None, norm="none", **kwargs):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r}: choose one of {NORMS}.")
        if norm == "group_norm" and filters % GROUP_NORM_GROUPS:
            raise ValueError(f"head filters={filters}: GroupNorm heads need a multiple of {GROUP_NORM_GROUPS}.")
        self.norm = norm
        self.values_per_anchor = values_per_anchor
        self.num_anchors = num_anchors
        self.filters = filters
        self.num_convs = num_convs
        self.prior_probability = prior_probability
        init = keras.initializers.RandomNormal(stddev=0.01)
        # Direct attributes, not a list: tf.train.Checkpoint does not see layers in lists.
        for i in range(num_convs):
            setattr(self, f"conv{i}", keras.layers.Conv2D(
                filters, 3, padding="same", activation="relu" if norm == "none" else None,
                use_bias=norm == "none", kernel_initializer=init, name=f"conv{i}"))
            if norm == "group_norm":
                setattr(self, f"norm{i}", keras.layers.GroupNormalization(
                    GROUP_NORM_GROUPS, epsilon=GROUP_NORM_EPSILON, name=f"norm{i}"))
        if prior_probability is None:
            bias = "zeros"
        else:
            bias = keras.initializers.Constant(-math.log((1.0 - prior_probability) / prior_probability))
        self.output_conv = keras.layers.Conv2D(
            num_anchors * values_per_anchor, 3, padding="same", kernel_initializer=init,
            bias_initializer=bias, name="output",
        )

    @property
    def hidden(self):
        """The hidden 3x3 convs, in order."""
        return [getattr(self, f"conv{i}") for i in range(self.num_convs)]

    @property
    def norms(self):
        """The GroupNorm after each hidden conv, or Nones."""
        return [getattr(self, f"norm{i}", None) for i in range(self.num_convs)]

    def build(self, input_shape):
        shape = tuple(next(iter(input_shape.values())))
        for conv, norm in zip(self.hidden, self.norms):
            conv.build(shape)
            shape = shape[:-1] + (self.filters,)
            if norm is not None:
                norm.build(shape)
        self.output_conv.build(shape)

    def call(self, features):
        outputs = {}
        for name, x in features.items():
            for conv, norm in zip(self.hidden, self.norms):
                x = conv(x)
                if norm is not None:
                    x = keras.ops.relu(norm(x))
            outputs[name] = self.output_conv(x)
        return outputs

    def compute_output_shape(self, input_shape):
        return {
            name: tuple(shape[:-1]) + (self.num_anchors * self.values_per_anchor,)
            for name, shape in input_shape.items()
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            values_per_anchor=self.values_per_anchor,
            num_anchors=self.num_anchors,
            filters=self.filters,
            num_convs=self.num_convs,
            prior_probability=self.prior_probability,
            norm=self.norm,
        )
        return config
