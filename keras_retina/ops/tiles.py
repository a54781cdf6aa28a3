"""Tiles of a large picture: the windows, and boxes mapped into and out of them (numpy only).

Windows are `(y0, x0, y1, x1)` in the picture's pixels, ends exclusive. `tile_windows(height,
width, tile, overlap)` lays a grid of `tile` x `tile` windows with a stride of
`tile - round(tile * overlap)`; the last row and column are moved back to end at the picture's
edge, so every window lies inside the picture and every pixel is in at least one window. A side
shorter than `tile` gets one window as long as that side.

Boxes are `[N, 4]` yxyx in pixels. `boxes_in_window` clips boxes to a window and says how much
of each box is inside it (the tiling rules of `data.tile_dataset`).
"""

import numpy as np


def tile_windows(height, width, tile, overlap=0.0):
    """[(y0, x0, y1, x1)] covering a `height` x `width` picture (module docstring)."""
    if tile <= 0:
        raise ValueError(f"tile={tile}: must be positive.")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap={overlap}: must be in [0, 1).")
    stride = max(1, tile - int(round(tile * overlap)))
    return [(y0, x0, min(y0 + tile, height), min(x0 + tile, width))
            for y0 in _starts(height, tile, stride) for x0 in _starts(width, tile, stride)]


def _starts(length, tile, stride):
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)  # the last window ends at the edge
    return starts


def boxes_in_window(boxes, window):
    """(boxes clipped to `window`, in the window's pixels [N, 4]; the share of each box's area
    inside the window [N]; whether each box's centre is inside [N])."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    y0, x0, y1, x1 = window
    clipped = np.stack([boxes[:, 0].clip(y0, y1), boxes[:, 1].clip(x0, x1),
                        boxes[:, 2].clip(y0, y1), boxes[:, 3].clip(x0, x1)], axis=1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    share = np.where(area > 0, inside / np.maximum(area, 1e-12), 0.0)
    cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    centred = (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)
    return clipped - np.array([y0, x0, y0, x0], np.float64), share, centred
