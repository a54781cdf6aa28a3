import json

import numpy as np
import pytest
from PIL import Image

from conftest import assert_close
from keras_retina.data import coco_json


def _write(tmp_path, annotations, categories=None, images=None):
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.fromarray(np.full((40, 60), 128, np.uint8)).save(tmp_path / "images" / "gray.png")  # grayscale
    Image.fromarray(np.zeros((30, 20, 4), np.uint8)).save(tmp_path / "images" / "rgba.png")
    coco = {
        "images": images or [{"id": 7, "file_name": "gray.png", "height": 40, "width": 60},
                             {"id": 9, "file_name": "rgba.png", "height": 30, "width": 20}],
        "categories": categories or [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": annotations,
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    return str(path), str(tmp_path / "images")


def test_reads_categories_boxes_crowd_and_negatives(tmp_path):
    anns = [{"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 5, 20, 30], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [0, 0, 60, 40], "area": 2400, "iscrowd": 1}]
    source = coco_json.read_coco_json(*_write(tmp_path, anns))
    # Category ids map to contiguous classes in ascending id order; names kept.
    assert source.label_map == [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    examples = list(source.dataset())
    assert [int(e["image_id"]) for e in examples] == [7, 9]
    first, negative = examples
    assert_close(first["boxes"], [[5, 10, 35, 30], [0, 0, 40, 60]])  # xywh -> yxyx
    assert list(first["classes"].numpy()) == [1, 0]
    assert list(first["is_crowd"].numpy()) == [False, True]
    assert_close(first["area"], [400, 2400])
    assert first["image"].shape == (40, 60, 3) and first["image"].dtype == "uint8"  # gray -> RGB
    assert negative["boxes"].shape == (0, 4) and negative["image"].shape == (30, 20, 3)  # RGBA -> RGB


@pytest.mark.parametrize("annotation,message", [
    ({"id": 5, "image_id": 7, "category_id": 99, "bbox": [1, 1, 5, 5]}, "annotation id 5.*category_id 99"),
    ({"id": 6, "image_id": 7, "category_id": 1, "bbox": [1, 1, -2, 5]}, "annotation id 6.*bbox"),
    ({"id": 8, "image_id": 3, "category_id": 1, "bbox": [1, 1, 5, 5]}, "image id not in 'images': annotation id 8"),
])
def test_bad_annotations_are_named(tmp_path, annotation, message):
    with pytest.raises(ValueError, match=message):
        coco_json.read_coco_json(*_write(tmp_path, [annotation]))


def test_zero_size_boxes_are_dropped_and_counted(tmp_path):
    """COCO 2017 train has two boxes of height 0: counted drops, never an error."""
    source = coco_json.read_coco_json(*_write(tmp_path, [
        {"id": 6, "image_id": 7, "category_id": 1, "bbox": [10.65, 20.33, 1.03, 0.0]}]))
    assert source.report.counts["empty_box"] == 1 and source.report.counts["negative_image"] == 2
    assert source.report.offenders["empty_box"] == ["annotation id 6 (image 7): bbox [10.65, 20.33, 1.03, 0.0]"]
    assert not source.report.problems()


def test_missing_image_file_is_named(tmp_path):
    images = [{"id": 1, "file_name": "nowhere.jpg", "height": 10, "width": 10}]
    with pytest.raises(ValueError, match="image file missing: .*nowhere.jpg"):
        coco_json.read_coco_json(*_write(tmp_path, [], images=images))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        coco_json.read_coco_json(str(tmp_path / "missing.json"), str(tmp_path))
