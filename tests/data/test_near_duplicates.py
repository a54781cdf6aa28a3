"""Near-duplicate pictures (`data.near_duplicates`): on a set with known copies (resized,
recompressed, cropped, tiles overlapping by half) every copy is found and no unrelated picture is,
and check-data warns when training and validation share one."""

import io
import json
import os

import numpy as np
from PIL import Image

from keras_retina.data import near_duplicates, synthetic
from keras_retina.data.near_duplicates import find_near_duplicates, fingerprint


def _scene(seed, side=640):
    """A picture with structure at every scale and no repetition: noise at scales of 4-128 px and
    shapes of the demo's palette, from `seed`."""
    rng = np.random.default_rng(seed)
    image = np.zeros((side, side, 3), np.float32)
    for cell in (4, 16, 64, 128):
        coarse = rng.normal(0, 30, (side // cell + 2, side // cell + 2, 3)).astype(np.float32)
        image += np.stack([np.asarray(Image.fromarray(coarse[..., k]).resize((side + 2 * cell,) * 2, Image.BILINEAR))
                           [cell:cell + side, cell:cell + side] for k in range(3)], -1)
    image = (image + 120).clip(0, 255).astype(np.uint8)
    for _ in range(12):
        size = rng.uniform(20, 60)
        y, x = rng.uniform(0, side - size, 2)
        box = np.array([y, x, y + size, x + size])
        synthetic.draw(image, box, *synthetic.CLASSES[int(rng.integers(0, len(synthetic.CLASSES)))])
    return image


def _jpeg(pixels, quality):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_every_known_copy_is_found_and_nothing_else():
    scene = _scene(0)
    pictures, names = [], []
    for y in (0, 128, 256):  # tiles of 256 overlapping by half
        for x in (0, 128, 256):
            pictures.append(scene[y:y + 256, x:x + 256])
            names.append(("tile", y, x))
    photo = _scene(1, 400)
    pictures += [photo, np.asarray(Image.fromarray(photo).resize((240, 240), Image.BILINEAR)), _jpeg(photo, 60),
                 photo[60:340, 40:320], photo.copy()]
    names += [("photo",), ("resized",), ("jpeg",), ("crop",), ("same",)]
    for seed in range(2, 14):  # unrelated pictures of the same kind
        pictures.append(_scene(seed, 300))
        names.append(("other", seed))
    groups, pairs = find_near_duplicates([fingerprint(p) for p in pictures])
    kinds = {(names[i], names[j]): kind for i, j, kind in pairs}
    assert [sorted(names[i] for i in g) for g in groups] == [
        sorted(names[:9]), sorted([("photo",), ("resized",), ("jpeg",), ("crop",), ("same",)])]
    assert kinds[(("photo",), ("same",))] == "exact"
    assert kinds[(("photo",), ("resized",))] == kinds[(("photo",), ("jpeg",))] == "copy"
    assert kinds[(("photo",), ("crop",))] == "overlap"
    tiles = [(a, b) for k, a in enumerate(names[:9]) for b in names[k + 1:9]]
    overlapping = [(a, b) for a, b in tiles if abs(a[1] - b[1]) < 256 and abs(a[2] - b[2]) < 256]
    half = [(a, b) for a, b in overlapping if (256 - abs(a[1] - b[1])) * (256 - abs(a[2] - b[2])) >= 256 * 128]
    assert all(pair in kinds for pair in half)  # every pair sharing half of itself
    assert not [pair for pair in kinds if pair in tiles and pair not in overlapping]  # tiles apart: never


def test_leakage_names_the_pictures_shared_by_the_splits():
    import tensorflow as tf

    from keras_retina.data.source import DatasetSource

    scene = _scene(7, 384)

    def source(pictures, first_id):
        examples = {"image_id": tf.constant(np.arange(first_id, first_id + len(pictures)), tf.int64),
                    "image": tf.constant(np.stack(pictures))}
        return DatasetSource(tf.data.Dataset.from_tensor_slices(examples), [{"id": 1, "name": "a"}])

    train = source([scene[:256, :256], _scene(8, 256), _scene(9, 256)], 1)
    val = source([scene[128:, 128:], _scene(10, 256)], 100)  # overlaps the first training picture by a quarter
    report = near_duplicates.leakage({"train": train, "val": val})
    assert report["pictures"] == 5 and report["across_splits"] == 1
    assert report["groups"] == [{"members": [{"split": "train", "picture": "image id 1", "image_id": 1},
                                             {"split": "val", "picture": "image id 100", "image_id": 100}],
                                 "kinds": ["overlap"]}]
    text = near_duplicates.format_leakage(report)
    assert "WARNING: overlap: train:image id 1, val:image id 100 -- in both training and validation" in text
    assert near_duplicates.format_leakage({"pictures": 3, "groups": [], "across_splits": 0}) == (
        "[leakage] 3 pictures: no copies or overlapping views found.")


def _tiles_dataset(folder):
    """COCO JSON of 12 pictures: 9 tiles of one scene overlapping by half (names t0..t8 spread over
    the alphabet's order with the others) and 3 unrelated pictures; one box each."""
    folder.mkdir()
    scene = _scene(3)
    pictures = {f"t{k}.png": scene[y:y + 256, x:x + 256] for k, (y, x) in enumerate(
        (y, x) for y in (0, 128, 256) for x in (0, 128, 256))}
    pictures.update({f"other{k}.png": _scene(20 + k, 256) for k in range(3)})
    images, annotations = [], []
    for n, (name, pixels) in enumerate(sorted(pictures.items()), start=1):
        Image.fromarray(pixels).save(folder / name)
        images.append({"id": n, "file_name": name, "height": 256, "width": 256})
        annotations.append({"id": n, "image_id": n, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500,
                            "iscrowd": 0})
    path = folder / "labels.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "tree"}]}))
    return str(path), str(folder)


def test_val_fraction_keeps_a_scene_on_one_side(tmp_path, monkeypatch, capsys):
    """By name the tiles of one scene land on both sides; by scene (the default) all follow the first
    tile's name, and a model_dir made before --val_split resumes on its split by name."""
    import dataclasses

    from keras_retina.data.data_config import DataConfig, saved_data_settings
    from keras_retina.data.splits import held_out, open_sources
    from keras_retina.model_dir import ModelDir
    from keras_retina.training.same_data import as_made as _as_made

    monkeypatch.setenv("KERAS_RETINA_HOME", str(tmp_path / "home"))  # the fingerprints' cache
    annotations, folder = _tiles_dataset(tmp_path / "pictures")
    tiles = [f"t{k}.png" for k in range(9)]
    fraction = 0.5
    by_name = {name for name in tiles if held_out(name, fraction)}
    assert 0 < len(by_name) < 9  # by name, the scene is on both sides
    config = DataConfig(train_annotations=annotations, train_images=folder, val_fraction=fraction)
    assert config.val_split == "scenes"
    sides = {}
    for split in ("scenes", "names"):
        sources = open_sources(dataclasses.replace(config, val_split=split))
        sides[split] = {os.path.basename(i["file"]) for i in sources.val.images}
    assert sides["names"] & set(tiles) == by_name
    assert sides["scenes"] & set(tiles) in (set(), set(tiles))  # one side for the whole scene
    assert (sides["scenes"] & set(tiles)) == (set(tiles) if held_out("t0.png", fraction) else set())
    assert "picture(s) follow a copy or an overlapping view" in capsys.readouterr().out
    assert os.listdir(tmp_path / "home" / "fingerprints")  # cached: the next start decodes nothing
    # a config.json written before --val_split: read and resumed as made
    assert saved_data_settings({"val_fraction": 0.5})["val_split"] == "names"
    assert saved_data_settings({"val_fraction": 0.0})["val_split"] == "scenes"  # no split to keep: resumes
    from keras_retina.training.same_data import check_same_data

    plain = DataConfig(train_annotations=annotations, train_images=folder)
    unsplit = ModelDir(str(tmp_path / "old_unsplit"))
    unsplit.write_label_map([{"id": 1, "name": "tree"}])
    unsplit.write_config({"model": {}, "train": {}, "data": {k: v for k, v in dataclasses.asdict(plain).items()
                                                             if k != "val_split"}})
    check_same_data(unsplit, [{"id": 1, "name": "tree"}], plain)  # a run made before, without --val_fraction
    run = ModelDir(str(tmp_path / "old_run"))
    old = {k: v for k, v in dataclasses.asdict(config).items() if k != "val_split"}
    run.write_config({"model": {}, "train": {}, "data": old})
    assert _as_made(run, config).val_split == "names"
    run.write_config({"model": {}, "train": {}, "data": json.loads(json.dumps(dataclasses.asdict(config)))})
    assert _as_made(run, config).val_split == "scenes"


def test_a_training_start_warns_when_its_splits_share_a_scene(tmp_path, monkeypatch):
    from keras_retina.data.readers.coco_json import read_coco_json

    monkeypatch.setenv("KERAS_RETINA_HOME", str(tmp_path / "home"))
    annotations, folder = _tiles_dataset(tmp_path / "pictures")
    source = read_coco_json(annotations, folder)
    tiles = [i for i, e in enumerate(source.images) if os.path.basename(e["file"]).startswith("t")]
    others = [i for i, e in enumerate(source.images) if i not in tiles]
    train, val = source.subset(tiles[:5] + others, "train"), source.subset(tiles[5:], "val")
    warning = near_duplicates.split_warning(train, val)
    assert warning.startswith("WARNING: training and validation share 1 scene(s)") and "t0.png" in warning
    assert near_duplicates.split_warning(source.subset(tiles, "train"), source.subset(others, "val")) == ""


def test_flat_pictures_are_not_copies_of_one_another(tmp_path, monkeypatch):
    """Blank frames of different greys have no shape to hash: no copies (their thumbnails' bits would
    all agree); a scene taking most of the pictures is named when a split by scenes cannot hold out."""
    import pytest

    from keras_retina.data.data_config import DataConfig
    from keras_retina.data.splits import open_sources
    from keras_retina.errors import UsageError

    flats = [np.full((120, 160, 3), value, np.uint8) for value in (0, 40, 90, 140, 200, 255)]
    assert all(fingerprint(p)[1] is None for p in flats)
    assert near_duplicates.dhash(np.zeros((8, 9))) == 0  # without the flatness test every blank hashes alike
    groups, _ = find_near_duplicates([fingerprint(p) for p in flats + [flats[2].copy()]])
    assert groups == [[2, 6]]  # the identical one only

    monkeypatch.setenv("KERAS_RETINA_HOME", str(tmp_path / "home"))
    annotations, folder = _tiles_dataset(tmp_path / "pictures")  # 9 tiles of one scene, 3 others
    with pytest.raises(UsageError, match=r"9 of the 12 pictures of .* are one scene .* --val_split=names"):
        open_sources(DataConfig(train_annotations=annotations, train_images=folder, val_fraction=0.001))
