"""Every detection and ground-truth box of one COCO evaluation, matched at IoU 0.5, as flat arrays.

The report's analyses (error breakdown, confusion matrix, worst pictures) start from the same
matching that gave the AP: pycocotools' `COCOeval.evalImgs` after `evaluate()`, read at IoU 0.5
(`iouThrs[0]`), area "all" and 100 detections per picture and class (COCO's own limit):
a detection is a true positive when COCO matched it to a ground-truth box of its class, ignored
when COCO ignored it (matched to a crowd region), and not counted when it fell beyond the 100.

Boxes are COCO's: [x, y, width, height] in the original picture's pixels. Classes are label-map
indices (0..K-1). IoUs between every detection and every non-crowd ground-truth box of the same
picture, whatever their classes, come from pycocotools' `mask.iou` and are kept per picture:
the error breakdown and the confusion matrix need the overlaps across classes that COCO does not
compute.
"""

import numpy as np
from pycocotools import mask as mask_utils

IOU = 0.5


class Matches:
    """Detections `det_*` and ground truth `gt_*` (numpy arrays), and IoUs per picture.

    det_id, det_image (index into `image_ids`), det_class, det_score, det_box [D, 4] xywh,
    det_counted (within COCO's 100 per picture and class), det_tp (matched at IoU 0.5),
    det_ignored (matched to a crowd region), det_gt (index of the matched ground truth, -1).
    gt_id, gt_image, gt_class, gt_box [G, 4], gt_crowd, gt_det (index of the matching
    detection, -1). `num_classes` K, `image_ids` [I], `image_sizes` {image id: (height, width)}.
    `overlaps[i]` = (detection indices [d], non-crowd ground-truth indices [g], IoU [d, g]) of
    picture i.
    """

    def __init__(self, evaluator, label_map):
        params = evaluator.params
        self.num_classes = len(label_map)
        class_of = {entry["id"]: k for k, entry in enumerate(label_map)}
        self.image_ids = np.asarray(params.imgIds, np.int64)
        image_index = {int(image_id): i for i, image_id in enumerate(self.image_ids)}
        coco_gt, coco_dt = evaluator.cocoGt, evaluator.cocoDt
        self.image_sizes = {image_id: (image["height"], image["width"]) for image_id, image in coco_gt.imgs.items()}

        gts = sorted(coco_gt.anns.values(), key=lambda a: a["id"])
        self.gt_id = np.array([a["id"] for a in gts], np.int64)
        self.gt_image = np.array([image_index.get(a["image_id"], -1) for a in gts], np.int64)
        self.gt_class = np.array([class_of[a["category_id"]] for a in gts], np.int64)
        self.gt_box = np.array([a["bbox"] for a in gts], np.float64).reshape(-1, 4)
        self.gt_crowd = np.array([bool(a.get("iscrowd", 0)) for a in gts], bool)
        dts = sorted(coco_dt.anns.values(), key=lambda a: a["id"]) if coco_dt is not None else []
        self.det_id = np.array([a["id"] for a in dts], np.int64)
        self.det_image = np.array([image_index.get(a["image_id"], -1) for a in dts], np.int64)
        self.det_class = np.array([class_of[a["category_id"]] for a in dts], np.int64)
        self.det_score = np.array([a["score"] for a in dts], np.float64)
        self.det_box = np.array([a["bbox"] for a in dts], np.float64).reshape(-1, 4)

        gt_row = {int(i): n for n, i in enumerate(self.gt_id)}
        det_row = {int(i): n for n, i in enumerate(self.det_id)}
        self.det_counted = np.zeros(len(dts), bool)
        self.det_tp = np.zeros(len(dts), bool)
        self.det_ignored = np.zeros(len(dts), bool)
        self.det_gt = np.full(len(dts), -1, np.int64)
        self.gt_det = np.full(len(gts), -1, np.int64)
        if evaluator.evalImgs:
            self._read_coco_matches(evaluator, gt_row, det_row)
        self.overlaps = self._overlaps()

    def _read_coco_matches(self, evaluator, gt_row, det_row):
        params = evaluator.params
        num_images, num_areas = len(params.imgIds), len(params.areaRng)
        iou_index = int(np.argmin(np.abs(np.asarray(params.iouThrs) - IOU)))
        for k in range(len(params.catIds)):
            start = k * num_areas * num_images  # area "all" is the first range
            for record in evaluator.evalImgs[start:start + num_images]:
                if record is None:
                    continue
                rows = np.array([det_row[d] for d in record["dtIds"]], np.int64)
                if not rows.size:
                    continue
                matched = np.asarray(record["dtMatches"][iou_index])
                self.det_counted[rows] = True
                self.det_ignored[rows] = np.asarray(record["dtIgnore"][iou_index], bool)
                for row, gt_id, ignored in zip(rows, matched, self.det_ignored[rows]):
                    if gt_id > 0 and not ignored:
                        self.det_tp[row] = True
                        self.det_gt[row] = gt_row[int(gt_id)]
                        self.gt_det[gt_row[int(gt_id)]] = row

    def _overlaps(self):
        """Per picture: (detection rows, non-crowd ground-truth rows, IoU [d, g])."""
        det_order = np.argsort(self.det_image, kind="stable")
        det_bounds = np.searchsorted(self.det_image[det_order], np.arange(len(self.image_ids) + 1))
        real = np.flatnonzero(~self.gt_crowd)
        gt_order = real[np.argsort(self.gt_image[real], kind="stable")]
        gt_bounds = np.searchsorted(self.gt_image[gt_order], np.arange(len(self.image_ids) + 1))
        overlaps = []
        for i in range(len(self.image_ids)):
            dets = det_order[det_bounds[i]:det_bounds[i + 1]]
            gts = gt_order[gt_bounds[i]:gt_bounds[i + 1]]
            if dets.size and gts.size:
                iou = np.asarray(mask_utils.iou(self.det_box[dets], self.gt_box[gts], np.zeros(gts.size, np.uint8)))
            else:
                iou = np.zeros((dets.size, gts.size))
            overlaps.append((dets, gts, iou.reshape(dets.size, gts.size)))
        return overlaps

