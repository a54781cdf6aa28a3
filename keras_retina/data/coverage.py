"""Anchor coverage: how many ground-truth boxes the anchors can actually match.

A box is "covered" when some anchor overlaps it with IoU >= the foreground
threshold (0.5) at the training resolution. An uncovered box is still trained,
through its best anchor only (the RPN rule in `label_encoder`), but weakly: it
is the most common reason for low AP on a user's own data, typically for small
objects after the image is shrunk by the model's resize policy. The report groups boxes by
COCO's size buckets measured in model-input pixels (small < 32^2 <= medium <
96^2 <= large) and suggests a fix when a bucket is poorly covered.

A box's best IoU is found among the anchors of the 3 x 3 grid cells around its centre on each
level (`best_ious`), not against all of them: anchors of one shape lie on a regular grid, and two
boxes of fixed sizes overlap the more the closer their centres are on each axis, so the nearest
centre (within one cell of the box's, whatever the geometry's rounding) holds the best anchor of
each shape. That is exact, and costs about 400 IoUs a box instead of one per anchor (76,725 at
640 x 640): a picture of 100,000 trees takes seconds, not minutes.

When fewer than 90% of all boxes are covered, the report's "suggestion" names the setting that
covers the most: the same pictures matched again (no decoding) at image sizes of 1, 1.25, 1.5 and
2 times the model's (multiples of 32) with anchor sizes of 4, 3 and 2 strides (never larger than
the model's); the first, in that order, to cover 90% of the boxes, else the one covering most.
On more than SUGGEST_BOXES boxes it tries them on that many drawn at random (seeded): the share is
then known to about a percent, and a picture of 100,000 boxes costs seconds per setting tried.
"""


import numpy as np

from keras_retina.data.source import as_source
from keras_retina.modeling import anchors as anchor_lib
from keras_retina.modeling.label_encoder import FOREGROUND_IOU
from keras_retina.modeling.transform import ResizePolicy, default_max_size, resized_size, round_up
from keras_retina.ops import boxes as box_lib

BUCKETS = (("small", 0, 32**2), ("medium", 32**2, 96**2), ("large", 96**2, float("inf")))
WARN_BELOW = 0.9
SIZE_FACTORS = (1.0, 1.25, 1.5, 2.0)  # image sizes the suggestion tries, times the model's
ANCHOR_SIZES = (4.0, 3.0, 2.0)  # anchor sizes it tries (in strides), up to the model's own
SUGGEST_BOXES = 5000  # boxes the settings are tried on at most


def anchor_coverage(source, policy, anchor_generator=None, foreground_iou=FOREGROUND_IOU, max_images=1000):
    """Scans up to `max_images` examples of a source (`data.source`) against the anchors of
    `anchor_generator` (default: the paper's), each image scaled by the resize policy
    (`transform.ResizePolicy`) and matched with the anchors of its canvas, as in training;
    returns {bucket: {"boxes", "covered", "mean_best_iou"}}."""
    generator = anchor_lib.deserialize_generator(anchor_generator)
    pictures = []  # (height, width, boxes in the picture's pixels)
    for example in as_source(source).examples().take(max_images):
        keep = (example["classes"].numpy() >= 0) & ~example["is_crowd"].numpy()
        pictures.append((*example["image"].shape[:2], example["boxes"].numpy()[keep]))
    images = len(pictures)
    best, areas = _match(pictures, policy, generator)
    report = {"images": images, "foreground_iou": foreground_iou, "image_size": policy.image_size,
              "resize": policy.policy}
    for name, low, high in BUCKETS:
        in_bucket = (areas >= low) & (areas < high)
        report[name] = {"boxes": int(in_bucket.sum()),
                        "covered": int((best[in_bucket] >= foreground_iou).sum()),
                        "mean_best_iou": float(best[in_bucket].mean()) if in_bucket.any() else None}
    share = float((best >= foreground_iou).mean()) if len(best) else 1.0
    if share < WARN_BELOW:
        report["suggestion"] = suggest(pictures, policy, generator, foreground_iou, share)
    return report


