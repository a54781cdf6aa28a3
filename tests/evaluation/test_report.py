"""The evaluation report on hand-built ground truth and detections where every number is known.

Four 100x100 pictures, classes in the label map's order dog (id 2), cat (id 1), bird (id 3)
(pycocotools orders by id: the report must not mix them up):

1. cat A [10,10,20,20], dog B [50,50,30,30]; detections: cat on A 0.9 (right), cat shifted by 1 px
   on A 0.8 (a duplicate), dog on B 0.7 (right);
2. cat C [10,10,40,40], dog D [60,60,30,30]; detections: dog exactly on C 0.85 (classification),
   dog shifted 16 px on D 0.6 (IoU 14/46 = 0.304: localisation);
3. bird E [5,5,20,20]; detection: cat on nothing 0.5 (background); E missed;
4. dog F [0,0,50,50]; detection: cat [0,0,50,15] 0.4 (IoU 0.3 with a dog: both); F missed.

AP50 by hand (COCO: 101 recall points, precision made non-increasing): cat 51/101 (recall stops
at 1/2 with precision 1), dog 34 * 0.5 / 101, bird 0; the oracles below are computed the same way
in the comments.
"""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from keras_retina.data.source import DatasetSource
from keras_retina.evaluation import confusion
from keras_retina.evaluation.coco_metrics import Evaluation, coco_metrics, run_cocoeval
from keras_retina.evaluation.error_breakdown import ErrorBreakdown
from keras_retina.evaluation.matches import Matches
from keras_retina.evaluation.precision_recall import (
    average_precision,
    best_threshold,
    class_precision,
    class_sweeps,
    overall_threshold,
)
from keras_retina.evaluation.report import build_report, write_report

LABEL_MAP = [{"id": 2, "name": "dog"}, {"id": 1, "name": "cat"}, {"id": 3, "name": "bird"}]
DOG, CAT, BIRD = 2, 1, 3
GROUND_TRUTH = [(1, CAT, [10, 10, 20, 20]), (1, DOG, [50, 50, 30, 30]), (2, CAT, [10, 10, 40, 40]),
                (2, DOG, [60, 60, 30, 30]), (3, BIRD, [5, 5, 20, 20]), (4, DOG, [0, 0, 50, 50])]
DETECTIONS = [(1, CAT, [10, 10, 20, 20], 0.9), (1, CAT, [11, 10, 20, 20], 0.8), (1, DOG, [50, 50, 30, 30], 0.7),
              (2, DOG, [10, 10, 40, 40], 0.85), (2, DOG, [76, 60, 30, 30], 0.6), (3, CAT, [70, 70, 20, 20], 0.5),
              (4, CAT, [0, 0, 50, 15], 0.4)]

CAT_AP, DOG_AP = 51 / 101, 34 * 0.5 / 101
BASE = (CAT_AP + DOG_AP + 0.0) / 3


def coco(ground_truth, detections, crowd=()):
    images = sorted({g[0] for g in ground_truth} | {d[0] for d in detections})
    annotations = [{"id": n + 1, "image_id": i, "category_id": c, "bbox": list(map(float, b)),
                    "area": float(b[2] * b[3]), "iscrowd": int(n in crowd)}
                   for n, (i, c, b) in enumerate(ground_truth)]
    truth = {"images": [{"id": i, "height": 100, "width": 100} for i in images], "annotations": annotations,
             "categories": [{"id": e["id"], "name": e["name"]} for e in LABEL_MAP]}
    results = [{"image_id": i, "category_id": c, "bbox": list(map(float, b)), "score": s}
               for i, c, b, s in detections]
    return truth, results


def evaluation(ground_truth=GROUND_TRUTH, detections=DETECTIONS, crowd=()):
    truth, results = coco(ground_truth, detections, crowd)
    evaluator = run_cocoeval(truth, results)
    return Evaluation(truth, results, evaluator, coco_metrics(truth, results, LABEL_MAP, evaluator))


def test_the_starting_ap_is_cocos_and_the_hand_computed_one():
    found = evaluation()
    assert found.metrics["AP50"] == pytest.approx(BASE, abs=1e-6)
    matches = Matches(found.evaluator, LABEL_MAP)
    summary = ErrorBreakdown(matches).summary()
    assert summary["ap50"] == pytest.approx(found.metrics["AP50"], abs=1e-12)
    precision = class_precision(found.evaluator, LABEL_MAP)
    assert precision[0, :, 0, 0].mean() == pytest.approx(DOG_AP) and precision[0, :, 1, 0].mean() == pytest.approx(
        CAT_AP)


