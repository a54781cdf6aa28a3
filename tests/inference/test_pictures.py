"""`keras_retina predict`'s outputs: never an input overwritten, ids that never collide."""

import os

from keras_retina.inference.pictures import image_ids, output_names


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
