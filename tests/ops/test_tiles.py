"""Tiles of large pictures: the windows, boxes in them, and TIFFs read window by window."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from keras_retina.ops import images as image_lib
from keras_retina.ops.large_picture import open_large_picture
from keras_retina.ops.tiles import boxes_in_window, tile_windows

from conftest import REPO


def test_windows_cover_the_picture_and_end_at_its_edges():
    assert tile_windows(100, 250, 100, 0.2) == [(0, 0, 100, 100), (0, 80, 100, 180), (0, 150, 100, 250)]
    assert tile_windows(60, 50, 100, 0.5) == [(0, 0, 60, 50)]  # shorter than a tile: one window, the picture
    windows = tile_windows(1000, 700, 256, 0.25)
    covered = np.zeros((1000, 700), int)
    for y0, x0, y1, x1 in windows:
        assert (y1 - y0, x1 - x0) == (256, 256) and 0 <= y0 and y1 <= 1000 and x1 <= 700
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1


def test_boxes_in_a_window_are_clipped_with_their_visible_share():
    boxes = [[10, 10, 30, 30], [90, 90, 110, 130], [150, 0, 160, 10]]
    clipped, share, centred = boxes_in_window(boxes, (0, 0, 100, 100))
    np.testing.assert_allclose(clipped, [[10, 10, 30, 30], [90, 90, 100, 100], [100, 0, 100, 10]])
    np.testing.assert_allclose(share, [1.0, 10 * 10 / (20 * 40), 0.0])
    assert centred.tolist() == [True, False, False]
    clipped, _, _ = boxes_in_window(boxes, (80, 50, 180, 150))  # coordinates become the tile's own
    np.testing.assert_allclose(clipped[1], [10, 40, 30, 80])


PIXELS = np.random.default_rng(0).integers(0, 255, (700, 900, 3), np.uint8)


@pytest.mark.parametrize("layout", [dict(tile=(128, 256), compression="zlib"), dict(rowsperstrip=50),
                                    dict(tile=(64, 64), compression="lzw"), dict(tile=(128, 128), planar=True)])
def test_a_tiff_window_is_the_same_pixels_as_the_whole_picture(tmp_path, layout):
    path = str(tmp_path / "scan.tif")
    planar = layout.pop("planar", False)
    data = np.moveaxis(PIXELS, -1, 0) if planar else PIXELS
    tifffile.imwrite(path, data, photometric="rgb", planarconfig="separate" if planar else None, **layout)
    picture = open_large_picture(path)
    for window in [(0, 0, 700, 900), (100, 200, 333, 777), (650, 850, 700, 900)]:
        y0, x0, y1, x1 = window
        assert np.array_equal(picture.read(window), PIXELS[y0:y1, x0:x1]), window
    picture.close()


def test_bad_large_pictures_are_one_clear_error(tmp_path):
    path = str(tmp_path / "scan.tif")
    tifffile.imwrite(path, PIXELS, photometric="rgb", tile=(128, 128), compression="zlib")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])  # truncated: the later tiles are gone
    picture = open_large_picture(path)
    with pytest.raises(image_lib.BadImage, match=r"scan.tif: tile \d+ (lies past the end|does not decode)"):
        picture.read((0, 0, 700, 900))
    tifffile.imwrite(str(tmp_path / "deep.tif"), PIXELS.astype(np.uint16), photometric="rgb", tile=(128, 128))
    with pytest.raises(image_lib.BadImage, match="uint16 samples; convert it to 8-bit"):
        open_large_picture(str(tmp_path / "deep.tif"))
    (tmp_path / "fake.tif").write_text("not a tiff")
    with pytest.raises(image_lib.BadImage, match="fake.tif: not a TIFF"):
        open_large_picture(str(tmp_path / "fake.tif"))


HUGE = """
import resource, sys, numpy as np
from keras_retina.ops.large_picture import open_large_picture
from keras_retina.ops.tiles import tile_windows
picture = open_large_picture(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # TensorFlow's import is most of it
total = 0
for window in tile_windows(picture.height, picture.width, 1024, 0.1):
    total += int(picture.read(window)[::64, ::64].sum())
print(picture.height, picture.width, total > 0, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_a_20000_pixel_tiff_is_read_tile_by_tile_in_flat_memory(tmp_path):
    """A 20000 x 20000 RGB scan (1.2 GB decoded) written as a tiled, deflated TIFF: every window
    of it is read in a process whose peak memory stays far below the picture's size."""
    path = str(tmp_path / "huge.tif")
    tile = np.zeros((512, 512, 3), np.uint8)
    tile[::16] = 200

    def tiles():
        for _ in range(40 * 40):
            yield tile

    tifffile.imwrite(path, tiles(), shape=(20480, 20480, 3), dtype=np.uint8, tile=(512, 512), photometric="rgb",
                     compression="zlib", bigtiff=True)
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", HUGE, path], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    height, width, found, before, peak = result.stdout.split()
    print(f"20480 x 20480 tiled TIFF read window by window: peak memory {peak} MiB, {before} MiB before reading")
    assert (height, width, found) == ("20480", "20480", "True")
    assert int(peak) - int(before) < 200  # the decoded picture alone would be 1200 MiB
