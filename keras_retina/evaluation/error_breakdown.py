"""A detector's errors in TIDE's terms, and the AP each kind would add if it were fixed.

TIDE: Bolya, Foley, Hays, Hoffman, "TIDE: A General Toolbox for Identifying Object Detection
Errors", ECCV 2020 (the reference code is github.com/dbolya/tide, `tidecv/quantify.py`). At the
foreground IoU 0.5 and background IoU 0.1, every false positive gets one type, tested in TIDE's
order, with IoU against the non-crowd ground truth of its picture:

- localisation ("Loc"): its best IoU with a box of its own class is in [0.1, 0.5);
- classification ("Cls"): IoU >= 0.5 with a box of another class;
- duplicate ("Dupe"): IoU >= 0.5 with a box of its class that a better detection already took;
- background ("Bkg"): IoU <= 0.1 with every box;
- both ("Both"): anything else (overlaps a box of another class, but not enough);

and every ground-truth box no detection found, and that no classification or localisation error
points at, is missed ("Miss"). True positives, crowd regions and the 100-per-class limit are
COCO's own (`matches.Matches`), so the starting AP is exactly pycocotools' AP50.

The AP a kind would add is TIDE's oracle: fix only the errors of that kind and recompute AP50
(`precision_recall.average_precision`, COCO's formula). Cls and Loc errors become true positives
of the box they point at (the best-scoring error per box; others, and those pointing at a box
already found, are removed), Dupe, Bkg and Both are removed, missed boxes are taken out of the
ground-truth count. Two more oracles bound what is left: all false positives removed (perfect
precision) and all missed boxes removed (perfect recall). Each "delta_ap" is in AP units (0..1),
never negative, as in TIDE.

Differences from tidecv, on purpose: matching is COCO's (tidecv matches in its own pass), a
detection COCO ignores is not an error, a same-class IoU of exactly 0.5 with an already-matched
box is a duplicate (COCO's match rule is IoU >= 0.5), and the mean is over classes with ground
truth (COCO's AP; tidecv also averages classes that only have detections).
"""

import numpy as np

from keras_retina.evaluation.precision_recall import average_precision

BACKGROUND_IOU = 0.1
FOREGROUND_IOU = 0.5
TYPES = ("classification", "localisation", "both", "duplicate", "background", "missed")
SHORT = {"classification": "Cls", "localisation": "Loc", "both": "Both", "duplicate": "Dupe",
         "background": "Bkg", "missed": "Miss"}
CORRECT, NOT_COUNTED = "correct", "not counted"  # det_type of true positives; of ignored / beyond 100


