import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_retina.data.readers import coco_json
from keras_retina.errors import DataError

from conftest import assert_close
from dirty_data import EXPECTED_AT_READ, write_corpus


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
    examples = list(source.examples())
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
    with pytest.raises(DataError, match=message):
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
    with pytest.raises(DataError, match="image file missing: .*nowhere.jpg"):
        coco_json.read_coco_json(*_write(tmp_path, [], images=images))
    with pytest.raises(DataError, match="missing.json"):
        coco_json.read_coco_json(str(tmp_path / "missing.json"), str(tmp_path))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("dirty")))


def test_without_skip_every_problem_is_named_in_one_error(corpus):
    ann_path, images_dir, _ = corpus
    with pytest.raises(DataError) as error:
        coco_json.read_coco_json(ann_path, images_dir)
    message = str(error.value)
    for name in ("missing.jpg", "corrupt.jpg", "empty.jpg", "resized.jpg", "annotation id 3", "annotation id 5",
                 "annotation id 6", "category_id 42", "annotation id 8 (image 999)", "image id 100 ",
                 "photo.tiff", "annotation id 1 (image 1)",
                 "--skip_bad_examples"):
        assert name in message, name


def test_with_skip_everything_is_counted_and_the_rest_is_clean(corpus):
    ann_path, images_dir, ids = corpus
    source = coco_json.read_coco_json(ann_path, images_dir, skip_bad_examples=True)
    assert dict(source.report.counts) == EXPECTED_AT_READ
    assert {"truncated.jpg", "truncated.png", "corrupt.jpg", "empty.jpg"} == {
        os.path.basename(o.split(":")[0]) for o in source.report.offenders["unreadable_image"]}
    examples = {int(e["image_id"]): e for e in source.examples()}
    kept = {"good.jpg", "gray.png", "rgba.png", "cmyk.jpg", "deep.png", "exif.jpg", "dot.png", "large.jpg",
            "negative.jpg", "palette.png", "exif_stored.jpg"}
    assert sorted(examples) == sorted(ids[n] for n in kept)
    for example in examples.values():
        assert example["image"].dtype == tf.uint8 and example["image"].shape[-1] == 3
        assert np.all(np.isfinite(example["boxes"].numpy()))
    good = examples[ids["good.jpg"]]
    np.testing.assert_allclose(good["boxes"].numpy(), [[5, 10, 35, 30], [40, 50, 48, 64], [0, 0, 48, 64]])
    assert good["is_crowd"].numpy().tolist() == [False, False, True]
    assert np.all(examples[ids["gray.png"]]["image"].numpy() == 90)  # gray -> the same value in R, G, B
    assert np.all(examples[ids["rgba.png"]]["image"].numpy() == 0)  # alpha dropped, colour kept
    cmyk = examples[ids["cmyk.jpg"]]["image"].numpy()
    assert cmyk.shape == (32, 32, 3) and np.all(np.abs(cmyk.mean((0, 1)) - [200, 40, 90]) < 8)  # not inverted
    palette = np.asarray(Image.open(os.path.join(images_dir, "palette.png")).convert("RGB"))
    assert np.array_equal(examples[ids["palette.png"]]["image"].numpy(), palette)
    deep = examples[ids["deep.png"]]["image"].numpy()
    assert deep[0, 0].tolist() == [0, 0, 0] and deep[0, 8].tolist() == [128] * 3 and deep[8, 0, 0] == 255
    rotated = examples[ids["exif.jpg"]]["image"].numpy()
    assert rotated.shape == (60, 40, 3) and rotated[:10].mean() > 200 and rotated[20:].mean() < 30
    assert examples[ids["dot.png"]]["image"].shape == (1, 1, 3)
    assert examples[ids["large.jpg"]]["image"].shape == (3000, 4000, 3)
    assert examples[ids["negative.jpg"]]["boxes"].shape == (0, 4)
    assert examples[ids["palette.png"]]["image"].shape == (16, 16, 3)
    assert examples[ids["exif_stored.jpg"]]["image"].shape == (40, 60, 3)  # JSON gave the stored size


