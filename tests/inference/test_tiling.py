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

from keras_retina.inference.tiling import detect_tiled, merge_cut_boxes
from keras_retina.ops.large_picture import ArrayPicture
from keras_retina.ops.tiles import tile_windows

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
                          "--output_dir=out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"scan.tif: 900 x 700, {len(tile_windows(700, 900, 64, 0.25))} tiles" in result.stdout
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert detections and all(0 <= d["bbox"][0] and d["bbox"][0] + d["bbox"][2] <= 900.01 and
                              d["bbox"][1] + d["bbox"][3] <= 700.01 for d in detections)
    assert (tmp_path / "out" / "scan.png").is_file()
