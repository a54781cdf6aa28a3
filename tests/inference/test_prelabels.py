"""Pre-labels (`inference.prelabels`): each format read back by keras_retina's own readers gives the
same boxes, Label Studio's and CVAT's files hold them as those tools define them, nothing is
overwritten, and the labelling threshold is measured from an evaluation when one exists."""

import json
import os
import shutil
import xml.etree.ElementTree as ElementTree  # our own output, written by the test's code under test

import numpy as np
import pytest
from PIL import Image

from keras_retina.data.readers.coco_json import read_coco_json
from keras_retina.data.readers.csv_annotations import read_csv_annotations
from keras_retina.data.readers.pascal_voc import read_pascal_voc
from keras_retina.data.readers.yolo import read_yolo
from keras_retina.errors import UsageError
from keras_retina.evaluation.precision_recall import labelling_threshold
from keras_retina.inference import prelabels
from keras_retina.inference.prelabels import Picture, PrelabelSettings, write_prelabels

LABEL_MAP = [{"id": 3, "name": "tree"}, {"id": 8, "name": "car"}]


@pytest.fixture
def pictures(tmp_path):
    """Two pictures on disk (one without detections) and their detections in pixels."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((50, 40, 3), np.uint8)).save(folder / "b.jpg")
    found = [Picture(str(folder / "a.png"), 60, 80, np.array([[5.2, 10.4, 30.6, 50.1], [0.0, 0.0, 20.0, 8.0]]),
                     np.array([0.9, 0.4]), np.array([3, 8])),
             Picture(str(folder / "b.jpg"), 50, 40, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))]
    return folder, found


def _read_back(source):
    """{file name: (boxes [n, 4] yxyx, class names)} of a source, from its examples."""
    names = [e["name"] for e in source.label_map]
    out = {}
    for entry, example in zip(source.images, source.examples()):
        out[os.path.basename(entry["file"])] = (example["boxes"].numpy(),
                                                [names[c] for c in example["classes"].numpy()])
    return out


def _expected(found):
    names = {e["id"]: e["name"] for e in LABEL_MAP}
    return {os.path.basename(p.path): (p.boxes, [names[int(c)] for c in p.classes]) for p in found}


@pytest.mark.parametrize("fmt,tolerance", [("voc", 0.5), ("yolo", 1e-3), ("coco", 1e-4), ("csv", 0.5)])
def test_each_format_reads_back_as_the_same_boxes(tmp_path, pictures, fmt, tolerance):
    folder, found = pictures
    (tmp_path / "out").mkdir()
    path = write_prelabels(PrelabelSettings(format=fmt), found, LABEL_MAP, str(tmp_path / "out"))
    if fmt == "voc":
        source = read_pascal_voc(path, str(folder))
    elif fmt == "yolo":
        source = read_yolo(os.path.join(path, "labels"), images_dir=str(folder))
    elif fmt == "coco":
        source = read_coco_json(path, str(folder))
    else:  # fizyr's CSV names pictures relative to itself: it goes beside them
        shutil.copy(path, folder / "prelabels.csv")
        source = read_csv_annotations(str(folder / "prelabels.csv"))
        with open(path) as f:  # fizyr's reader takes integer corners only
            assert all(v.isdigit() for row in f for v in row.strip().split(",")[1:5] if v)
    got, expected = _read_back(source), _expected(found)
    assert got.keys() == expected.keys() and source.report.problems() == []
    for name, (boxes, classes) in expected.items():
        np.testing.assert_allclose(got[name][0], boxes.reshape(-1, 4), atol=tolerance)
        assert got[name][1] == classes
    assert os.path.exists(write_prelabels(PrelabelSettings(format=fmt), found, LABEL_MAP, str(tmp_path / "out")))
    assert len(os.listdir(tmp_path / "out")) == 2  # written again: beside the first, which is kept


def test_yolo_class_indices_follow_the_projects_file(tmp_path, pictures):
    _, found = pictures
    (tmp_path / "data.yaml").write_text("names: [bus, car, tree]\ntrain: images\nval: images\n")
    path = write_prelabels(PrelabelSettings(format="yolo", classes_file=str(tmp_path / "data.yaml")), found,
                           LABEL_MAP, str(tmp_path))
    lines = (tmp_path / path / "labels" / "a.txt").read_text().split("\n")
    assert [line.split()[0] for line in lines if line] == ["2", "1"]  # tree, car in the project's indices
    assert (tmp_path / path / "classes.txt").read_text() == "bus\ncar\ntree\n"
    assert (tmp_path / path / "labels" / "b.txt").read_text() == ""
    (tmp_path / "classes.txt").write_text("bus\ncar\n")
    with pytest.raises(UsageError, match="has no class tree of the model's"):
        write_prelabels(PrelabelSettings(format="yolo", classes_file=str(tmp_path / "classes.txt")), found,
                        LABEL_MAP, str(tmp_path))


def test_label_studio_tasks_and_cvat_xml(tmp_path, pictures):
    _, found = pictures
    settings = PrelabelSettings(format="labelstudio", labelstudio_from_name="box", labelstudio_to_name="img",
                                labelstudio_image_url="s3://bucket/photos/")
    tasks = json.loads(open(write_prelabels(settings, found, LABEL_MAP, str(tmp_path))).read())
    assert [t["data"] for t in tasks] == [{"img": "s3://bucket/photos/a.png"}, {"img": "s3://bucket/photos/b.jpg"}]
    first = tasks[0]["predictions"][0]["result"][0]
    assert (first["from_name"], first["to_name"], first["type"]) == ("box", "img", "rectanglelabels")
    assert (first["original_width"], first["original_height"]) == (80, 60)
    value = first["value"]  # percent of the picture: x 10.4 / 80, y 5.2 / 60, ...
    np.testing.assert_allclose([value["x"], value["y"], value["width"], value["height"]],
                               [13.0, 100 * 5.2 / 60, 100 * 39.7 / 80, 100 * 25.4 / 60], rtol=1e-9)
    assert value["rectanglelabels"] == ["tree"] and first["score"] == 0.9
    # A file name that is not URL-safe is percent-encoded, as Label Studio's URLs need.
    spaced = [Picture("x/my photo#1.jpg", 10, 10, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))]
    (task,) = json.loads(open(write_prelabels(settings, spaced, LABEL_MAP, str(tmp_path))).read())
    assert task["data"] == {"img": "s3://bucket/photos/my%20photo%231.jpg"}
    assert tasks[1]["predictions"][0]["result"] == []

    root = ElementTree.parse(write_prelabels(PrelabelSettings(format="cvat"), found, LABEL_MAP,
                                             str(tmp_path))).getroot()
    assert root.findtext("version") == "1.1"
    assert [label.findtext("name") for label in root.iter("label")] == ["tree", "car"]
    image = root.find("image")
    assert (image.get("name"), image.get("width"), image.get("height")) == ("a.png", "80", "60")
    box = image.find("box")
    assert [box.get(k) for k in ("label", "xtl", "ytl", "xbr", "ybr", "source")] == [
        "tree", "10.40", "5.20", "50.10", "30.60", "auto"]


def test_two_pictures_of_one_name_and_bad_settings_are_refused():
    with pytest.raises(UsageError, match="by file name, and x/b.png and y/b.png would share one"):
        prelabels.check_names(["x/b.png", "a.png", "y/b.png"], "coco")
    # VOC and YOLO files are named by the picture's stem: a.jpg and a.png would write one a.xml.
    prelabels.check_names(["a.jpg", "a.png"], "coco")
    with pytest.raises(UsageError, match=r"without its extension \(a.xml\), and a.jpg and x/a.png"):
        prelabels.check_names(["a.jpg", "x/a.png"], "voc")
    with pytest.raises(UsageError, match="--save_annotations=pascal: choose one of voc, yolo"):
        PrelabelSettings(format="pascal")
    with pytest.raises(UsageError, match="--prelabel_threshold=2"):
        PrelabelSettings(format="voc", threshold=2.0)


def test_the_labelling_threshold_favours_recall():
    # scores best first; true positives at 0.9, 0.8, 0.6, 0.3 of 4 objects (+1 missed): recall 0.8 at 0.3
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.2])
    tp = np.cumsum([1, 1, 0, 1, 0, 1, 0]).astype(float)
    sweep = {"scores": scores, "tp": tp, "precision": tp / np.arange(1, 8), "recall": tp / 5}
    assert labelling_threshold(sweep, recall=0.6) == {"threshold": 0.6, "precision": 0.75, "recall": 0.6}
    assert labelling_threshold(sweep)["threshold"] == 0.3  # 0.9 never reached: the best recall's threshold
    assert labelling_threshold({**sweep, "recall": np.zeros(7)}) is None


def test_thresholds_from_the_training_report_else_a_stated_default(tmp_path):
    report = tmp_path / "eval" / "metrics-100_report"
    report.mkdir(parents=True)
    (report / "report.json").write_text(json.dumps({"classes": [
        {"id": 3, "for_labelling": {"threshold": 0.12, "precision": 0.4, "recall": 0.9}},
        {"id": 8, "for_labelling": None}]}))
    summary = {"report": str(report / "index.html")}
    thresholds, how = prelabels.labelling_thresholds(summary, LABEL_MAP)
    assert thresholds == {3: 0.12, 8: prelabels.DEFAULT_THRESHOLD} and "finds 90% of the class's" in how
    thresholds, how = prelabels.labelling_thresholds(None, LABEL_MAP)
    assert thresholds == {3: 0.3, 8: 0.3} and "no evaluation report" in how
    assert prelabels.labelling_thresholds(summary, LABEL_MAP, 0.5)[0] == {3: 0.5, 8: 0.5}