def test_examples_in_a_seeded_order_from_any_position(tiny_coco):
    """ordered_examples: element i depends on (seed, i) alone; each epoch is every image once."""
    source = coco_json.read_coco_json(*tiny_coco["train"])
    count = source.num_examples
    ids = [int(e["image_id"]) for _, e in source.ordered_examples(5, 0).take(2 * count)]
    assert sorted(ids[:count]) == sorted(ids[count:]) == sorted(r["id"] for r in source.images)
    assert ids[:count] != ids[count:]  # each epoch has its own order
    later = [int(e["image_id"]) for _, e in source.ordered_examples(5, count - 3).take(6)]
    assert later == ids[count - 3:count + 3]
    assert [int(e["image_id"]) for _, e in source.ordered_examples(6, 0).take(count)] != ids[:count]


def test_file_names_outside_the_image_folder_are_refused(tmp_path):
    """file_name with ../ or an absolute path: never read; a counted bad image (refused), named."""
    (tmp_path / "secret.png").write_bytes(b"not for the model")
    images = [{"id": 7, "file_name": "gray.png", "height": 40, "width": 60},
              {"id": 8, "file_name": "../secret.png", "height": 4, "width": 4},
              {"id": 9, "file_name": str(tmp_path / "secret.png"), "height": 4, "width": 4},
              {"id": 10, "file_name": "gray.png\u0000.jpg", "height": 4, "width": 4},
              {"id": 11, "file_name": "link.png", "height": 40, "width": 60}]
    paths = _write(tmp_path, [], images=images)
    os.symlink(tmp_path / "images" / "gray.png", tmp_path / "images" / "link.png")  # a link inside: the user's
    with pytest.raises(DataError, match=r"file_name outside the image folder.*image id 8: file_name '../secret.png'"):
        coco_json.read_coco_json(*paths)
    source = coco_json.read_coco_json(*paths, skip_bad_examples=True)
    assert source.report.counts["outside_folder"] == 3 and [r["id"] for r in source.images] == [7, 11]


@pytest.mark.parametrize("categories,message", [
    ([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}], r"'categories': label map ids \[1\] appear more than once"),
    ([{"id": 2**24, "name": "huge"}], "label map ids must be in 0..16777215"),
])
def test_bad_categories_are_named(tmp_path, categories, message):
    with pytest.raises(DataError, match=message):
        coco_json.read_coco_json(*_write(tmp_path, [], categories=categories))


def test_hostile_json_is_a_named_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(DataError, match="deep.json: nested too deeply"):
        coco_json.read_coco_json(str(tmp_path / "deep.json"), str(tmp_path / "images"))
    latin1 = '{"images": [], "categories": [{"id": 1, "name": "caf\xe9"}]}'.encode("latin-1")
    (tmp_path / "latin1.json").write_bytes(latin1)
    with pytest.raises(DataError, match="latin1.json: not valid JSON"):
        coco_json.read_coco_json(str(tmp_path / "latin1.json"), str(tmp_path / "images"))


def test_a_bbox_must_be_four_numbers(tmp_path):
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [5]},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": "1234"},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [1, 2, "x", 4]}]
    source = coco_json.read_coco_json(*_write(tmp_path, anns), skip_bad_examples=True)
    assert source.report.counts["bad_box"] == 3


def test_boxes_of_a_missing_image_are_not_called_outside(tmp_path):
    """A missing picture's size is unknown: its boxes are neither outside nor clipped (and no crash)."""
    images = [{"id": 7, "file_name": "gray.png", "height": 40, "width": 60},
              {"id": 3, "file_name": "gone.jpg", "height": 10, "width": 10}]
    anns = [{"id": 1, "image_id": 3, "category_id": 1, "bbox": [-1, 0, 10, 10]},
            {"id": 2, "image_id": 3, "category_id": 1, "bbox": [50, 50, 10, 10]}]
    source = coco_json.read_coco_json(*_write(tmp_path, anns, images=images), skip_bad_examples=True)
    assert dict(source.report.counts) == {"missing_file": 1, "converted_mode": 1, "negative_image": 1}
