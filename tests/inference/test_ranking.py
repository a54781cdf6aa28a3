"""What to label next (`keras_retina rank`): the scores by hand, the mirror's boxes mapped back, rare
classes weighted, and the command on a model_dir with a picture that does not decode."""

import csv
import os

import numpy as np
import pytest
from PIL import Image

from keras_retina.inference import ranking

from command_line import keras_retina
from conftest import make_tiny_model_dir


def _detections(boxes, scores, classes):
    return np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32), np.array(classes, np.int64), []


def test_scores_by_hand():
    half = [0.0, 0.0, 1.0, 0.5]
    shifted = [0.0, 0.1, 1.0, 0.6]  # IoU with half: 0.4 / 0.6
    # One object seen the same way both times at 0.5: entropy 1 bit, no disagreement.
    assert ranking.picture_score(_detections([half], [0.5], [1]), _detections([half], [0.5], [1]))[:2] == (
        pytest.approx(1.0), pytest.approx(0.0))
    # A confident object that moves and loses confidence in the mirror, one the mirror alone sees (class 2,
    # weighted 2), one below MIN_SCORE (left out of both measures).
    plain = _detections([half, [0.5, 0.5, 0.9, 0.9]], [0.9, 0.05], [1, 1])
    mirror = _detections([shifted, [0.2, 0.2, 0.4, 0.4]], [0.7, 0.3], [1, 2])
    uncertainty, disagreement, kept = ranking.picture_score(plain, mirror, {2: 2.0})
    h = -(0.9 * np.log2(0.9) + 0.1 * np.log2(0.1))
    assert uncertainty == pytest.approx(h, rel=1e-6)
    assert disagreement == pytest.approx(0.9 * (1 - 0.4 / 0.6) + 0.2 + 2.0 * 0.3, rel=1e-5)
    assert kept.tolist() == [1]
    # Another class at the same place is not the same object: both count as unmatched.
    _, apart, _ = ranking.picture_score(_detections([half], [0.8], [1]), _detections([half], [0.8], [2]))
    assert apart == pytest.approx(1.6, rel=1e-6)
    # Without the mirror only the uncertainty counts.
    assert ranking.picture_score(plain, None)[1] == 0.0


def test_rare_classes_weigh_more():
    weights = ranking.class_weights([{"id": 1, "num_gt": 100}, {"id": 2, "num_gt": 25}, {"id": 3, "num_gt": 0},
                                     {"id": 4, "num_gt": 1}])
    assert weights == {1: 1.0, 2: 2.0, 4: ranking.MAX_WEIGHT}
    assert ranking.class_weights([]) == {}


def _square_detector(score_of):
    """A fake batch detector: the box around a picture's bright pixels (yxyx normalised), scored
    `score_of(picture mean)`, so a picture and its mirror give one box in their own frames."""

    def detect(batch):
        found = []
        for pixels in batch:
            ys, xs = np.nonzero(pixels[..., 0] > 200)
            h, w = pixels.shape[:2]
            box = [ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w]
            found.append(_detections([box], [score_of(pixels)], [1]))
        return found

    return detect


def _picture(path, box, value=40):
    pixels = np.full((40, 60, 3), value, np.uint8)
    y0, x0, y1, x1 = box
    pixels[y0:y1, x0:x1] = 255
    Image.fromarray(pixels).save(path)


def test_mirrored_boxes_come_back_to_the_picture_and_order(tmp_path):
    assert ranking.mirrored([[0.1, 0.2, 0.5, 0.4]])[0].tolist() == pytest.approx([0.1, 0.6, 0.5, 0.8])
    _picture(tmp_path / "sure.png", (5, 3, 20, 17), value=10)
    _picture(tmp_path / "unsure.png", (10, 30, 30, 55), value=40)
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    scores = {10: 0.95, 40: 0.5}
    detect = _square_detector(lambda pixels: scores[int(pixels[0, 0, 0])])
    rows, failed = ranking.rank_pictures(detect, [str(tmp_path / n) for n in ("sure.png", "broken.jpg",
                                                                              "unsure.png")], names={1: "a"})
    assert [os.path.basename(r.path) for r in rows] == ["unsure.png", "sure.png"]
    # An off-centre square comes back from the mirror onto itself: no disagreement.
    assert [r.disagreement for r in rows] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert rows[0].uncertainty == pytest.approx(1.0) and rows[0].classes == {"a": 1}
    assert [os.path.basename(p) for p, _ in failed] == ["broken.jpg"]
    # A detector whose box does not follow the mirror disagrees with itself.
    stuck = _square_detector(lambda pixels: 0.95)
    fixed = lambda batch: [stuck(batch[:1])[0]] * len(batch)  # noqa: E731 - the plain picture's box each time
    (row,), _ = ranking.rank_pictures(fixed, [str(tmp_path / "sure.png")])
    assert row.disagreement > 0.9


def test_rank_command_writes_the_ranking_and_never_overwrites(tmp_path):
    run = make_tiny_model_dir(tmp_path / "run")
    pictures = tmp_path / "unlabelled"
    pictures.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (64, 80, 3), np.uint8)).save(pictures / f"p{i}.jpg")
    (pictures / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    result = keras_retina("rank", f"--model_dir={run}", pictures, "--output=out/ranking.csv", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # one picture could not be read
    assert "broken.jpg" in result.stderr and "not ranked" in result.stderr
    assert "Ranked 3 picture(s)" in result.stdout and "weighted equally" in result.stdout
    with open(tmp_path / "out" / "ranking.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0  # the untrained model is unsure
    for r in rows:
        assert float(r["score"]) == pytest.approx(float(r["uncertainty"]) + float(r["disagreement"]), abs=2e-4)
    again = keras_retina("rank", f"--model_dir={run}", pictures / "p0.jpg", "--output=out/ranking.csv",
                         "--norank_mirror", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    with open(tmp_path / "out" / "ranking-2.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["disagreement"]) == 0.0
    assert ranking.read_ranking(str(tmp_path / "out" / "ranking.csv"))[0] == rows[0]["picture"]
    typo = keras_retina("rank", f"--model_dir={tmp_path / 'rnu'}", pictures, cwd=tmp_path)
    assert typo.returncode == 2 and f"--model_dir={tmp_path / 'rnu'}" in typo.stderr, typo.stderr[-2000:]
    assert "Traceback" not in typo.stderr
    refused = keras_retina("rank", f"--model_dir={run}", cwd=tmp_path)
    assert refused.returncode == 2 and "rank and detect-batch also take IMAGE" in refused.stderr
