"""Weighted box fusion: the detections of one object, seen by several overlapping tiles, become one box.

WBF (Solovyev, Wang and Gabruseva, "Weighted boxes fusion: ensembling boxes from different object
detection models", Image and Vision Computing 2021): from the best score down, each box joins the
cluster of its class whose fused box it overlaps most, at IoU >= `threshold`, else it starts a
cluster; a cluster's box is the score-weighted average of its members'. NMS keeps one view of an
object and drops the others; the average of the views fits the object better when each view misses
its edges a little differently.

Tiles add one rule. A box `cut` by a tile's inner edge holds only part of its object, so its IoU with
the whole object is low and its edge is the tile's, not the object's: a cut box joins a cluster when
their intersection covers `threshold` of the smaller of the two, and it does not move the box of a
cluster that has a whole member; a cluster of cut boxes only (an object no tile holds whole) is the
box around them, as `--tile_merge=merge` joins them. A cluster's score is its best member's: a tile
that sees an object partly, or at its edge, scores it lower, while WBF's mean is for an ensemble of
models that each see all of it.

`fuse_boxes(boxes [N, 4] yxyx pixels, scores [N], classes [N], threshold, cut [N] bool)` ->
(boxes [M, 4], scores [M], classes [M], members [M] int: how many boxes each fused box holds), in
the order the clusters were started (best score first). Candidates are found through a grid of
`cell`-pixel cells, so a picture of many thousands of boxes stays cheap.

Written here rather than taken from the `ensemble-boxes` package: that one wants coordinates
normalised to [0, 1], has no notion of cut boxes, ends the process (`exit()`) on malformed input
and brings pandas and numba for an algorithm of a few dozen lines.
"""

import numpy as np


def fuse_boxes(boxes, scores, classes, threshold=0.55, cut=None, cell=256.0):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64)
    classes = np.asarray(classes)
    cut = np.zeros(len(boxes), bool) if cut is None else np.asarray(cut, bool)
    n = len(boxes)
    fused = np.zeros((n, 4))  # per cluster, in the order started
    weighted = np.zeros((n, 4))  # sum of score x box over whole members
    weight = np.zeros(n)  # sum of their scores
    around = np.zeros((n, 4))  # the box around the cut members
    has_whole = np.zeros(n, bool)
    best = np.zeros(n)
    cluster_class = np.zeros(n, classes.dtype)
    members = np.zeros(n, np.int64)
    grid = {}
    count = 0
    for i in np.argsort(-scores, kind="stable"):
        box = boxes[i]
        found = _best_match(box, cut[i], classes[i], fused=fused, has_whole=has_whole, cluster_class=cluster_class,
                            near=_near(grid, box, cell), threshold=threshold)
        if found is None:
            found, count = count, count + 1
            best[found], cluster_class[found], around[found] = scores[i], classes[i], box
        elif cut[i]:
            around[found, :2] = np.minimum(around[found, :2], box[:2])
            around[found, 2:] = np.maximum(around[found, 2:], box[2:])
        if not cut[i]:
            if not has_whole[found]:
                around[found] = box  # from now on the whole members give the box
            weighted[found] += scores[i] * box
            weight[found] += scores[i]
            has_whole[found] = True
        members[found] += 1
        fused[found] = weighted[found] / weight[found] if has_whole[found] else around[found]
        _register(grid, fused[found], found, cell)
    return fused[:count], best[:count], cluster_class[:count], members[:count]


def _best_match(box, is_cut, cls, *, fused, has_whole, cluster_class, near, threshold):
    """The cluster `box` joins (module docstring), or None."""
    near = np.array(sorted(c for c in near if cluster_class[c] == cls), np.int64)
    if not near.size:
        return None
    others = fused[near]
    inter = (np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0.0)
             * np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0.0))
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    iou = inter / np.maximum(area + areas - inter, 1e-12)
    of_smaller = inter / np.maximum(np.minimum(area, areas), 1e-12)
    # a cut part joins a whole view by how much of the part lies in it (never the other way round: a
    # small whole box inside a large part is another object), two cut parts by the smaller
    overlap = np.where(is_cut & ~has_whole[near], of_smaller,
                       np.where(is_cut, inter / max(area, 1e-12),
                                np.where(~has_whole[near], inter / np.maximum(areas, 1e-12), iou)))
    chosen = int(np.argmax(overlap))
    return int(near[chosen]) if overlap[chosen] >= threshold else None


def _cells(box, cell):
    y0, x0, y1, x1 = box
    return [(cy, cx) for cy in range(int(y0 // cell), int(y1 // cell) + 1)
            for cx in range(int(x0 // cell), int(x1 // cell) + 1)]


def _near(grid, box, cell):
    return {c for key in _cells(box, cell) for c in grid.get(key, ())}


def _register(grid, box, cluster, cell):
    for key in _cells(box, cell):  # a moved box keeps its old cells too: a stale entry only costs a check
        grid.setdefault(key, set()).add(cluster)