def _match(pictures, policy, generator):
    """([N] best IoU, [N] area) of every box at `policy`'s scale against `generator`'s anchors, the
    boxes in the pictures' order. Pictures that share a canvas share its anchors: their boxes are
    matched together, a few array operations per canvas rather than per picture."""
    by_canvas = {}  # canvas -> [boxes at the model's scale], in picture order
    order = []  # (canvas, index in its list) per picture
    for height, width, boxes in pictures:
        scale = float(policy.scale(height, width))
        resized = resized_size(height, width, scale, policy.rounding)
        canvas = tuple(int(s) for s in policy.canvas(resized[0], resized[1]))
        ratios = np.tile(np.asarray(resized, np.float64) / [height, width], 2)  # the resize's own, per axis
        order.append((canvas, len(by_canvas.setdefault(canvas, []))))
        by_canvas[canvas].append((boxes * ratios).astype(np.float32))
    best = {}
    for canvas, parts in by_canvas.items():
        scaled = np.concatenate(parts) if parts else np.zeros((0, 4), np.float32)
        ious = best_ious(scaled, generator.by_level(canvas), generator.anchors_per_location)
        best[canvas] = np.split(ious, np.cumsum([len(part) for part in parts])[:-1])
    scaled = [by_canvas[canvas][i] for canvas, i in order]
    areas = [(boxes[:, 2] - boxes[:, 0]).astype(np.float64) * (boxes[:, 3] - boxes[:, 1]) for boxes in scaled]
    return (np.concatenate([np.zeros(0)] + [best[canvas][i] for canvas, i in order]),
            np.concatenate([np.zeros(0)] + areas))


def suggest(pictures, policy, generator, foreground_iou, share):
    """{"image_size", "anchor_size", ("max_image_size" when not the default's), "covered", "now"}: the
    setting that covers the boxes best
    (module docstring), or None when no other setting covers more than `share` now."""
    total = sum(len(boxes) for _, _, boxes in pictures)
    if total > SUGGEST_BOXES:
        rng = np.random.default_rng(0)
        keep = np.zeros(total, bool)
        keep[rng.choice(total, SUGGEST_BOXES, replace=False)] = True
        starts = np.cumsum([0] + [len(boxes) for _, _, boxes in pictures])
        pictures = [(h, w, boxes[keep[s:s + len(boxes)]]) for (h, w, boxes), s in zip(pictures, starts)]
    tried = []
    for factor in SIZE_FACTORS:
        for anchor_size in ANCHOR_SIZES:
            if anchor_size > generator.anchor_size or (factor, anchor_size) == (1.0, generator.anchor_size):
                continue
            try:
                candidate_policy = _scaled_policy(policy, factor)
                candidate = type(generator).from_config({**generator.get_config(), "anchor_size": anchor_size})
            except (TypeError, ValueError):  # a policy or geometry that does not take the change
                continue
            best, _ = _match(pictures, candidate_policy, candidate)
            covered = float((best >= foreground_iou).mean())
            setting = {"image_size": candidate_policy.image_size, "anchor_size": anchor_size}
            if candidate_policy.policy == "shorter_side" and candidate_policy.max_image_size != default_max_size(
                    candidate_policy.image_size):
                setting["max_image_size"] = candidate_policy.max_image_size
            tried.append({**setting, "covered": covered, "now": share})
            if covered >= WARN_BELOW:
                return tried[-1]
    best = max(tried, default=None, key=lambda t: t["covered"])
    return best if best is not None and best["covered"] > share else None


def _scaled_policy(policy, factor):
    """`policy` at `factor` times its image size (sides rounded up to multiples of 32)."""
    if factor == 1.0:
        return policy
    grow = lambda side: int(round_up(int(np.ceil(side * factor))))  # noqa: E731
    if policy.policy == "square":
        size = tuple(grow(side) for side in policy.size)
        return ResizePolicy(size[0] if size[0] == size[1] else size, None, "square", policy.pad_color,
                            policy.rounding, method=policy.method)
    own_max = policy.max_image_size != default_max_size(policy.image_size)  # given, not the default's
    return ResizePolicy(grow(policy.image_size), grow(policy.max_image_size) if own_max else None, "shorter_side",
                        policy.pad_color, policy.rounding, "tight" if policy.tight else "buckets", method=policy.method)


