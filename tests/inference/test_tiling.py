"""Detection by tiles: boxes mapped back exactly, copies from overlapping tiles removed, objects cut
by a tile border merged, through `predict --tile` too.

A stand-in detector reads objects off the pixels: each object is a rectangle of its own colour
on black, and the detector returns the extent of every colour it sees in a tile (normalised to
the tile, score 0.9, the class its colour encodes). So what a tile holds of each object is known
to the pixel, and the tiled result can be checked against the true boxes.
"""

import json

import numpy as np
import pytest
import tifffile

from keras_retina.errors import UsageError
from keras_retina.inference.pictures import _tile_progress
from keras_retina.inference.tiling import detect_tiled, merge_cut_boxes
from keras_retina.ops.large_picture import ArrayPicture
from keras_retina.ops.tiles import count_windows, iter_windows, tile_windows

from command_line import keras_retina
from conftest import make_tiny_model_dir

# (y0, x0, y1, x1, class): tile 256, overlap 0.25 -> windows start at 0, 192, 384, ... (stride 192)
OBJECTS = [(20, 20, 40, 40, 1),       # inside the first tile only
           (20, 200, 40, 240, 2),     # inside the overlap of two tiles: found twice, kept once
           (60, 150, 90, 300, 1),     # 150 wide, longer than the overlap: cut by every tile that holds it
           (960, 970, 1000, 1000, 3),  # at the picture's corner
           (500, 500, 520, 530, 2)]


def _colour(n):
    return np.array([40 + 40 * n, 255 - 30 * n, 100 + 20 * n], np.uint8)


def _picture():
    pixels = np.zeros((1000, 1000, 3), np.uint8)
    for n, (y0, x0, y1, x1, _) in enumerate(OBJECTS):
        pixels[y0:y1, x0:x1] = _colour(n)
    return pixels


def stand_in(batch):
    """The detector: per tile, each object colour's extent (normalised), score 0.9."""
    out = []
    for tile in batch:
        size = np.array(tile.shape[:2] * 2, np.float64)
        boxes, classes = [], []
        for n, (_, _, _, _, cls) in enumerate(OBJECTS):
            ys, xs = np.nonzero(np.all(tile == _colour(n), axis=-1))
            if ys.size:
                boxes.append(np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]) / size)
                classes.append(cls)
        out.append((np.array(boxes).reshape(-1, 4), np.full(len(boxes), 0.9), np.array(classes, np.int64),
                    [f"class {c}" for c in classes]))
    return out


def _boxes(found):
    return sorted([*np.round(box).astype(int).tolist(), int(cls)] for box, cls in zip(found.boxes, found.classes))


def test_tiles_map_boxes_back_and_remove_the_copies_of_overlapping_tiles():
    found = detect_tiled(stand_in, ArrayPicture(_picture()), tile=256, overlap=0.25, batch_size=3)
    assert found.tiles == 25  # starts 0, 192, 384, 576 and 744 (the last ends at the edge)
    boxes = _boxes(found)
    for y0, x0, y1, x1, cls in (OBJECTS[0], OBJECTS[1], OBJECTS[3], OBJECTS[4]):
        assert boxes.count([y0, x0, y1, x1, cls]) == 1  # exact, and once
    cut = [b for b in boxes if b[0] == 60]
    assert sorted(cut) == [[60, 150, 90, 256, 1], [60, 192, 90, 300, 1]]  # two parts: IoU 64/150 < 0.5


def test_merge_joins_an_object_cut_by_a_tile_border():
    found = detect_tiled(stand_in, ArrayPicture(_picture()), tile=256, overlap=0.25, merge="merge")
    assert _boxes(found) == sorted([list(o) for o in OBJECTS])


def test_weighted_box_fusion_gives_every_object_once_and_whole():
    """wbf: the copies of an object inside two tiles' overlap are one box (their average: exact here),
    and the object longer than the overlap, cut by every tile holding it, is the box around its parts."""
    found = detect_tiled(stand_in, ArrayPicture(_picture()), tile=256, overlap=0.25, merge="wbf")
    assert _boxes(found) == sorted([list(o) for o in OBJECTS])
    assert found.scores.tolist() == [0.9] * len(OBJECTS)


def test_a_scaled_tile_covers_more_of_the_picture():
    found = detect_tiled(stand_in, ArrayPicture(_picture()), tile=128, overlap=0.25, scale=0.5, merge="merge")
    assert found.tiles == 25  # 128 model pixels = 256 picture pixels
    for got, want in zip(_boxes(found), sorted([list(o) for o in OBJECTS])):
        assert np.abs(np.array(got[:4]) - want[:4]).max() <= 2 and got[4] == want[4]  # resampling: a pixel or two