def test_each_error_gets_tides_kind_and_the_ap_its_fix_adds():
    matches = Matches(evaluation().evaluator, LABEL_MAP)
    breakdown = ErrorBreakdown(matches)
    kinds = dict(zip(matches.det_score.round(2), breakdown.det_type))
    assert kinds == {0.9: "correct", 0.8: "duplicate", 0.7: "correct", 0.85: "classification", 0.6: "localisation",
                     0.5: "background", 0.4: "both"}
    missed = sorted(matches.gt_id[breakdown.gt_missed])
    assert missed == [5, 6]  # E and F; C and D are the targets of the Cls and Loc errors
    types = breakdown.summary()["types"]
    assert {k: v["count"] for k, v in types.items()} == {"classification": 1, "localisation": 1, "both": 1,
                                                         "duplicate": 1, "background": 1, "missed": 2}
    expected = {
        "classification": (1.0 + 34 / 101 + 0) / 3,  # dog on C becomes cat's 2nd TP: cat AP 1; dog .7 TP first
        "localisation": (CAT_AP + 67 * (2 / 3) / 101 + 0) / 3,  # dog recall 2/3 at precision 2/3
        "duplicate": BASE, "background": BASE, "both": BASE,  # cat's recall stops at 1/2 behind its first TP
        "missed": (CAT_AP + 51 * 0.5 / 101) / 2,  # bird has no box left (left out); dog 2 boxes
    }
    for kind, fixed in expected.items():
        assert types[kind]["delta_ap"] == pytest.approx(fixed - BASE, abs=1e-9), kind
    summary = breakdown.summary()
    assert summary["perfect_precision"]["delta_ap"] == pytest.approx((CAT_AP + 34 / 101 + 0) / 3 - BASE)
    assert summary["perfect_recall"]["delta_ap"] == pytest.approx((1.0 + 0.5) / 2 - BASE)
    per_class = breakdown.per_class([e["name"] for e in LABEL_MAP])
    assert per_class["cat"] == {"classification": 0, "localisation": 0, "both": 1, "duplicate": 1,
                                "background": 1, "missed": 0}
    assert per_class["dog"]["classification"] == 1 and per_class["dog"]["missed"] == 1
    assert per_class["bird"]["missed"] == 1


def test_recommended_thresholds_maximise_each_classes_f1():
    matches = Matches(evaluation().evaluator, LABEL_MAP)
    dog, cat, bird = (best_threshold(sweep) for sweep in class_sweeps(matches))
    assert cat == pytest.approx({"threshold": 0.9, "precision": 1.0, "recall": 0.5, "f1": 2 / 3})
    assert dog == pytest.approx({"threshold": 0.7, "precision": 0.5, "recall": 1 / 3, "f1": 0.4})
    assert bird is None
    assert overall_threshold(matches)["threshold"] == pytest.approx(0.7)  # F1 2 * .5 * (1/3) / (5/6) = 0.4


def test_the_confusion_matrix_and_the_pictures_with_the_most_mistakes():
    matches = Matches(evaluation().evaluator, LABEL_MAP)
    matrix, pairing = confusion.confusion_matrix(matches, 0.45)
    # rows: true dog, cat, bird, background; columns: detected as the same
    assert matrix.tolist() == [[1, 0, 0, 2],  # B found; D missed (its box is off), F missed (0.4 is below)
                               [1, 1, 0, 0],  # C detected as a dog, A found
                               [0, 0, 0, 1],  # E missed
                               [1, 2, 0, 0]]  # the badly placed dog; the cat duplicate and the cat on nothing
    pictures = confusion.picture_mistakes(matches, pairing)
    assert [p["mistakes"] for p in pictures] == [1, 3, 2, 1]
    assert sorted(matches.det_score[pictures[1]["wrong"]]) == [0.6, 0.85]


def test_crowd_regions_are_neither_errors_nor_objects():
    ground_truth = GROUND_TRUTH + [(4, CAT, [60, 60, 40, 40])]
    detections = DETECTIONS + [(4, CAT, [65, 65, 30, 30], 0.95)]
    found = evaluation(ground_truth, detections, crowd=(6,))
    matches = Matches(found.evaluator, LABEL_MAP)
    assert matches.det_ignored.sum() == 1
    breakdown = ErrorBreakdown(matches)
    assert breakdown.summary()["ap50"] == pytest.approx(found.metrics["AP50"]) == pytest.approx(BASE)
    assert confusion.confusion_matrix(matches, 0.45)[0].sum() == 9


