"""`keras_retina predict`'s outputs: never an input or an earlier file overwritten, ids that never collide."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_retina.errors import DataError
from keras_retina.files import make_folder
from keras_retina.inference.pictures import image_ids, output_names, predict_pictures


def test_outputs_never_resolve_to_an_input_or_to_each_other(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for path in ("a/cat.jpg", "b/cat.jpg", "a/dog.png", "a/old.tiff"):
        (tmp_path / path).write_bytes(b"picture")
    inputs = [str(tmp_path / p) for p in ("a/cat.jpg", "b/cat.jpg", "a/dog.png", "a/old.tiff")]
    # Output folder = the input folder: every name is taken by an input.
    names = output_names(inputs, str(tmp_path / "a"))
    assert [os.path.basename(n) for n in names] == ["cat-2.jpg", "cat-3.jpg", "dog-2.png", "old.png"]
    assert not {os.path.realpath(n) for n in names} & {os.path.realpath(p) for p in inputs}
    # Another folder with a file already there: kept too.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "dog.png").write_bytes(b"someone's")
    names = output_names(inputs, str(tmp_path / "out"))
    assert [os.path.basename(n) for n in names] == ["cat.jpg", "cat-2.jpg", "dog-2.png", "old.png"]


def test_image_ids_from_plain_numbers_else_positions():
    assert image_ids(["x/000000397133.jpg", "y/42.png"]) == [397133, 42]
    assert image_ids(["x/2.jpg", "y/photo.jpg", "z/1.jpg"]) == [1, 2, 3]  # a name is not a number
    assert image_ids(["x/7.jpg", "y/7.png"]) == [1, 2]  # numbers collide
    assert image_ids(["x/².jpg"]) == [1]  # a Unicode digit is not an ASCII number


def _stand_in(pixels):
    """A detector: one box over the top-left quarter, class 1."""
    return np.array([[0.0, 0.0, 0.5, 0.5]]), np.array([0.9]), np.array([1]), ["thing"]


def test_a_run_never_replaces_a_file_it_did_not_write(tmp_path):
    """A user's own detections.json in the output folder, and a second run into the same folder:
    every earlier file stays byte-identical, each run's detections go to a new name."""
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(tmp_path / "p.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "detections.json").write_text("mine")
    assert predict_pictures(_stand_in, [str(tmp_path / "p.png")], str(tmp_path / "out")) == 0
    first = (tmp_path / "out" / "detections-2.json").read_bytes()
    assert json.loads(first)[0]["bbox"] == [0.0, 0.0, 24.0, 16.0]
    assert predict_pictures(_stand_in, [str(tmp_path / "p.png")], str(tmp_path / "out")) == 0
    assert (tmp_path / "out" / "detections.json").read_text() == "mine"
    assert (tmp_path / "out" / "detections-2.json").read_bytes() == first
    assert sorted(os.listdir(tmp_path / "out")) == ["detections-2.json", "detections-3.json", "detections.json",
                                                     "p-2.png", "p.png"]


def test_an_output_folder_that_cannot_be_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(tmp_path / "p.png")
    for folder in ("file", "file/below"):
        with pytest.raises(DataError, match=f"{folder} \\(--output_dir\\): a file is in the way"):
            predict_pictures(_stand_in, [str(tmp_path / "p.png")], str(tmp_path / folder))
    os.chmod(tmp_path / "file", 0o644)
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: nothing to refuse
            return
        with pytest.raises(DataError, match="cannot make this folder"):
            make_folder(str(locked / "out"), "--output_dir")
    finally:
        os.chmod(locked, 0o700)
