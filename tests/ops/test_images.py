"""Image decoding, EXIF orientation and the file checks (`keras_retina.ops.images`)."""

import warnings

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from keras_retina.ops import images

from picture_files import gif


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
    with pytest.raises(images.BadImage, match="huge.png: 400x300 pixels, above our limit of 100,000$") as error:
        images.image_header(path)
    assert error.value.kind == "too_large"
    Image.new("L", (600, 500)).save(path)  # above twice the limit: PIL itself refuses, in our words
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(images.BadImage, match="huge.png: 300,000 pixels, above our limit of 100,000$"):
            images.image_header(path)




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


def _bytes(image, fmt, **kwargs):
    import io

    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def test_encoded_pixels_are_read_from_the_header():
    picture = Image.fromarray(np.zeros((30, 50, 3), np.uint8))
    for fmt, kwargs in (("JPEG", {}), ("PNG", {}), ("BMP", {}), ("WEBP", {}), ("WEBP", {"lossless": True})):
        assert int(images.encoded_pixels(_bytes(picture, fmt, **kwargs))) == 1500, fmt
    animated = _bytes(picture, "GIF", save_all=True, append_images=[Image.new("RGB", (50, 30), (255, 0, 0))])
    decoded = tf.io.decode_gif(animated)
    frames = [int(images.encoded_pixels(animated)), decoded.shape[0] * decoded.shape[1] * decoded.shape[2]]
    assert decoded.shape[0] == 2 and frames[0] >= frames[1]  # at least the canvases TensorFlow fills
    # TensorFlow's canvas is the widest frame x the tallest frame, whatever the screen says.
    assert int(images.encoded_pixels(gif((1, 1), [(65535, 1), (1, 65535)]))) == 2 * 65535**2 + 2 * 65535
    assert int(images.encoded_pixels(gif((20, 20), [(1, 1), (20000, 20000)]))) == 2 * 20000**2 + 1 + 20000**2
    assert int(images.encoded_pixels(b"not an image")) == -1 and int(images.encoded_pixels(b"")) == -1


def test_a_gif_of_endless_blocks_is_refused_quickly():
    """Empty extensions, three bytes each: the walk stops after GIF_MAX_BLOCKS and says too large."""
    import time

    endless = gif((1, 1), [(1, 1)])[:-1] + b"\x21\xfe\x00" * 1_000_000 + b"\x3b"
    count = tf.function(images.encoded_pixels)  # as in the serving graph
    start = time.time()
    assert int(count(tf.constant(endless))) > 10**12
    assert time.time() - start < 60
