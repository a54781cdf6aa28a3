"""Pascal VOC XML (`data.readers.pascal_voc`): labelImg folders, VOC layouts, difficult objects, bad files."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from keras_retina.data.readers.pascal_voc import read_pascal_voc
from keras_retina.errors import DataError

from conftest import assert_close


def _xml(filename, objects, size=(48, 64)):
    """A labelImg-style annotation: objects (name, xmin, ymin, xmax, ymax, difficult), 1-based corners."""
    body = "".join(f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated>"
                   f"<difficult>{d}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                   f"<ymax>{y1}</ymax></bndbox></object>" for n, x0, y0, x1, y1, d in objects)
    return (f"<annotation><folder>images</folder><filename>{filename}</filename><size><width>{size[1]}</width>"
            f"<height>{size[0]}</height><depth>3</depth></size><segmented>0</segmented>{body}</annotation>")


def _picture(path, size=(48, 64)):
    Image.fromarray(np.full((*size, 3), 120, np.uint8)).save(path)


def _folder(tmp_path, annotations, pictures=("a.jpg", "b.jpg")):
    folder = tmp_path / "labelimg"
    folder.mkdir()
    for name in pictures:
        _picture(folder / name)
    for name, text in annotations.items():
        (folder / name).write_text(text)
    return str(folder)


def test_a_labelimg_folder(tmp_path):
    folder = _folder(tmp_path, {"a.xml": _xml("a.jpg", [("dog", 11, 6, 30, 40, 0), ("cat", 1, 1, 64, 48, 1)])},
                     pictures=("a.jpg", "b.jpg"))
    source = read_pascal_voc(folder)
    # names sorted, ids 1..K; VOC's 1-based corners become 0-based (xmin, ymin), as detectron2 reads VOC
    assert source.label_map == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    first, negative = list(source.examples())
    assert_close(first["boxes"], [[5, 10, 40, 30], [0, 0, 48, 64]])
    assert list(first["classes"].numpy()) == [1, 0]
    assert list(first["is_crowd"].numpy()) == [False, True]  # difficult: never a positive, ignored when scoring
    assert len(negative["boxes"]) == 0  # b.jpg has no XML: a negative, and reported
    assert source.report.counts["no_annotation_file"] == 1 and source.report.counts["difficult"] == 1


def test_a_voc_layout_and_a_classes_file(tmp_path):
    root = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    for name in ("000005", "000007"):
        _picture(root / "JPEGImages" / f"{name}.jpg")
        (root / "Annotations" / f"{name}.xml").write_text(_xml(f"{name}.jpg", [("person", 2, 2, 20, 20, 0)]))
    (root / "ImageSets/Main/train.txt").write_text("000005\n000007\n")
    classes = [{"id": 7, "name": "car"}, {"id": 15, "name": "person"}]
    source = read_pascal_voc(str(root / "ImageSets/Main/train.txt"), classes=classes)
    assert source.label_map == classes and source.num_examples == 2
    assert [list(e["classes"].numpy()) for e in source.examples()] == [[1], [1]]
    (root / "ImageSets/Main/val.txt").write_text("000005\n../../../etc/passwd\n")
    with pytest.raises(DataError, match=r"val.txt: ids \['../../../etc/passwd'\] name files outside"):
        read_pascal_voc(str(root / "ImageSets/Main/val.txt"), classes=classes)


def test_every_problem_is_named_counted_and_skippable(tmp_path):
    annotations = {
        "a.xml": _xml("a.jpg", [("dog", 1, 1, 10, 10, 0), ("dog", "x", 1, 10, 10, 0), ("bird", 1, 1, 9, 9, 0),
                                ("dog", 100, 100, 200, 200, 0)]),
        "b.xml": "<annotation><filename>b.jpg</filename>",
        "missing.xml": _xml("missing.jpg", []),
        "escape.xml": _xml("../secret.jpg", []),
        "twice1.xml": _xml("c.jpg", []), "twice2.xml": _xml("c.jpg", []),
    }
    folder = _folder(tmp_path, annotations, pictures=("a.jpg", "b.jpg", "c.jpg"))
    classes = [{"id": 1, "name": "dog"}]
    with pytest.raises(DataError) as caught:
        read_pascal_voc(folder, classes=classes)
    message = str(caught.value)
    for fragment in ("a.xml object 2 (dog): bndbox is not four numbers", "a.xml object 3 (bird): class 'bird'",
                     "a.xml object 4 (dog)", "b.xml: not XML", "missing.jpg", "'../secret.jpg' is outside",
                     "twice1.xml, "):
        assert fragment in message, fragment
    source = read_pascal_voc(folder, classes=classes, skip_bad_examples=True)
    counts = source.report.counts
    assert (counts["malformed_annotation"], counts["unknown_category"], counts["outside_box"],
            counts["unreadable_annotations"], counts["missing_file"], counts["outside_folder"],
            counts["duplicate_annotations"]) == (1, 1, 1, 1, 1, 1, 2)
    # a.jpg keeps its good box; b.jpg (its XML broken) is left out, never taken for a negative
    boxes = {os.path.basename(image["file"]): len(image["boxes"]) for image in source.images}
    assert boxes == {"a.jpg": 1} and "no_annotation_file" not in counts


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<annotation><filename>a.jpg</filename><object><name>&lol9;</name></object></annotation>"""

EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE annotation [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<annotation><filename>a.jpg</filename><object><name>&secret;</name><bndbox><xmin>1</xmin><ymin>1</ymin>
<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"""


def test_hostile_xml_is_refused_without_expanding_anything(tmp_path):
    folder = _folder(tmp_path, {"laughs.xml": BILLION_LAUGHS, "external.xml": EXTERNAL}, pictures=("a.jpg",))
    start = time.monotonic()
    with pytest.raises(DataError) as caught:
        read_pascal_voc(folder)
    assert time.monotonic() - start < 30  # nothing expanded (a billion "lol"s would take minutes and GBs)
    assert "laughs.xml: refused" in str(caught.value) and "external.xml: refused" in str(caught.value)
    assert "root:" not in str(caught.value)  # /etc/passwd was never read into a class name
