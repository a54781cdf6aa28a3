"""Adaptive Training Sample Selection (ATSS; Zhang et al., "Bridging the Gap Between Anchor-based and
Anchor-free Detection via Adaptive Training Sample Selection", CVPR 2020): which anchors a ground-truth
box trains, decided per box from the statistics of its candidates instead of the paper's fixed IoU
thresholds (0.5 / 0.4, section 4).

For each box: on every pyramid level the anchors of the `top_k` (9) locations whose centres are
nearest the box's centre (`top_k` x anchors per location anchors, as the ATSS authors' code takes
them for RetinaNet's 9 anchors a location) are its candidates; its IoU threshold is the mean plus
the standard deviation (n - 1) of the candidates' IoUs with it; a candidate at or above the
threshold whose centre lies inside the box (by more than 0.01 pixel) is a positive of that box. An
anchor that is a positive of several boxes goes to the one it overlaps most (ties: the first box);
every other anchor is background (ATSS ignores none). On ties in distance the lower anchor index
(location) is a candidate first.

`atss_match(anchors, level_counts, per_location, boxes, valid, top_k=, chunk=)`: `anchors` float32 `[A, 4]` yxyx
pixels in anchor order, `level_counts` the anchors of each level in that order, `per_location` the
anchors of one location (A of `modeling.anchors`), `boxes` float32 `[B, N, 4]`,
`valid` bool `[B, N]`. Returns (the IoU with the box an anchor is a positive of, -1 when none
`[B, A]`; that box's index `[B, A]` int32). Boxes are taken `chunk` at a time: memory
O(B * A * chunk), as the max-IoU rule's.
"""

import tensorflow as tf

from keras_retina.ops import boxes as box_lib

TOP_K = 9  # candidate locations per level (the ATSS paper's default; its results hold for 7-11)
INSIDE_MARGIN = 0.01  # pixels an anchor's centre must lie inside the box (mmdetection's ATSSAssigner)


def _centers(yxyx):
    return tf.stack([(yxyx[..., 0] + yxyx[..., 2]) / 2, (yxyx[..., 1] + yxyx[..., 3]) / 2], axis=-1)


def _anchor_centers(anchors):
    """The anchors' centres on a 1/1024-pixel grid: the anchors of one location (float32 corners of
    different sizes) then share one centre exactly, so ties in distance go by anchor index."""
    return tf.round(_centers(anchors) * 1024.0) / 1024.0


def _candidates(distance, level_counts, top_k):
    """bool `[B, A, c]`: per box (last axis), the `top_k` anchors of each level nearest its centre
    (ties: the lower anchor index first)."""
    batch, count = tf.shape(distance)[0], tf.shape(distance)[2]
    by_box = tf.transpose(distance, [0, 2, 1])  # [B, c, A]
    chosen, start = [], 0
    for size in level_counts:
        k = tf.minimum(top_k, size)
        _, index = tf.math.top_k(-by_box[:, :, start:start + size], k=k)  # [B, c, k]: nearest first
        chosen.append(index + start)
        start += size
    index = tf.concat(chosen, axis=2)  # [B, c, K]
    width = tf.shape(index)[2]
    b = tf.broadcast_to(tf.range(batch)[:, None, None], tf.shape(index))
    g = tf.broadcast_to(tf.range(count)[None, :, None], tf.shape(index))
    where = tf.reshape(tf.stack([b, index, g], axis=-1), [batch * count * width, 3])
    return tf.scatter_nd(where, tf.ones([batch * count * width], tf.bool), tf.shape(distance))


def atss_match(anchors, level_counts, per_location, boxes, valid, *, top_k=TOP_K, chunk=128):
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    anchor_centers = _anchor_centers(anchors)  # [A, 2]
    batch, count = tf.shape(boxes)[0], tf.shape(boxes)[1]
    shape = tf.stack([batch, tf.shape(anchors)[0]])

    def step(start, best_iou, matched):
        part = boxes[:, start:start + chunk]  # [B, c, 4]
        iou = box_lib.pairwise_iou(anchors[None], part)  # [B, A, c]
        offset = anchor_centers[None, :, None, :] - _centers(part)[:, None, :, :]  # [B, A, c, 2]
        candidate = _candidates(tf.norm(offset, axis=-1), level_counts, top_k * per_location)
        n = tf.reduce_sum(tf.cast(candidate, tf.float32), axis=1, keepdims=True)  # [B, 1, c]
        mean = tf.reduce_sum(tf.where(candidate, iou, 0.0), axis=1, keepdims=True) / n
        spread = tf.reduce_sum(tf.where(candidate, tf.square(iou - mean), 0.0), axis=1, keepdims=True)
        std = tf.sqrt(spread / tf.maximum(n - 1.0, 1.0))
        y, x = anchor_centers[None, :, None, 0], anchor_centers[None, :, None, 1]
        inside = tf.reduce_min(tf.stack([y - part[:, None, :, 0], x - part[:, None, :, 1],
                                         part[:, None, :, 2] - y, part[:, None, :, 3] - x], axis=-1),
                               axis=-1) > INSIDE_MARGIN
        positive = candidate & (iou >= mean + std) & inside & valid[:, None, start:start + chunk]
        iou = tf.where(positive, iou, -1.0)
        chunk_best = tf.reduce_max(iou, axis=2)
        better = chunk_best > best_iou  # strictly: on a tie the lower-indexed box keeps the anchor
        best_iou = tf.where(better, chunk_best, best_iou)
        matched = tf.where(better, tf.argmax(iou, axis=2, output_type=tf.int32) + start, matched)
        return start + chunk, best_iou, matched

    state = (tf.constant(0), tf.fill(shape, -1.0), tf.zeros(shape, tf.int32))
    _, best_iou, matched = tf.while_loop(lambda start, *_: start < count, step, state, parallel_iterations=1)
    return best_iou, matched