class ErrorBreakdown:
    """`det_type` [D] (a TYPES name, CORRECT or NOT_COUNTED), `det_target` [D] (the ground-truth
    row a Cls / Loc error points at, -1), `gt_missed` [G] bool, and `summary()`."""

    def __init__(self, matches):
        self.matches = m = matches
        self.det_type = np.full(len(m.det_id), NOT_COUNTED, dtype=object)
        self.det_type[m.det_tp] = CORRECT
        self.det_target = np.full(len(m.det_id), -1, np.int64)
        for dets, gts, iou in m.overlaps:
            self._classify_picture(dets, gts, iou)
        self.best_fix = self._best_fixes()
        usable = np.zeros(len(m.gt_id), bool)
        usable[list(self.best_fix)] = True
        self.gt_missed = (m.gt_det < 0) & ~m.gt_crowd & ~usable

    def _classify_picture(self, dets, gts, iou):
        m = self.matches
        wrong = m.det_counted[dets] & ~m.det_tp[dets] & ~m.det_ignored[dets]
        if not wrong.any():
            return
        if not gts.size:
            self.det_type[dets[wrong]] = "background"
            return
        same = m.det_class[dets][:, None] == m.gt_class[gts][None, :]
        used = (m.gt_det[gts] >= 0)[None, :]
        same_iou, other_iou = np.where(same, iou, 0.0), np.where(same, 0.0, iou)
        for n in np.flatnonzero(wrong):
            row = dets[n]
            best_same = int(np.argmax(same_iou[n]))
            if BACKGROUND_IOU <= same_iou[n, best_same] < FOREGROUND_IOU:
                self.det_type[row], self.det_target[row] = "localisation", gts[best_same]
            elif other_iou[n].max() >= FOREGROUND_IOU:
                self.det_type[row], self.det_target[row] = "classification", gts[int(np.argmax(other_iou[n]))]
            elif (same_iou[n] * used[0]).max() >= FOREGROUND_IOU:
                self.det_type[row] = "duplicate"
            elif iou[n].max() <= BACKGROUND_IOU:
                self.det_type[row] = "background"
            else:
                self.det_type[row] = "both"

    def _best_fixes(self):
        """{ground-truth row: the detection row a fix turns into its true positive}: per box not
        found, the best-scoring Cls or Loc error pointing at it (TIDE's BestGTMatch)."""
        m = self.matches
        best = {}
        rows = np.flatnonzero(self.det_target >= 0)
        for row in rows[np.argsort(-m.det_score[rows], kind="mergesort")]:
            target = int(self.det_target[row])
            if m.gt_det[target] < 0 and target not in best:
                best[target] = int(row)
        return best

    def _ap(self, det_class, det_tp, keep, num_gt, had_gt):
        """AP50 over the classes with ground truth in the evaluation (`had_gt`)."""
        values = []
        for k in np.flatnonzero(had_gt):
            rows = np.flatnonzero(keep & (det_class == k))
            if num_gt[k] <= 0:
                if rows.size:
                    values.append(0.0)
                continue
            values.append(average_precision(self.matches.det_score[rows], det_tp[rows], num_gt[k]))
        return float(np.mean(values)) if values else 0.0

    def summary(self):
        """{"iou", "background_iou", "ap50", "types": {type: {"count", "delta_ap"}},
        "perfect_precision" / "perfect_recall": {"delta_ap"}}."""
        m = self.matches
        k = m.num_classes
        real = ~m.gt_crowd
        num_gt = np.bincount(m.gt_class[real], minlength=k).astype(np.int64)
        had_gt = num_gt > 0
        keep = m.det_counted & ~m.det_ignored
        base = self._ap(m.det_class, m.det_tp, keep, num_gt, had_gt)
        out = {"iou": FOREGROUND_IOU, "background_iou": BACKGROUND_IOU, "ap50": base, "types": {}}
        for kind in TYPES:
            count = int(np.count_nonzero(self.gt_missed if kind == "missed" else self.det_type == kind))
            fixed = self._fixed_ap(kind, keep, num_gt, had_gt)
            out["types"][kind] = {"count": count, "delta_ap": max(fixed - base, 0.0)}
        wrong = keep & ~m.det_tp
        out["perfect_precision"] = {"delta_ap": max(self._ap(m.det_class, m.det_tp, keep & ~wrong, num_gt, had_gt)
                                                    - base, 0.0)}
        unfound = np.bincount(m.gt_class[real & (m.gt_det < 0)], minlength=k)
        out["perfect_recall"] = {"delta_ap": max(self._ap(m.det_class, m.det_tp, keep, num_gt - unfound, had_gt)
                                                 - base, 0.0)}
        return out

    def _fixed_ap(self, kind, keep, num_gt, had_gt):
        m = self.matches
        det_class, det_tp, keep = m.det_class.copy(), m.det_tp.copy(), keep.copy()
        if kind == "missed":
            missed = np.bincount(m.gt_class[self.gt_missed], minlength=m.num_classes)
            return self._ap(det_class, det_tp, keep, num_gt - missed, had_gt)
        rows = np.flatnonzero(self.det_type == kind)
        keep[rows] = False
        if kind in ("classification", "localisation"):
            for target, row in self.best_fix.items():
                if self.det_type[row] == kind:
                    keep[row], det_tp[row], det_class[row] = True, True, m.gt_class[target]
        return self._ap(det_class, det_tp, keep, num_gt, had_gt)

    def per_class(self, names, min_score=0.0):
        """{class name: {type: count}}: false positives scoring at least `min_score` by the
        detection's class, missed boxes by the ground truth's."""
        m = self.matches
        table = {name: dict.fromkeys(TYPES, 0) for name in names}
        for kind in TYPES[:-1]:
            rows = (self.det_type == kind) & (m.det_score >= min_score)
            for k, count in enumerate(np.bincount(m.det_class[rows], minlength=len(names))):
                table[names[k]][kind] = int(count)
        for k, count in enumerate(np.bincount(m.gt_class[self.gt_missed], minlength=len(names))):
            table[names[k]]["missed"] = int(count)
        return table
