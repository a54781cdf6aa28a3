"""Image decoding, EXIF orientation and the file checks (`keras_retina.images`)."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from keras_retina import images


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_match_what_viewers_show(tmp_path, orientation):
    """Every EXIF orientation is applied as PIL's exif_transpose (what viewers show) does."""
    stored = np.zeros((30, 50, 3), np.uint8)
    stored[:8, :12] = (255, 0, 0)  # a marker in one corner only: tells every rotation and flip apart
    stored[-5:, 20:25] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = str(tmp_path / "photo.png")
    Image.fromarray(stored).save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert images.image_header(path)[2] == orientation
    decoded = images.apply_orientation(images.decode_image(tf.io.read_file(path)), orientation)
    assert np.array_equal(decoded.numpy(), expected)


def test_too_large_images_are_refused_by_name(tmp_path, monkeypatch):
    path = str(tmp_path / "huge.png")
    Image.new("L", (400, 300)).save(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 100_000)
    with pytest.raises(images.BadImage, match="huge.png") as error:
        images.image_header(path)
    assert error.value.kind == "too_large"




def test_read_picture_applies_the_orientation_and_names_bad_files(tmp_path):
    stored = np.zeros((30, 50, 3), np.uint8)
    stored[:8, :12] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "photo.jpg", exif=exif, quality=95)
    picture = images.read_picture(str(tmp_path / "photo.jpg")).numpy()
    assert picture.shape == (50, 30, 3) and picture[:12, -8:].mean() > 200  # rotated clockwise
    (tmp_path / "junk.jpg").write_bytes(b"not a picture")
    with pytest.raises(images.BadImage, match="junk.jpg") as error:
        images.read_picture(str(tmp_path / "junk.jpg"))
    assert error.value.kind == "unreadable_image"