def best_ious(boxes, anchors_by_level, anchors_per_location, chunk=4096):
    """[N] float64: each yxyx box's highest IoU with any anchor of `anchors_by_level` ({level:
    [rows * cols * A, 4]} in anchor order, location-major), from the 3 x 3 cells around its centre
    on each level (module docstring); `chunk` boxes at a time bound the memory."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    best = np.zeros(len(boxes))
    for anchors in anchors_by_level.values():
        grid = _grid(np.asarray(anchors, np.float64), anchors_per_location)
        for start in range(0, len(boxes), chunk):
            part = boxes[start:start + chunk]
            best[start:start + chunk] = np.maximum(best[start:start + chunk], _best_near(part, grid))
    return best


def _grid(anchors, per_location):
    """Anchors [rows * cols * A, 4] -> [rows, cols, A, 4] (the columns counted on the first row)."""
    by_location = anchors.reshape(-1, per_location, 4)
    centre_y = (by_location[:, 0, 0] + by_location[:, 0, 2]) / 2
    cols = int(np.argmax(centre_y != centre_y[0])) or len(centre_y)
    return by_location.reshape(-1, cols, per_location, 4)


def _best_near(boxes, grid):
    rows, cols = grid.shape[:2]
    centre_y = (grid[:, 0, 0, 0] + grid[:, 0, 0, 2]) / 2
    centre_x = (grid[0, :, 0, 1] + grid[0, :, 0, 3]) / 2
    near = lambda centres, value, size: np.clip(  # noqa: E731 - [N, 3] indices around the nearest
        np.searchsorted(centres, value)[:, None] + np.array([-1, 0, 1]), 0, size - 1)
    ys = near(centre_y, (boxes[:, 0] + boxes[:, 2]) / 2, rows)
    xs = near(centre_x, (boxes[:, 1] + boxes[:, 3]) / 2, cols)
    candidates = grid[ys[:, :, None], xs[:, None, :]].reshape(len(boxes), -1, 4)  # [N, 9 * A, 4]
    ious = box_lib.pairwise_iou(boxes[:, None, :].astype(np.float32), candidates.astype(np.float32))  # [N, 1, 9A]
    return np.asarray(ious)[:, 0].max(axis=1)


def format_coverage(report):
    """Readable table plus warnings with concrete suggestions."""
    lines = [f"Anchor coverage on {report['images']} images at image_size={report['image_size']} "
             f"(resize={report.get('resize', 'square')}) "
             f"(a box is covered when an anchor overlaps it with IoU >= {report['foreground_iou']}):",
             f"  {'size':<8}{'boxes':>8}{'covered':>10}{'share':>8}{'mean best IoU':>16}"]
    warnings = []
    for name, _, _ in BUCKETS:
        row = report[name]
        if not row["boxes"]:
            lines.append(f"  {name:<8}{0:>8}{'-':>10}{'-':>8}{'-':>16}")
            continue
        share = row["covered"] / row["boxes"]
        lines.append(f"  {name:<8}{row['boxes']:>8}{row['covered']:>10}{share:>8.0%}"
                     f"{row['mean_best_iou']:>16.2f}")
        if share < WARN_BELOW:
            warnings.append(
                f"WARNING: only {share:.0%} of {name} boxes are covered; the rest train through a "
                f"single weak anchor and are often missed. " + _suggestion(name, report))
    return "\n".join(lines + warnings)


def _suggestion(bucket, report):
    found = report.get("suggestion")
    if found:
        size = found["image_size"]
        size = size if isinstance(size, int) else str(size[0]) if size[0] == size[1] else f"{size[0]},{size[1]}"
        longer = f" --max_image_size={found['max_image_size']}" if "max_image_size" in found else ""
        return (f"Measured on these pictures: --image_size={size}{longer} --anchor_size={found['anchor_size']:g} "
                f"covers {found['covered']:.0%} of all boxes ({found['now']:.0%} now).")
    if bucket == "small":
        return (f"Try a larger --image_size (now {report['image_size']}; objects grow with it) or "
                f"smaller anchors, e.g. --anchor_size=3 (anchor areas 24^2..384^2 instead of 32^2..512^2).")
    return ("Try more anchor shapes, e.g. --aspect_ratios=0.25,0.5,1,2,4 for elongated objects, "
            "or --num_scales=4.")
