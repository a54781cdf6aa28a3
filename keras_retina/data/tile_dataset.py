"""Large annotated pictures -> tiles with their boxes (COCO JSON and picture files), so `train`
sees small objects at their real size.

`tile_dataset(data_config, output_dir, tile, overlap=0.2, rule="visible", min_visible=0.6,
cut="ignore", empty="keep", image_format="jpg")`:

- opens the data flags' training and validation sources (`splits.open_sources`: COCO JSON,
  Pascal VOC, YOLO, CSV; TIFFs of any size are taken here, `images.read_by_windows`). The split
  is by picture, before tiling (--val_annotations, a data.yaml's val split or --val_fraction's
  `held_out` pictures): all tiles of one picture land in one split;
- cuts each picture into `tile` x `tile` windows overlapping by `overlap` (`ops.tiles`), each
  read alone (`ops.large_picture`: memory follows the tile, not the picture);
- a box goes to a tile by `rule`: "visible" when at least `min_visible` of its area is inside
  the tile, "centre" when its centre is; it is clipped to the tile. A box the tile cuts that the
  rule leaves out is, with `cut="ignore"`, written as a crowd box (`iscrowd: 1`: evaluation
  ignores detections on it, training leaves it out, as COCO's crowd regions), or dropped with
  `cut="drop"`. A crowd box of the source is clipped and stays a crowd box;
- `empty="keep"` writes tiles without boxes too (the background, as negatives); "drop" leaves
  them out;
- writes `output_dir/<split>/<picture>_y<y0>_x<x0>.<jpg|png>` and `output_dir/<split>.json`
  (COCO: the label map's ids and names; each tile's entry also names its "source_file" and its
  "offset" [x0, y0] in it).

Returns {split: {"annotations": path, "images": folder, "pictures", "tiles", "boxes", "cut"}}.
"""

import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from keras_retina.data.data_config import DataConfig
from keras_retina.data.splits import open_sources
from keras_retina.errors import UsageError
from keras_retina.files import replace_atomically, write_json
from keras_retina.ops import boxes as box_lib
from keras_retina.ops import images as image_lib
from keras_retina.ops.large_picture import open_large_picture
from keras_retina.ops.tiles import boxes_in_window, iter_windows

RULES = ("visible", "centre")
CUTS = ("ignore", "drop")
EMPTY = ("keep", "drop")


def tile_dataset(data_config: DataConfig, output_dir: str, tile: int, overlap: float = 0.2, rule: str = "visible",
                 min_visible: float = 0.6, *, cut: str = "ignore", empty: str = "keep", image_format: str = "jpg",
                 progress: Callable[[str], None] = print) -> dict:
    for name, value, allowed in (("rule", rule, RULES), ("cut", cut, CUTS), ("empty", empty, EMPTY),
                                 ("image_format", image_format, ("jpg", "png"))):
        if value not in allowed:
            raise UsageError(f"--tile_{name}={value}: choose one of {', '.join(allowed)}.")
    with image_lib.read_by_windows():
        sources = open_sources(data_config, need_train=False)
    written = {}
    for split, source in (("train", sources.train), ("val", sources.val)):
        if source is None:
            continue
        if not hasattr(source, "images"):
            raise UsageError(f"{source.name}: tiling reads annotation files (COCO JSON, Pascal VOC, YOLO, CSV).")
        written[split] = tile_source(source, os.path.join(output_dir, split), os.path.join(output_dir, f"{split}.json"),
                                     tile, overlap, rule, min_visible=min_visible, cut=cut, empty=empty,
                                     image_format=image_format, progress=progress)
    return written


def tile_source(source, folder, annotations_path, tile, overlap, rule, *, min_visible, cut, empty, image_format,
                progress=print):
    """One split: its tiles into `folder`, their boxes into `annotations_path` (module docstring)."""
    os.makedirs(folder, exist_ok=True)
    images, annotations, cut_count, used = [], [], 0, set()
    for picture in source.images:
        large = open_large_picture(picture["file"])
        try:
            if (large.height, large.width) != tuple(picture["hw"]):
                raise UsageError(f"{picture['file']}: the annotations are for {picture['hw'][1]}x{picture['hw'][0]} "
                                 f"pixels, the picture read window by window is {large.width}x{large.height} (an "
                                 f"EXIF rotation? tiling reads pictures as stored).")
            stem = _unique_stem(os.path.splitext(os.path.basename(picture["file"]))[0], used)
            for window in iter_windows(large.height, large.width, tile, overlap):
                boxes, crowd, cut_here = tile_boxes(picture["boxes"], picture["is_crowd"], window, rule, min_visible,
                                                    cut)
                cut_count += cut_here
                if empty == "drop" and not np.count_nonzero(~crowd):
                    continue
                y0, x0, y1, x1 = window
                name = f"{stem}_y{y0}_x{x0}.{image_format}"
                _save(large.read(window), os.path.join(folder, name), image_format)
                image_id = len(images) + 1
                images.append({"id": image_id, "file_name": name, "height": y1 - y0, "width": x1 - x0,
                               "source_file": os.path.basename(picture["file"]), "offset": [x0, y0]})
                classes = picture["classes"][boxes["index"]]
                for bbox, cls, is_crowd in zip(box_lib.coco_bboxes(boxes["yxyx"]), classes, crowd):
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                        "category_id": int(source.label_map[cls]["id"]),
                                        "bbox": [round(v, 2) for v in bbox],
                                        "area": round(float(bbox[2] * bbox[3]), 2), "iscrowd": int(is_crowd)})
        finally:
            large.close()
        if progress:
            progress(f"{picture['file']}: {large.width}x{large.height}, tiles so far {len(images)}")
    categories = [{"id": int(e["id"]), "name": str(e["name"])} for e in source.label_map]
    write_json({"images": images, "annotations": annotations, "categories": categories}, annotations_path,
               indent=None)
    return {"annotations": annotations_path, "images": folder, "pictures": len(source.images), "tiles": len(images),
            "boxes": sum(1 for a in annotations if not a["iscrowd"]), "cut": cut_count}


def tile_boxes(boxes, is_crowd, window, rule="visible", min_visible=0.6, cut="ignore"):
    """The boxes (yxyx pixels of the picture) that go to `window`: ({"yxyx": [M, 4] clipped, in
    the tile's pixels, "index": [M] rows of `boxes`}, crowd [M] bool, how many the tile cut and
    left out)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    is_crowd = np.asarray(is_crowd, bool).reshape(-1)
    clipped, share, centred = boxes_in_window(boxes, window)
    touches = share > 0
    kept = (share >= min_visible) if rule == "visible" else centred
    kept &= touches
    kept |= is_crowd & touches  # a crowd region stays one, clipped
    left_out = touches & ~kept
    index = np.flatnonzero(kept | (left_out if cut == "ignore" else False))
    crowd = is_crowd[index] | left_out[index]
    return {"yxyx": clipped[index], "index": index}, crowd, int(np.count_nonzero(left_out))


def _unique_stem(stem, used):
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name


def _save(pixels, path, image_format):
    def write(temporary):
        Image.fromarray(pixels).save(temporary, format="JPEG" if image_format == "jpg" else "PNG",
                                     **({"quality": 95} if image_format == "jpg" else {}))

    replace_atomically(path, write)