def test_ap_equals_pycocotools_on_random_detections():
    rng = np.random.default_rng(0)
    ground_truth, detections = [], []
    for image in range(1, 31):
        for _ in range(rng.integers(0, 6)):
            x, y, w, h = rng.uniform(0, 60, 2).tolist() + rng.uniform(5, 40, 2).tolist()
            ground_truth.append((image, int(rng.choice([DOG, CAT, BIRD])), [x, y, w, h]))
            for _ in range(rng.integers(0, 3)):
                jitter = (np.array([x, y, w, h]) + rng.normal(0, 6, 4)).clip(1, None).tolist()
                detections.append((image, int(rng.choice([DOG, CAT, BIRD])), jitter, float(rng.uniform())))
        for _ in range(rng.integers(0, 3)):
            detections.append((image, int(rng.choice([DOG, CAT, BIRD])), rng.uniform(1, 50, 4).tolist(),
                               float(rng.uniform())))
    found = evaluation(ground_truth, detections)
    matches = Matches(found.evaluator, LABEL_MAP)
    assert ErrorBreakdown(matches).summary()["ap50"] == pytest.approx(found.metrics["AP50"], abs=1e-12)
    precision = class_precision(found.evaluator, LABEL_MAP)
    for k, sweep in enumerate(class_sweeps(matches)):
        rows = (matches.det_class == k) & matches.det_counted & ~matches.det_ignored
        ours = average_precision(matches.det_score[rows], matches.det_tp[rows], sweep["num_gt"])
        assert ours == pytest.approx(precision[0, :, k, 0].mean(), abs=1e-12)


def test_no_detection_at_all_is_a_report_of_missed_objects():
    report, _ = build_report(evaluation(detections=[]), LABEL_MAP)
    assert report["errors"]["types"]["missed"]["count"] == 6 and report["errors"]["ap50"] == 0.0
    assert report["advice"][0]["kind"] == "train longer"  # AP50 below 0.1: the details come after
    assert report["confusion"]["matrix"][3] == [0, 0, 0, 0] and [row[3] for row in report["confusion"]["matrix"]] == [
        3, 2, 1, 0]


def _source():
    """The four pictures as a data source (grey, with a pattern so the drawing is visible)."""
    images = []
    for image_id in range(1, 5):
        pixels = np.full((100, 100, 3), 90 + 30 * image_id, np.uint8)
        pixels[::10] = 40
        images.append(pixels)
    data = tf.data.Dataset.from_tensor_slices({"image_id": tf.constant([1, 2, 3, 4], tf.int64),
                                               "image": tf.constant(np.stack(images))})
    return DatasetSource(data, LABEL_MAP, "hand-built")


def test_the_report_folder_holds_the_page_the_figures_and_the_numbers(tmp_path):
    path = write_report(str(tmp_path / "report"), evaluation(), LABEL_MAP, _source(), title="Hand-built <check>",
                        report_threshold=0.45, about={"model": "a <b>model</b>"})
    folder = tmp_path / "report"
    for name in ("index.html", "pr_curves.png", "confusion_matrix.png", "errors.png", "report.json"):
        assert (folder / name).stat().st_size > 1000, name
    numbers = json.loads((folder / "report.json").read_text())
    assert [p["image_id"] for p in numbers["worst_pictures"]] == [2, 3, 1, 4]
    assert all((folder / p["path"]).is_file() for p in numbers["worst_pictures"])
    assert numbers["advice"][0]["kind"] == "classification"
    page = open(path, encoding="utf-8").read()
    assert "Hand-built &lt;check&gt;" in page and "a &lt;b&gt;model&lt;/b&gt;" in page  # user text escaped
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    assert page.count("<img ") == 3 + 4


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(not CHROMIUM and os.environ.get("CI") != "true", reason="headless Chromium is not installed")
def test_the_page_shows_in_a_real_browser(tmp_path):
    """Headless Chromium opens the page: every picture shows, no console error, and the
    screenshot is not blank. CI installs Chromium (`.ci/run`); there this test never skips."""
    from PIL import Image

    path = write_report(str(tmp_path / "report"), evaluation(), LABEL_MAP, _source(), report_threshold=0.45)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([CHROMIUM, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", f"file://{path}"],
                         capture_output=True, text=True, timeout=120)
    assert 'data-images-shown="7/7"' in dom.stdout, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1280,2400", f"--screenshot={shot}", f"file://{path}"],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
    assert pixels.std() > 20 and (pixels < 128).mean() > 0.01  # text, figures and pictures, not a blank page


def test_picture_names_are_relative_to_the_data_folder():
    """A report shared beyond the machine shows no one's folders."""
    from keras_retina.evaluation.report_pictures import _data_folder, _relative

    files = ["/home/ann/data/val/a.jpg", "/home/ann/data/val/sub/b.jpg"]
    assert [_relative(f, _data_folder(files)) for f in files] == ["a.jpg", "sub/b.jpg"]
    assert _relative("/x/y/only.jpg", _data_folder(["/x/y/only.jpg"])) == "only.jpg"


def test_class_names_the_font_cannot_draw_raise_no_warning():
    import warnings

    from keras_retina.evaluation import report_figures

    figure, axes = report_figures.plt.subplots()
    axes.set_title("猫 犬")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert report_figures._png(figure).startswith(b"\x89PNG")
