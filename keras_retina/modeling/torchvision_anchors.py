"""torchvision's RetinaNet anchor geometry (`torchvision.models.detection.anchor_utils.AnchorGenerator`
as `retinanet_resnet50_fpn` and `_v2` build it), for weights converted from torchvision.

`TorchvisionAnchorGenerator` differs from ours (`anchors.AnchorGenerator`) in four ways:
- sizes: level l has base size x = anchor_size * 2^l (32 .. 512) and integer scales
  (x, int(x * 2^(1/3)), int(x * 2^(2/3))): 32, 40, 50 on P3;
- rounding: the corners around the centre, (-w/2, -h/2, w/2, h/2), computed in float32 and rounded
  to integers (half to even);
- grid: location (y, x) at (y * stride_y, x * stride_x), stride_y = height // rows and stride_x =
  width // cols of the padded input (800 px gives P6 a stride of 800 // 13 = 61, not 64);
- order within a location: aspect ratio (outer) -> scale (inner), as the converted heads' channels.
`aspect_ratios` are ours, width / height (torchvision's (0.5, 1.0, 2.0), height / width, is our
(2.0, 1.0, 0.5)). Boxes are yxyx pixels.
"""

import keras
import numpy as np

from keras_retina.modeling.anchors import AnchorGenerator, feature_size


@keras.saving.register_keras_serializable(package="keras_retina")
class TorchvisionAnchorGenerator(AnchorGenerator):
    """torchvision's anchors (module docstring); same arguments as `AnchorGenerator` but
    `center_offset`, which is 0."""

    def __init__(self, *args, **kwargs):
        kwargs["center_offset"] = 0.0
        super().__init__(*args, **kwargs)

    def level_sizes(self, level):
        """torchvision's integer anchor sizes of a level: (x, int(x 2^(1/3)), ...), x = anchor_size * 2^level."""
        base = self.anchor_size * 2**level
        return [base if i == 0 else float(int(base * 2 ** (i / self.num_scales))) for i in range(self.num_scales)]

    def base_anchors(self, level):
        """`[A, 4]` float64 (-h/2, -w/2, h/2, w/2) rounded as torchvision does, ratio-major."""
        sizes = np.asarray(self.level_sizes(level), np.float32)
        h_ratios = np.sqrt(1.0 / np.asarray(self.aspect_ratios, np.float32)).astype(np.float32)
        w_ratios = np.float32(1.0) / h_ratios
        ws = (w_ratios[:, None] * sizes[None, :]).reshape(-1)
        hs = (h_ratios[:, None] * sizes[None, :]).reshape(-1)
        return np.round(np.stack([-hs, -ws, hs, ws], axis=1) / np.float32(2)).astype(np.float64)

    def level_anchors(self, level, height, width, xp=np):
        rows, cols = feature_size(height, level), feature_size(width, level)
        stride_y, stride_x = xp.float64(height // rows), xp.float64(width // cols)
        y = xp.arange(rows, dtype=np.float64) * stride_y
        x = xp.arange(cols, dtype=np.float64) * stride_x
        y, x = xp.meshgrid(y, x, indexing="ij")
        shifts = xp.stack([y, x, y, x], axis=-1)[:, :, None, :]  # [rows, cols, 1, 4]
        return xp.reshape(shifts + self.base_anchors(level), (-1, 4))

    def get_config(self):
        config = super().get_config()
        config.pop("center_offset")
        return config
