"""The confusion matrix at IoU 0.5 and one score threshold, and each picture's mistakes there.

Detections scoring at least the threshold are matched to the picture's non-crowd ground truth
in two rounds:

1. COCO's own matches (`matches.Matches`: the same class, IoU >= 0.5, best-scoring detection
   first). COCO matches in score order, so the matches above a threshold are COCO's matches of
   the detections above it; a detection COCO ignored (a crowd region) is left out.
2. The detections left and the boxes left, across classes: pairs taken in decreasing IoU, each
   detection and box once, while the IoU is >= 0.5. Such a pair is a confusion: the box's class
   mistaken for the detection's.

Matrix rows are the true class, columns the detected class, both K classes then "background":
[k, j] boxes of class k detected as j (k == j: found), [k, K] boxes of k no detection found
(missed), [K, j] detections of j on no box left (background, a duplicate or a badly placed box).

`picture_mistakes` gives per picture the detections that are wrong and the boxes missed at
that threshold, which the report ranks and draws.
"""

import numpy as np


def confusion_matrix(matches, report_threshold, iou=0.5):
    """([K + 1, K + 1] int64 matrix, {"det_partner": [D] ground-truth row a detection was
    paired with (-1), "gt_partner": [G] detection row (-1), "kept": [D] bool})."""
    m = matches
    k = m.num_classes
    kept = m.det_counted & ~m.det_ignored & (m.det_score >= report_threshold)
    det_partner = np.where(kept & m.det_tp, m.det_gt, -1)
    gt_partner = np.full(len(m.gt_id), -1, np.int64)
    gt_partner[det_partner[det_partner >= 0]] = np.flatnonzero(det_partner >= 0)
    for dets, gts, overlap in m.overlaps:
        free_dets = kept[dets] & (det_partner[dets] < 0)
        free_gts = gt_partner[gts] < 0
        if not free_dets.any() or not free_gts.any():
            continue
        candidate = np.where(free_dets[:, None] & free_gts[None, :], overlap, -1.0)
        order = np.argsort(-candidate, axis=None, kind="stable")
        for flat in order:
            d, g = divmod(int(flat), candidate.shape[1])
            if candidate[d, g] < iou:
                break
            if det_partner[dets[d]] >= 0 or gt_partner[gts[g]] >= 0:
                continue
            det_partner[dets[d]], gt_partner[gts[g]] = gts[g], dets[d]
    matrix = np.zeros((k + 1, k + 1), np.int64)
    paired = np.flatnonzero(det_partner >= 0)
    np.add.at(matrix, (m.gt_class[det_partner[paired]], m.det_class[paired]), 1)
    unpaired = np.flatnonzero(kept & (det_partner < 0))
    np.add.at(matrix, (np.full(unpaired.size, k), m.det_class[unpaired]), 1)
    missed = np.flatnonzero(~m.gt_crowd & (gt_partner < 0))
    np.add.at(matrix, (m.gt_class[missed], np.full(missed.size, k)), 1)
    return matrix, {"det_partner": det_partner, "gt_partner": gt_partner, "kept": kept}


def picture_mistakes(matches, pairing):
    """[I] dicts per picture: "wrong" (detection rows kept but not a correct match), "missed"
    (ground-truth rows no kept detection found), "correct" (detection rows), "mistakes" (count)."""
    m = matches
    correct = pairing["kept"] & (pairing["det_partner"] >= 0)
    correct[correct] = m.gt_class[pairing["det_partner"][correct]] == m.det_class[correct]
    wrong = pairing["kept"] & ~correct
    missed = ~m.gt_crowd & (pairing["gt_partner"] < 0)
    out = []
    for dets, _, _ in m.overlaps:
        out.append({"correct": dets[correct[dets]], "wrong": dets[wrong[dets]], "missed": np.empty(0, np.int64)})
    for row in np.flatnonzero(missed):
        if m.gt_image[row] >= 0:
            picture = out[m.gt_image[row]]
            picture["missed"] = np.append(picture["missed"], row)
    for picture in out:
        picture["mistakes"] = int(picture["wrong"].size + picture["missed"].size)
    return out
