"""What to label next: unlabelled pictures ordered by how much a label would teach the model.

Each picture is detected twice, as it is and mirrored left to right (the mirror's boxes flipped
back), and scored from the two sets of detections (`detector.Detections`: boxes yxyx normalised
to the picture, scores, category ids); only detections scoring at least MIN_SCORE count (below it,
the many near-zero background boxes every picture has would decide the order):

  uncertainty   sum over the plain detections of w_c H(s), H the binary entropy of the score in
                bits (1 at s = 0.5, 0 at 0 and at 1): objects the model is unsure of (uncertainty
                sampling, Lewis & Gale 1994, summed per box as detection's active learning does).
  disagreement  the plain and the mirror's detections matched one to one, greedily by score, within
                a class at IoU >= MATCH_IOU: a pair costs w_c (max(s, s') (1 - IoU) + |s - s'|), a
                detection without a partner its w_c s. A model that sees the same picture two ways
                and answers differently has not learnt it (consistency-based active learning, e.g.
                CALD, Yu et al. 2022); it also catches boxes that move (localisation), which entropy
                of a score cannot.
  score         uncertainty + disagreement; pictures in descending order.

Rare classes count more: `class_weights` gives w_c = sqrt(n_max / n_c) over the validation objects
of each class in the training's evaluation report (capped at MAX_WEIGHT), 1 for a class it did not
count and for every class of a model without a report (a file, a registry model). Scores are sums
over a picture's boxes: a picture with more uncertain objects is worth more labels (and costs more
to label: the ranking lists its detections).

`rank_pictures(detect_batch, paths, weights)` -> (rows best first, paths that could not be read);
`write_ranking(rows, path)` writes them as CSV (rank, picture, score, uncertainty, disagreement,
detections, classes).
"""

import csv
import dataclasses
import sys

import numpy as np

from keras_retina.files import replace_atomically
from keras_retina.ops import boxes as box_lib
from keras_retina.ops import images as image_lib

MIN_SCORE = 0.1  # detections below this score are left out of both measures
MATCH_IOU = 0.3  # a plain and a mirrored detection of one class this close are one object seen twice
MAX_WEIGHT = 10.0  # a rare class's weight at most
COLUMNS = ("rank", "picture", "score", "uncertainty", "disagreement", "detections", "classes")


@dataclasses.dataclass
class Ranked:
    """One picture's place in the ranking (module docstring)."""

    path: str
    score: float
    uncertainty: float
    disagreement: float
    detections: int  # plain detections scoring at least MIN_SCORE
    classes: dict  # class name -> how many of those detections


def class_weights(report_classes):
    """{category id: w_c} from the evaluation report's classes (their "num_gt"), module docstring."""
    counts = {c["id"]: c.get("num_gt", 0) for c in report_classes or [] if c.get("num_gt", 0) > 0}
    if not counts:
        return {}
    most = max(counts.values())
    return {cid: float(min(np.sqrt(most / n), MAX_WEIGHT)) for cid, n in counts.items()}


def binary_entropy(scores):
    """H(s) in bits, 0 at s = 0 and s = 1."""
    s = np.clip(np.asarray(scores, np.float64), 1e-12, 1 - 1e-12)
    return -(s * np.log2(s) + (1 - s) * np.log2(1 - s))


