"""Tiles of a large picture: the windows, and boxes mapped into and out of them (numpy only).

Windows are `(y0, x0, y1, x1)` in the picture's pixels, ends exclusive. `tile_windows(height,
width, tile, overlap)` lays a grid of `tile` x `tile` windows with a stride of
`tile - round(tile * overlap)`; the last row and column are moved back to end at the picture's
edge, so every window lies inside the picture and every pixel is in at least one window. A side
shorter than `tile` gets one window as long as that side. `iter_windows` yields the same windows
one at a time and `count_windows` counts them, so a picture of any size costs no memory to plan.

Boxes are `[N, 4]` yxyx in pixels. `boxes_in_window` clips boxes to a window and says how much
of each box is inside it (the tiling rules of `data.tile_dataset`).
"""

import numpy as np

MAX_TILES = 10_000  # a default bound for detection by tiles: ten times a 20,000-pixel-square picture's 800s


def tile_windows(height, width, tile, overlap=0.0):
    """[(y0, x0, y1, x1)] covering a `height` x `width` picture (module docstring)."""
    return list(iter_windows(height, width, tile, overlap))


def iter_windows(height, width, tile, overlap=0.0):
    """The windows of `tile_windows`, one at a time, row by row: memory flat whatever the size."""
    ys, xs = _axis_starts(height, width, tile, overlap)
    for y0 in ys:
        for x0 in xs:
            yield y0, x0, min(y0 + tile, height), min(x0 + tile, width)


def count_windows(height, width, tile, overlap=0.0):
    """len(tile_windows(...)), without listing them."""
    ys, xs = _axis_starts(height, width, tile, overlap)
    return len(ys) * len(xs)


def _axis_starts(height, width, tile, overlap):
    if tile <= 0:
        raise ValueError(f"tile={tile}: must be positive.")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap={overlap}: must be in [0, 1).")
    stride = max(1, tile - int(round(tile * overlap)))
    return _starts(height, tile, stride), _starts(width, tile, stride)


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
