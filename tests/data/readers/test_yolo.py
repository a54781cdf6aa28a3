"""YOLO txt labels (`data.readers.yolo`): Ultralytics data.yaml, label folders, polygons, bad lines."""

import io

import numpy as np
import pytest
from PIL import Image

from keras_retina.data.readers.yolo import read_yolo
from keras_retina.errors import DataError

from conftest import assert_close


def _dataset(tmp_path, labels, names="names: [dog, cat]", sizes=None):
    """An Ultralytics layout: images/{train,val}/*.jpg, labels/{train,val}/*.txt, data.yaml."""
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    for (split, name), text in labels.items():
        height, width = (sizes or {}).get(name, (40, 80))
        Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(root / "images" / split / f"{name}.jpg")
        if text is not None:
            (root / "labels" / split / f"{name}.txt").write_text(text)
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/val\n{names}\n")
    return str(root / "data.yaml")


def test_data_yaml_boxes_polygons_and_negatives(tmp_path):
    path = _dataset(tmp_path, {("train", "a"): "0 0.5 0.5 0.5 0.25\n1 0.1 0.1 0.3 0.1 0.2 0.6\n",
                               ("train", "empty"): "", ("train", "unlabelled"): None,
                               ("val", "v"): "1 0.25 0.5 0.5 1.0\n"})
    source = read_yolo(path)
    assert source.label_map == [{"id": 0, "name": "dog"}, {"id": 1, "name": "cat"}]  # ids: YOLO's indices
    first, empty, unlabelled = list(source.examples())
    # normalised centres (and a polygon's bounding box) -> pixels of the 40 x 80 picture
    assert_close(first["boxes"], [[15, 20, 25, 60], [4, 8, 24, 24]], atol=1e-4)
    assert list(first["classes"].numpy()) == [0, 1]
    assert len(empty["boxes"]) == len(unlabelled["boxes"]) == 0  # both negatives
    assert source.report.counts["no_annotation_file"] == 1
    val = read_yolo(path, split="val")
    assert_close(next(iter(val.examples()))["boxes"], [[0, 0, 40, 40]], atol=1e-4)


def test_names_as_a_mapping_and_a_folder_with_classes_txt(tmp_path):
    path = _dataset(tmp_path, {("train", "a"): "3 0.5 0.5 0.2 0.2\n"}, names="names:\n  0: dog\n  3: fox\n")
    assert read_yolo(path).label_map == [{"id": 0, "name": "dog"}, {"id": 3, "name": "fox"}]
    folder = tmp_path / "export"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "images" / "p.png")
    (folder / "labels" / "p.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (folder / "labels" / "classes.txt").write_text("apple\npear\n")
    source = read_yolo(str(folder / "labels"))
    assert source.label_map == [{"id": 0, "name": "apple"}, {"id": 1, "name": "pear"}]
    assert list(next(iter(source.examples()))["classes"].numpy()) == [1]


def test_every_bad_line_is_named_and_counted(tmp_path):
    path = _dataset(tmp_path, {("train", "a"): "0 0.5 0.5 0.2 0.2\n0 1.2 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n"
                                                "0 0.5 zero 0.1 0.1\n0 0.5 0.5\n"})
    with pytest.raises(DataError) as caught:
        read_yolo(path)
    message = str(caught.value)
    for fragment in ("a.txt line 2", "a.txt line 3: class 7", "a.txt line 4", "a.txt line 5: 3 values"):
        assert fragment in message, fragment
    source = read_yolo(path, skip_bad_examples=True)
    counts = source.report.counts
    assert (counts["out_of_range"], counts["unknown_category"], counts["malformed_annotation"]) == (1, 1, 2)
    assert len(next(iter(source.examples()))["boxes"]) == 1


def test_a_label_file_without_its_picture_and_missing_keys(tmp_path):
    folder = tmp_path / "labels"
    folder.mkdir()
    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "images" / "p.jpg")
    (folder / "p.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (folder / "ghost.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (folder / "classes.txt").write_text("thing\n")
    with pytest.raises(DataError, match="ghost.txt"):
        read_yolo(str(folder))
    assert read_yolo(str(folder), skip_bad_examples=True).report.counts["orphan_annotations"] == 1
    (tmp_path / "data.yaml").write_text("train: images\n")
    with pytest.raises(DataError, match="no 'names' key"):
        read_yolo(str(tmp_path / "data.yaml"))
    (tmp_path / "data.yaml").write_text("names: [a]\ntrain: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(DataError, match="not a YAML file"):  # the safe loader never builds Python objects
        read_yolo(str(tmp_path / "data.yaml"))


def test_sizes_come_from_headers_without_decoding(tmp_path):
    """A picture whose header is whole but whose data is cut short reads (its size is in the header);
    it shows only when pictures are decoded (--skip_bad_examples: a counted skip)."""
    path = _dataset(tmp_path, {("train", "a"): "0 0.5 0.5 0.5 0.5\n", ("train", "b"): "0 0.5 0.5 0.5 0.5\n"},
                    sizes={"b": (300, 400)})
    picture = tmp_path / "yolo" / "images" / "train" / "b.jpg"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(buffer, "JPEG")
    picture.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    source = read_yolo(path)
    assert source.num_examples == 2 and source.images[1]["boxes"].tolist() == [[75.0, 100.0, 225.0, 300.0]]
    assert read_yolo(path, skip_bad_examples=True).report.counts["unreadable_image"] == 1


def test_yaml_alias_bombs_and_names_that_are_not_text_are_refused_at_once(tmp_path):
    """476 bytes of nested aliases expand to 10^8 strings with PyYAML's safe loader alone (3.7 GB); the
    reader refuses any alias before expanding it, and class names that are not text."""
    import resource
    import time

    lines = ["a0: &a0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 8)]
    bomb = _dataset(tmp_path, {("train", "p"): "0 0.5 0.5 0.2 0.2\n"}, names="\n".join(lines) + "\nnames: [*a7, dog]")
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time()
    with pytest.raises(DataError, match=r"data.yaml: not a YAML file we take .*an alias \(\*a0\): aliases are not "
                                        r"taken in a dataset file"):
        read_yolo(bomb)
    assert time.time() - start < 5 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024
    for names, shown in (("names: [dog, [1, 2]]", "class 1's name is \\[1, 2\\]"),
                         ("names: {0: dog, 1: 3}", "class 1's name is 3"), ("names: [dog, '']", "class 1's name")):
        path = _dataset(tmp_path / names.replace(" ", "").replace(":", "").replace("'", "q"),
                        {("train", "p"): "0 0.5 0.5 0.2 0.2\n"}, names=names)
        with pytest.raises(DataError, match=f"{shown}.*class names are non-empty text"):
            read_yolo(path)
    huge = _dataset(tmp_path / "huge", {("train", "p"): "0 0.5 0.5 0.2 0.2\n"},
                    names="names: [dog]\n#" + "x" * (2 << 20))
    with pytest.raises(DataError, match="a data.yaml is a few hundred"):
        read_yolo(huge)
