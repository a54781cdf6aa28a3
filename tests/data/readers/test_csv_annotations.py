"""CSV annotations in fizyr's format (`data.readers.csv_annotations`)."""

import numpy as np
import pytest
from PIL import Image

from keras_retina.data.label_map import read_class_names
from keras_retina.data.readers.csv_annotations import read_csv_annotations
from keras_retina.errors import DataError

from conftest import assert_close


def _csv(tmp_path, rows, pictures=("a.jpg", "b.jpg")):
    (tmp_path / "pics").mkdir(exist_ok=True)
    for name in pictures:
        Image.fromarray(np.full((50, 70, 3), 60, np.uint8)).save(tmp_path / "pics" / name)
    (tmp_path / "boxes.csv").write_text("".join(row + "\n" for row in rows))
    return str(tmp_path / "boxes.csv")


def test_rows_negatives_and_a_classes_file(tmp_path):
    path = _csv(tmp_path, ["pics/a.jpg,10,5,30,45,dog", "pics/a.jpg,0,0,70,50,cat", "pics/b.jpg,,,,,"])
    source = read_csv_annotations(path)
    assert source.label_map == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    first, negative = list(source.examples())
    assert_close(first["boxes"], [[5, 10, 45, 30], [0, 0, 50, 70]])
    assert list(first["classes"].numpy()) == [1, 0] and len(negative["boxes"]) == 0
    (tmp_path / "classes.csv").write_text("dog,0\ncat,1\n")
    with_ids = read_csv_annotations(path, classes=read_class_names(str(tmp_path / "classes.csv")))
    assert with_ids.label_map == [{"id": 0, "name": "dog"}, {"id": 1, "name": "cat"}]
    assert list(next(iter(with_ids.examples()))["classes"].numpy()) == [0, 1]


def test_bad_rows_are_named_by_line(tmp_path):
    path = _csv(tmp_path, ["pics/a.jpg,10,5,30,45,dog", "pics/a.jpg,10,5,30,dog", "pics/a.jpg,1,2,x,4,dog",
                           "pics/a.jpg,30,5,10,45,dog", "pics/a.jpg,1,1,5,5,horse", "../outside.jpg,1,1,5,5,dog",
                           "pics/nowhere.jpg,1,1,5,5,dog"])
    classes = [{"id": 1, "name": "dog"}]
    with pytest.raises(DataError) as caught:
        read_csv_annotations(path, classes=classes)
    message = str(caught.value)
    for fragment in ("boxes.csv line 2: 5 columns", "boxes.csv line 3: corners", "boxes.csv line 4: box",
                     "boxes.csv line 5: class 'horse'", "../outside.jpg", "nowhere.jpg"):
        assert fragment in message, fragment
    source = read_csv_annotations(path, classes=classes, skip_bad_examples=True)
    counts = source.report.counts
    assert (counts["malformed_annotation"], counts["bad_box"], counts["unknown_category"], counts["outside_folder"],
            counts["missing_file"]) == (2, 1, 1, 1, 1)
    assert [len(image["boxes"]) for image in source.images] == [1]


def test_a_classes_file_with_names_only_and_a_broken_one(tmp_path):
    (tmp_path / "c.txt").write_text("dog\ncat\n")
    assert read_class_names(str(tmp_path / "c.txt")) == [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}]
    (tmp_path / "d.txt").write_text("dog,1\ncat,x\n")
    with pytest.raises(DataError, match="d.txt line 2"):
        read_class_names(str(tmp_path / "d.txt"))


def test_a_header_row_is_skipped_not_a_missing_picture(tmp_path):
    rows = ["pics/a.jpg,10,5,30,45,dog", "pics/b.jpg,,,,,"]
    plain = read_csv_annotations(_csv(tmp_path, rows))
    headed = read_csv_annotations(_csv(tmp_path, ["image_path,xmin,ymin,xmax,ymax,label", *rows]))
    assert headed.report.counts == plain.report.counts and not headed.report.problems()
    assert headed.label_map == plain.label_map == [{"id": 1, "name": "dog"}]
    # a second row of words is data, named by its line
    with pytest.raises(DataError, match="line 2: corners"):
        read_csv_annotations(_csv(tmp_path, ["pics/a.jpg,10,5,30,45,dog", "path,x1,y1,x2,y2,class"]))
