"""`tile-data`: large annotated pictures -> tiles with exact boxes, one split per picture.

The hand-built picture is 300 x 400 with tiles of 200 and no overlap: windows (0, 0), (0, 200),
(100, 0), (100, 200) (the lower row moved up to end at the edge, so rows 100-200 are in two).
"""

import json
import os

import numpy as np
import pytest
import tifffile
from PIL import Image

from keras_retina.data.data_config import DataConfig
from keras_retina.data.tile_dataset import tile_boxes, tile_dataset

from command_line import keras_retina
from conftest import TINY

BOXES = np.array([[10, 10, 50, 50],      # A: in the first tile only
                  [150, 150, 190, 250],  # B: across the border at x 200: half in each column
                  [280, 390, 300, 400],  # C: at the picture's corner
                  [120, 20, 130, 30],    # D: smaller than the rows two tiles share: whole in both
                  [0, 300, 20, 320]],    # E: a crowd region
                 np.float64)
CROWD = np.array([False, False, False, False, True])


def _tile(window, **rule):
    found, crowd, cut = tile_boxes(BOXES, CROWD, window, **rule)
    return sorted([*np.round(b).astype(int).tolist(), bool(c), int(i)]
                  for b, c, i in zip(found["yxyx"], crowd, found["index"])), cut


def test_boxes_of_each_tile_by_the_visible_rule():
    assert _tile((0, 0, 200, 200)) == ([[10, 10, 50, 50, False, 0], [120, 20, 130, 30, False, 3],
                                        [150, 150, 190, 200, True, 1]], 1)  # B cut: half visible < 0.6
    assert _tile((0, 200, 200, 400)) == ([[0, 100, 20, 120, True, 4], [150, 0, 190, 50, True, 1]], 1)
    assert _tile((100, 0, 300, 200)) == ([[20, 20, 30, 30, False, 3], [50, 150, 90, 200, True, 1]], 1)
    assert _tile((100, 200, 300, 400)) == ([[50, 0, 90, 50, True, 1], [180, 190, 200, 200, False, 2]], 1)
    assert _tile((0, 0, 200, 200), cut="drop") == ([[10, 10, 50, 50, False, 0], [120, 20, 130, 30, False, 3]], 1)
    assert _tile((0, 0, 200, 200), min_visible=0.5)[0][2] == [150, 150, 190, 200, False, 1]  # half is enough


def test_the_centre_rule_gives_a_cut_box_to_the_tile_holding_its_centre():
    assert [150, 0, 190, 50, False, 1] in _tile((0, 200, 200, 400), rule="centre")[0]  # centre x = 200
    assert [150, 150, 190, 200, True, 1] in _tile((0, 0, 200, 200), rule="centre")[0]


def _dataset(root, count=6, tiff=False):
    """`count` 300 x 400 pictures with the boxes above (E as a crowd), COCO JSON."""
    folder = root / "pictures"
    folder.mkdir()
    images, annotations = [], []
    for n in range(count):
        pixels = np.full((300, 400, 3), 30 * n, np.uint8)
        name = f"scan{n}.tif" if tiff and n == 0 else f"scan{n}.png"
        if name.endswith(".tif"):
            tifffile.imwrite(folder / name, pixels, photometric="rgb", tile=(128, 128), compression="zlib")
        else:
            Image.fromarray(pixels).save(folder / name)
        images.append({"id": n + 1, "file_name": name, "height": 300, "width": 400})
        for (y0, x0, y1, x1), crowd in zip(BOXES, CROWD):
            annotations.append({"id": len(annotations) + 1, "image_id": n + 1, "category_id": 3 + int(x0 > 100),
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                                "iscrowd": int(crowd)})
    path = root / "labels.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 3, "name": "tree"}, {"id": 4, "name": "car"}]}))
    return str(path), str(folder)


def test_tiles_and_their_coco_json_and_a_split_by_picture(tmp_path):
    annotations, folder = _dataset(tmp_path, tiff=True)
    config = DataConfig(train_annotations=annotations, train_images=folder, val_fraction=0.4)
    written = tile_dataset(config, str(tmp_path / "tiles"), 200, overlap=0.0, progress=None)
    sources = {}
    for split in ("train", "val"):
        coco = json.loads(open(written[split]["annotations"]).read())
        assert [c["name"] for c in coco["categories"]] == ["tree", "car"]
        sources[split] = {image["source_file"] for image in coco["images"]}
        assert len(coco["images"]) == 4 * len(sources[split])  # every tile kept (empty="keep")
        for image in coco["images"]:
            with Image.open(os.path.join(written[split]["images"], image["file_name"])) as tile:
                assert tile.size == (image["width"], image["height"]) == (200, 200)
        first = next(i for i in coco["images"] if i["offset"] == [0, 0])
        boxes = sorted((a["bbox"], a["iscrowd"], a["category_id"]) for a in coco["annotations"]
                       if a["image_id"] == first["id"])
        assert boxes == [([10, 10, 40, 40], 0, 3), ([20, 120, 10, 10], 0, 3), ([150, 150, 50, 40], 1, 4)]
    assert not sources["train"] & sources["val"] and len(sources["train"] | sources["val"]) == 6
    assert "scan0.tif" in sources["train"] | sources["val"]  # a TIFF, read window by window


def test_tile_data_then_train_on_the_tiles(tmp_path):
    """The command line: tile-data writes the tiles and says how to train on them; train runs on them."""
    annotations, folder = _dataset(tmp_path, count=4)
    result = keras_retina("tile-data", f"--train_annotations={annotations}", f"--train_images={folder}", "--tile=128",
                          "--tile_overlap=0.25", "--tile_empty=drop", "--tiles_dir=tiles", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train: 4 pictures -> " in result.stdout and "Train on them: keras_retina train" in result.stdout
    coco = json.loads((tmp_path / "tiles" / "train.json").read_text())
    assert all(any(not a["iscrowd"] for a in coco["annotations"] if a["image_id"] == i["id"])
               for i in coco["images"])  # --tile_empty=drop
    flags = [f"--{k}={v}" for k, v in TINY.items() if k != "image_size"]
    result = keras_retina("train", *flags, "--image_size=128", "--train_annotations=tiles/train.json",
                          "--train_images=tiles/train", "--train_steps=2", "--batch_size=2", "--reference_batch_size=2",
                          "--lr_boundaries=", "--warmup_steps=0", "--model_dir=run", "--verbose=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2


@pytest.mark.parametrize("flag, message", [("--tile=0", "tile-data needs --tiles_dir"),
                                           ("--tile_rule=middle", "tile_rule")])
def test_bad_tile_data_flags_are_one_line(tmp_path, flag, message):
    result = keras_retina("tile-data", "--train_annotations=x.json", "--tiles_dir=t", flag, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr
