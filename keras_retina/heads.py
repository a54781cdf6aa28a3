"""Classification and box-regression subnets, shared across pyramid levels (paper section 4).

Each subnet is `num_convs` (4) 3x3 convs with `filters` (256) channels and
ReLU, then a 3x3 conv with A * D outputs per location: D = K class logits
(sigmoid applied in the loss / decoder) or D = 4 class-agnostic box deltas. The
same weights run on every level. Initialisation (section 4.1): weights
N(0, 0.01), biases 0, except the classification output bias
-log((1 - pi) / pi) with pi = 0.01, so every anchor starts at ~0.01 foreground
confidence.

Input: dict "P3".."P7" -> `[B, H_l, W_l, C]`.
Output: dict "P3".."P7" -> `[B, H_l, W_l, A * D]` (channel a * D + d), which
`anchors.flatten_levels` turns into `[B, A_total, D]` in anchor order.
"""

import math

import keras

PRIOR_PROBABILITY = 0.01


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
    """

    def __init__(self, values_per_anchor, num_anchors=9, filters=256, num_convs=4,
                 prior_probability=None, **kwargs):
        super().__init__(**kwargs)
        self.values_per_anchor = values_per_anchor
        self.num_anchors = num_anchors
        self.filters = filters
        self.num_convs = num_convs
        self.prior_probability = prior_probability
        init = keras.initializers.RandomNormal(stddev=0.01)
        # Direct attributes, not a list: tf.train.Checkpoint does not see layers in lists.
        for i in range(num_convs):
            setattr(self, f"conv{i}", keras.layers.Conv2D(
                filters, 3, padding="same", activation="relu", kernel_initializer=init, name=f"conv{i}"))
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

    def build(self, input_shape):
        shape = tuple(next(iter(input_shape.values())))
        for conv in self.hidden:
            conv.build(shape)
            shape = shape[:-1] + (self.filters,)
        self.output_conv.build(shape)

    def call(self, features):
        outputs = {}
        for name, x in features.items():
            for conv in self.hidden:
                x = conv(x)
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
        )
        return config