def test_greedy_merging_joins_cut_boxes_only_and_keeps_classes_apart():
    boxes = np.array([[0, 0, 10, 10], [0, 5, 10, 20], [0, 6, 10, 19], [50, 50, 60, 60], [40, 40, 80, 80]],
                     np.float64)
    scores, classes = np.array([0.5, 0.9, 0.8, 0.7, 0.3]), np.array([1, 1, 2, 1, 1])
    cut = np.array([True, False, False, False, False])  # the first ends at a tile's border
    merged, kept_scores, kept_classes = merge_cut_boxes(boxes, scores, classes, cut)
    order = np.argsort(-kept_scores)
    # the cut box joins the best box overlapping it; the box inside the large one stays its own
    assert merged[order].tolist() == [[0, 0, 10, 20], [0, 6, 10, 19], [50, 50, 60, 60], [40, 40, 80, 80]]
    assert kept_scores[order].tolist() == [0.9, 0.8, 0.7, 0.3] and kept_classes[order].tolist() == [1, 2, 1, 1]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny") / "run")


def test_predict_tile_on_a_tiled_tiff(tmp_path, tiny_model_dir):
    """`predict --tile` on a tiled TIFF: the detections are in the picture's own pixels, the
    drawing is the picture's preview."""
    tifffile.imwrite(tmp_path / "scan.tif", _picture()[:700, :900], photometric="rgb", tile=(256, 256),
                     compression="zlib")
    result = keras_retina("predict", f"--model_dir={tiny_model_dir}", "--tile=64", "--tile_overlap=0.25",
                          "--tile_merge=merge", "--nms_score_threshold=0.0", "--tile_whole_picture", "scan.tif",
                          "--output_dir=out", "--save_annotations=coco", "--prelabel_threshold=0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    prelabelled = json.loads((tmp_path / "out" / "prelabels_coco.json").read_text())  # every detection, threshold 0
    assert prelabelled["images"] == [{"id": 1, "file_name": "scan.tif", "height": 700, "width": 900}]
    assert sorted(a["score"] for a in prelabelled["annotations"]) == sorted(
        d["score"] for d in json.loads((tmp_path / "out" / "detections.json").read_text()))
    assert f"scan.tif: 900 x 700, {len(tile_windows(700, 900, 64, 0.25))} tiles" in result.stdout
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert detections and all(0 <= d["bbox"][0] and d["bbox"][0] + d["bbox"][2] <= 900.01 and
                              d["bbox"][1] + d["bbox"][3] <= 700.01 for d in detections)
    assert (tmp_path / "out" / "scan.png").is_file()
    count = len(tile_windows(700, 900, 64, 0.25))
    result = keras_retina("predict", f"--model_dir={tiny_model_dir}", "--tile=64", "--tile_overlap=0.25",
                          "--max_tiles=100", "scan.tif", "--output_dir=out2", cwd=tmp_path)
    assert result.returncode == 2 and f"900 x 700 pixels need {count:,} tiles of 64 pixels, above --max_tiles=100" \
        in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]


class _HeaderOnly:
    """What a 1 MB TIFF may claim: a million pixels a side, nothing readable behind it."""
    path, height, width = "claims.tif", 1 << 20, 1 << 20

    def read(self, window):
        raise AssertionError("no tile may be read before the count is checked")


def test_a_header_that_claims_millions_of_tiles_is_refused_before_any_work():
    import resource
    import time

    per_side = len(range(0, (1 << 20) - 256, 192)) + 1  # stride 192, the last window moved back to the edge
    assert count_windows(1 << 20, 1 << 20, 256, 0.25) == per_side ** 2 == 29_822_521
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time()
    with pytest.raises(UsageError, match=r"claims.tif: 1,048,576 x 1,048,576 pixels need 29,822,521 tiles of 256 "
                                         r"pixels, above --max_tiles=10,000; raise --max_tiles"):
        detect_tiled(stand_in, _HeaderOnly(), tile=256, overlap=0.25)
    assert time.time() - start < 1 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 20 * 1024
    for size in ((700, 900, 64, 0.25), (64, 64, 256, 0.2), (1000, 333, 100, 0.0)):
        assert list(iter_windows(*size)) == tile_windows(*size) and count_windows(*size) == len(tile_windows(*size))


def test_long_tiled_pictures_print_their_progress(capsys):
    progress = _tile_progress("big.tif", every=0.0)
    progress(3, 12)
    progress(12, 12)  # the end: the picture's own line follows
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("big.tif: 3 of 12 tiles, ") and lines[0].endswith(" left")


def test_tile_settings_are_one_checked_object():
    import dataclasses

    from keras_retina import TileSettings

    settings = TileSettings(tile=256, overlap=0.25, merge="merge")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.tile = 128
    for kwargs, message in ((dict(tile=0), "tile=0 must be a tile size"), (dict(tile=64, overlap=1.0), "overlap=1.0"),
                            (dict(tile=64, scale=0), "scale=0 must be in"), (dict(tile=64, merge="vote"), "vote")):
        with pytest.raises(UsageError, match=message):
            TileSettings(**kwargs)
    found = detect_tiled(stand_in, ArrayPicture(_picture()), settings=TileSettings(tile=256, overlap=0.25,
                                                                                  merge="merge"))
    assert _boxes(found) == _boxes(detect_tiled(stand_in, ArrayPicture(_picture()), tile=256, overlap=0.25,
                                                merge="merge"))