def mirrored(boxes):
    """yxyx normalised boxes of a picture mirrored left to right, in the picture's own frame."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([boxes[:, 0], 1.0 - boxes[:, 3], boxes[:, 2], 1.0 - boxes[:, 1]], axis=1)


def picture_score(plain, mirror, weights=None):
    """(uncertainty, disagreement, kept plain detections' category ids) of one picture from its plain
    and mirrored detections (each `(boxes, scores, classes, ...)`, the mirror's boxes already in the
    plain picture's frame); `weights` {category id: w_c}, 1 for a class not in it."""
    weights = weights or {}
    boxes, scores, classes = _kept(plain)
    w = np.array([weights.get(int(c), 1.0) for c in classes])
    uncertainty = float(np.sum(w * binary_entropy(scores)))
    if mirror is None:
        return uncertainty, 0.0, classes
    other_boxes, other_scores, other_classes = _kept(mirror)
    iou = np.asarray(box_lib.pairwise_iou(boxes, other_boxes), np.float64) if len(boxes) and len(other_boxes) \
        else np.zeros((len(boxes), len(other_boxes)))
    iou = np.where(classes[:, None] == other_classes[None, :], iou, 0.0)
    disagreement, taken = 0.0, np.zeros(len(other_boxes), bool)
    for i in np.argsort(-scores, kind="stable"):
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates)) if len(candidates) else -1
        if j < 0 or candidates[j] < MATCH_IOU:
            disagreement += w[i] * scores[i]
            continue
        taken[j] = True
        disagreement += w[i] * (max(scores[i], other_scores[j]) * (1.0 - iou[i, j]) + abs(scores[i] - other_scores[j]))
    alone = ~taken
    w_alone = np.array([weights.get(int(c), 1.0) for c in other_classes[alone]])
    disagreement += float(np.sum(w_alone * other_scores[alone]))
    return uncertainty, float(disagreement), classes


def _kept(detections):
    boxes, scores, classes = (np.asarray(v) for v in detections[:3])
    keep = scores >= MIN_SCORE
    return (boxes.astype(np.float64).reshape(-1, 4)[keep], scores.astype(np.float64)[keep],
            classes.astype(np.int64)[keep])


def rank_pictures(detect_batch, paths, weights=None, *, mirror=True, names=None, progress=None):
    """Every readable picture of `paths` scored and sorted best first (module docstring).

    detect_batch: uint8 `[B, H, W, 3]` -> B detections (`detector.batch_detector`).
    mirror: also detect the mirrored picture (disagreement; twice the detection time).
    names: {category id: class name} for the rows' class counts (else the names the detector gives).
    progress: called with the number of pictures done (e.g. a Keras Progbar's update).
    Returns (rows, [(path, reason) of pictures that could not be read]).
    """
    rows, failed = [], []
    for done, path in enumerate(paths, 1):
        try:
            pixels = image_lib.read_picture(path).numpy()
        except image_lib.READ_ERRORS as error:
            reason = image_lib.unreadable_reason(error)
            print(f"{path}: cannot read this image ({reason}); left out of the ranking.", file=sys.stderr)
            failed.append((path, reason))
            if progress:
                progress(done)
            continue
        if mirror:
            plain, flipped = detect_batch(np.stack([pixels, pixels[:, ::-1]]))
            flipped = (mirrored(flipped[0]), *flipped[1:])
        else:
            plain, flipped = detect_batch(pixels[None])[0], None
        uncertainty, disagreement, classes = picture_score(plain, flipped, weights)
        counted, own = {}, {int(c): name for c, name in zip(plain[2], plain[3])}  # the model's own class names
        for c in classes:
            name = (names or {}).get(int(c)) or own.get(int(c), str(int(c)))
            counted[name] = counted.get(name, 0) + 1
        rows.append(Ranked(path, uncertainty + disagreement, uncertainty, disagreement, len(classes), counted))
        if progress:
            progress(done)
    rows.sort(key=lambda row: (-row.score, row.path))
    return rows, failed


def write_ranking(rows, path):
    """The ranking as CSV (COLUMNS), best first; classes as "name:count;name:count"; written whole
    (under a temporary name renamed into place)."""
    def write(temporary):
        with open(temporary, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for rank, row in enumerate(rows, 1):
                writer.writerow([rank, row.path, f"{row.score:.4f}", f"{row.uncertainty:.4f}",
                                 f"{row.disagreement:.4f}", row.detections,
                                 ";".join(f"{name}:{n}" for name, n in sorted(row.classes.items()))])

    replace_atomically(path, write)


def read_ranking(path):
    """The picture paths of a ranking CSV, best first (for scripts and the labelling simulation)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [row["picture"] for row in csv.DictReader(f)]
