"""Dirty data (issue #6): a corpus of every kind of bad image and annotation, generated here,
through the COCO JSON reader, the TFRecord reader, the training pipeline and the CLI."""

import io
import json
import re
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from conftest import TINY_FLAGS, assert_same_final_weights, tf_feature, tfds_records
from keras_retina.data import cleaning, coco_json, pipeline, tfrecord
from keras_retina.label_encoder import LabelEncoder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jpeg(array, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", **kwargs)
    return buffer.getvalue()


def _scene(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


def write_corpus(root):
    """Every case of cleaning.KINDS on disk; returns (annotations path, images dir)."""
    images_dir = os.path.join(root, "images")
    os.makedirs(images_dir)

    def path(name):
        return os.path.join(images_dir, name)

    Image.fromarray(_scene(48, 64)).save(path("good.jpg"))
    Image.fromarray(np.full((40, 60), 90, np.uint8)).save(path("gray.png"))
    Image.fromarray(np.zeros((30, 20, 4), np.uint8)).save(path("rgba.png"))
    Image.new("RGB", (32, 32), (200, 40, 90)).convert("CMYK").save(path("cmyk.jpg"), quality=95)
    Image.fromarray(np.array([[0, 32768], [65535, 65535]], np.uint16).repeat(8, 0).repeat(8, 1)).save(
        path("deep.png"))  # 16-bit grayscale
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 high x 60 wide; shown rotated 90 degrees: 60 high x 40 wide
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:, :10] = 255  # a white band on the stored left edge -> the top after rotation
    Image.fromarray(stored).save(path("exif.jpg"), exif=exif)
    Image.fromarray(stored).save(path("exif_stored.jpg"), exif=exif)  # annotated on the stored pixels
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(path("dot.png"))
    Image.new("RGB", (4000, 3000), (30, 60, 90)).save(path("large.jpg"), quality=50)  # cheap to encode
    Image.fromarray(_scene(20, 20)).save(path("negative.jpg"))
    with open(path("corrupt.jpg"), "wb") as f:
        f.write(np.random.default_rng(1).integers(0, 255, 2000, dtype=np.uint8).tobytes())
    open(path("empty.jpg"), "wb").close()
    png = io.BytesIO()
    Image.fromarray(_scene(64, 64)).save(png, "PNG")
    with open(path("truncated.png"), "wb") as f:
        f.write(png.getvalue()[: len(png.getvalue()) // 2])
    with open(path("truncated.jpg"), "wb") as f:
        whole = _jpeg(_scene(64, 64))
        f.write(whole[: len(whole) // 2])
    Image.fromarray(_scene(50, 50)).save(path("resized.jpg"))  # the JSON claims another size
    Image.fromarray(_scene(16, 16)).convert("P").save(path("palette.png"))
    Image.fromarray(_scene(16, 16)).save(path("photo.tiff"))  # PIL reads it, TensorFlow does not
    Image.fromarray(_scene(16, 16)).save(path("dup_a.jpg"))
    Image.fromarray(_scene(16, 16)).save(path("dup_b.jpg"))

    names = ["good.jpg", "gray.png", "rgba.png", "cmyk.jpg", "deep.png", "exif.jpg", "dot.png", "large.jpg",
             "negative.jpg", "corrupt.jpg", "empty.jpg", "truncated.png", "truncated.jpg", "missing.jpg",
             "resized.jpg", "palette.png", "photo.tiff", "exif_stored.jpg"]
    sizes = {"good.jpg": (48, 64), "gray.png": (40, 60), "rgba.png": (30, 20), "cmyk.jpg": (32, 32),
             "deep.png": (16, 16), "exif.jpg": (60, 40), "dot.png": (1, 1), "large.jpg": (3000, 4000),
             "negative.jpg": (20, 20), "truncated.png": (64, 64), "truncated.jpg": (64, 64),
             "missing.jpg": (10, 10), "resized.jpg": (99, 99), "corrupt.jpg": (10, 10), "empty.jpg": (10, 10),
             "palette.png": (16, 16), "photo.tiff": (16, 16), "exif_stored.jpg": (40, 60)}
    images = [{"id": i + 1, "file_name": n, "height": sizes[n][0], "width": sizes[n][1]}
              for i, n in enumerate(names)]
    # Two pictures under one image id: whose are its boxes? Both are out.
    images += [{"id": 100, "file_name": n, "height": 16, "width": 16} for n in ("dup_a.jpg", "dup_b.jpg")]
    ids = {n: i + 1 for i, n in enumerate(names)}
    box = [4, 4, 10, 10]
    annotations = [
        {"id": 1, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [10, 5, 20, 30]},
        {"id": 2, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [50, 40, 30, 30]},  # clipped
        {"id": 3, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [5, 5, 0, 10]},  # zero width
        {"id": 4, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [5, 5, 10, -3]},  # negative
        {"id": 5, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [float("nan"), 5, 10, 10]},
        {"id": 6, "image_id": ids["good.jpg"], "category_id": 3, "bbox": [100, 100, 10, 10]},  # outside
        {"id": 7, "image_id": ids["good.jpg"], "category_id": 42, "bbox": box},  # unknown category
        {"id": 8, "image_id": 999, "category_id": 3, "bbox": box},  # unknown image (does not claim id 8)
        {"id": 1, "image_id": ids["good.jpg"], "category_id": 3, "bbox": box},  # duplicate of id 1
        {"id": 19, "image_id": 100, "category_id": 3, "bbox": box},
        {"id": 20, "image_id": ids["palette.png"], "category_id": 3, "bbox": box},
        {"id": 9, "image_id": ids["good.jpg"], "category_id": 5, "bbox": [0, 0, 64, 48], "iscrowd": 1},
        {"id": 10, "image_id": ids["gray.png"], "category_id": 5, "bbox": [10, 10, 20, 20]},
        {"id": 11, "image_id": ids["rgba.png"], "category_id": 3, "bbox": [2, 2, 10, 10]},
        {"id": 12, "image_id": ids["cmyk.jpg"], "category_id": 3, "bbox": box},
        {"id": 13, "image_id": ids["deep.png"], "category_id": 3, "bbox": box},
        {"id": 14, "image_id": ids["exif.jpg"], "category_id": 5, "bbox": [5, 0, 30, 10]},  # the band
        {"id": 15, "image_id": ids["dot.png"], "category_id": 3, "bbox": [0, 0, 1, 1]},
        {"id": 16, "image_id": ids["large.jpg"], "category_id": 5, "bbox": [100, 200, 2000, 1500]},
        {"id": 17, "image_id": ids["truncated.png"], "category_id": 3, "bbox": box},
        {"id": 18, "image_id": ids["truncated.jpg"], "category_id": 3, "bbox": box},
    ]
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog"}]}
    ann_path = os.path.join(root, "dirty.json")
    with open(ann_path, "w") as f:
        json.dump(coco, f)  # NaN is written as NaN, as Python tools do
    return ann_path, images_dir, ids


# Found while reading with --skip_bad_examples: header problems, annotations, and (full decode)
# the truncated files.
EXPECTED_AT_READ = {
    "missing_file": 1, "unreadable_image": 4, "size_mismatch": 1, "duplicate_image_id": 2,
    "unsupported_format": 1,
    "bad_box": 2, "empty_box": 1, "outside_box": 1, "unknown_category": 1, "unknown_image": 1,
    "duplicate_annotation_id": 1,
    "clipped_box": 1, "crowd": 1, "converted_mode": 5, "exif_rotated": 1, "tiny_image": 1,
    "negative_image": 2,
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("dirty")))


def test_without_skip_every_problem_is_named_in_one_error(corpus):
    ann_path, images_dir, _ = corpus
    with pytest.raises(ValueError) as error:
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
    examples = {int(e["image_id"]): e for e in source.dataset()}
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


def test_training_pipeline_on_the_clean_rest_gives_finite_targets(corpus):
    ann_path, images_dir, _ = corpus
    source = coco_json.read_coco_json(ann_path, images_dir, skip_bad_examples=True)
    dataset = pipeline.train_dataset(source.dataset(), LabelEncoder(image_size=64), 64, batch_size=3,
                                     scale_range=(0.8, 1.2), seed=0, repeat=False)
    batches = list(dataset)
    assert len(batches) == 3  # 11 clean images
    for images, targets in batches:
        assert np.all(np.isfinite(images.numpy()))
        assert np.all(np.isfinite(targets["box_targets"].numpy()))


def _tfrecord(path, examples):
    feature = tf_feature
    with tf.io.TFRecordWriter(path) as writer:
        for source_id, encoded, boxes, classes in examples:
            ymin, xmin, ymax, xmax = (list(v) for v in zip(*boxes)) if boxes else ([], [], [], [])
            features = {
                "image/encoded": feature([encoded], "bytes"), "image/format": feature([b"jpeg"], "bytes"),
                "image/source_id": feature([str(source_id).encode()], "bytes"),
                "image/height": feature([32], "int"), "image/width": feature([32], "int"),
                "image/object/bbox/ymin": feature(ymin, "float"), "image/object/bbox/xmin": feature(xmin, "float"),
                "image/object/bbox/ymax": feature(ymax, "float"), "image/object/bbox/xmax": feature(xmax, "float"),
                "image/object/class/label": feature(classes, "int"),
                "image/object/is_crowd": feature([0] * len(classes), "int"),
                "image/object/area": feature([1.0] * len(classes), "float"),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())


DIRTY_RECORDS_COUNTS = {"bad_box": 1, "empty_box": 1, "outside_box": 1, "clipped_box": 1,
                        "unknown_category": 1, "negative_image": 1, "unreadable_image": 1,
                        "duplicate_image_id": 2}


def _dirty_records():
    """(source id, encoded image, normalised yxyx boxes, category ids) with DIRTY_RECORDS_COUNTS.
    Every picture is a different uniform grey, so its mean pixel tells which one it is."""

    def good(n):
        return _jpeg(np.full((32, 32, 3), 30 * n, np.uint8))

    return [
        (1, good(1), [(0.1, 0.1, 0.5, 0.5), (math.nan, 0.1, 0.5, 0.5), (0.5, 0.5, 0.5, 0.9)], [1, 1, 1]),
        (2, b"not an image", [(0.1, 0.1, 0.5, 0.5)], [1]),
        (3, good(3), [(0.1, 0.1, 0.5, 0.5)], [7]),  # category not in the label map
        (4, good(4), [], []),
        (5, good(5), [(1.2, 0.1, 1.5, 0.5), (-0.1, 0.2, 0.6, 0.7)], [1, 1]),  # fully / partly outside
        (6, good(6), [(0.2, 0.2, 0.4, 0.4)], [1]),
        (6, good(7), [(0.6, 0.6, 0.8, 0.8)], [1]),  # the same image id: whose boxes? both left out
    ]


def test_tfrecord_bad_boxes_and_images(tmp_path):
    path = str(tmp_path / "dirty.tfrecord")
    _tfrecord(path, _dirty_records())
    label_map = [{"id": 1, "name": "a"}]
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        list(tfrecord.tfrecord_examples(path, label_map, use_official=False))
    examples = tfrecord.tfrecord_examples(path, label_map, use_official=False, skip_bad_examples=True)
    assert cleaning.count_examples(examples) == 6  # the undecodable one skipped

    # The dirty-data pass names each record by file and number.
    report = cleaning.DataReport("dirty.tfrecord")
    records = tfrecord.record_stream(path, label_map).annotation_records()
    count, unreadable = cleaning.scan_records(records, report, 1, decode=True)
    assert count == 7 and unreadable == [f"{path} record {n} (source_id 6)" for n in (5, 6)] + [
        f"{path} record 1 (source_id 2)"]
    assert dict(report.counts) == DIRTY_RECORDS_COUNTS
    assert report.offenders["unreadable_image"] == [f"{path} record 1 (source_id 2)"]
    assert report.offenders["bad_box"][0] == f"{path} record 0 (source_id 1): box [nan, 0.1, 0.5, 0.5]"
    assert report.offenders["unknown_category"] == [f"{path} record 2 (source_id 3): category 7"]
    report = cleaning.DataReport("without decoding")
    cleaning.scan_records(records, report, 1)
    assert "unreadable_image" not in report.counts and report.counts["duplicate_image_id"] == 2

    dataset = pipeline.train_dataset(examples, LabelEncoder(image_size=64), 64, batch_size=3, seed=0,
                                     repeat=False, shuffle_buffer=0)  # file order: image 1 first
    images, targets = next(iter(dataset))
    assert np.all(np.isfinite(targets["box_targets"].numpy()))
    assert (targets["cls_targets"].numpy()[0] >= 0).sum() > 0  # the good box is still a positive
    # Shuffled through a buffer of encoded records: each decodable image once per pass, in a new
    # order (a picture's grey level names it; flips do not change it).
    means = [[round(float(images.numpy()[0, :32, :32].mean())) for images, _ in pipeline.train_dataset(
        examples, LabelEncoder(image_size=64), 64, batch_size=1, seed=seed, repeat=False, shuffle_buffer=buffer)]
        for seed, buffer in ((0, 0), (0, 10), (1, 10))]
    assert means[0] == [30, 90, 120, 150, 180, 210]  # file order, the undecodable record skipped
    assert all(sorted(m) == means[0] for m in means) and means[1] != means[0] and means[2] != means[1]

    # Training: an error naming the records, or with --skip_bad_examples counted skips and drops
    # in the start-of-training report and summary.json.
    (tmp_path / "labels.json").write_text(json.dumps(label_map))
    data = [f"--train_tfrecord={path}", "--label_map=labels.json"]
    result = _cli("train", *TINY_FLAGS, "--model_dir=run", "--train_steps=2", *data, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "record 0 (source_id 1): box [nan" in result.stderr and "--skip_bad_examples" in result.stderr
    assert "Traceback" not in result.stderr
    result = _cli("train", *TINY_FLAGS, "--model_dir=run", "--train_steps=2", "--skip_bad_examples", *data,
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    start = result.stdout.split("Trained")[0]
    assert re.search(r"skipped\s+1 x cannot be decoded.*record 1 \(source_id 2\)", start), start
    assert re.search(r"dropped\s+1 x box with negative size or NaN", start), start
    assert re.search(r"ok\s+1 x box with zero width or height: dropped", start), start
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {kind: v["count"] for kind, v in summary["data"]["train"].items()} == DIRTY_RECORDS_COUNTS

    result = _cli("check-data", "--image_size=64", *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"ERROR\s+1 x cannot be decoded", result.stdout), result.stdout
    assert "read and decoded 4 images" in result.stdout  # 7 records, 1 undecodable, 2 sharing an id
    assert "Training on this data stops with an error" in result.stdout


def test_records_without_source_ids_and_unparseable_records(tmp_path):
    """No source_id: ids from the image bytes (as the Model Garden), never all one duplicate id.
    A record that is not a tf.Example: an error naming the file, not a TensorFlow traceback."""
    from keras_retina import commands

    pictures = [_jpeg(np.full((16, 16, 3), 40 * n, np.uint8)) for n in range(1, 4)]
    _tfrecord(str(tmp_path / "anonymous.tfrecord"), [("", p, [(0.1, 0.1, 0.5, 0.5)], [1]) for p in pictures])
    reports = {}
    train, _, _ = commands.sources({"train_tfrecord": str(tmp_path / "anonymous.tfrecord")}, reports=reports)
    assert dict(reports["train"].counts) == {} and train.record_stream.num_examples == 3
    ids = [int(e["image_id"]) for e in train]
    assert len(set(ids)) == 3
    # The same picture twice without ids is one image id twice: named as such.
    _tfrecord(str(tmp_path / "twice.tfrecord"), [("", pictures[0], [(0.1, 0.1, 0.5, 0.5)], [1])] * 2)
    with pytest.raises(ValueError, match=r"duplicate image id: .*twice.tfrecord record 1 \(no source_id\)"):
        commands.sources({"train_tfrecord": str(tmp_path / "twice.tfrecord")})

    with tf.io.TFRecordWriter(str(tmp_path / "garbage.tfrecord")) as writer:
        writer.write(b"not a tf.Example")
    (tmp_path / "labels.json").write_text(json.dumps([{"id": 1, "name": "a"}]))
    for label_map in (None, str(tmp_path / "labels.json")):  # the label-map scan, the data check
        with pytest.raises(ValueError, match=r"garbage.tfrecord: a record cannot be read"):
            commands.sources({"train_tfrecord": str(tmp_path / "garbage.tfrecord"), "label_map": label_map})


def test_records_without_a_usable_image_are_an_error(tmp_path):
    from keras_retina import commands

    _tfrecord(str(tmp_path / "junk.tfrecord"), [(1, b"junk", [(0.1, 0.1, 0.5, 0.5)], [1])])
    data = {"train_tfrecord": str(tmp_path / "junk.tfrecord"), "skip_bad_examples": True}
    with pytest.raises(commands.DataError, match=r"junk.tfrecord: no usable images.\n(.|\n)*skipped\s+1 x cannot"):
        commands.sources(data)


def test_deterministic_tfrecord_training_resumes_to_the_same_weights(tmp_path):
    """--deterministic on a TFRecord source with an undecodable record (--skip_bad_examples):
    6 steps, then the same command to 12 (a resume) ends with an uninterrupted run's weights."""
    good = [(10 + i, _jpeg(_scene(40 + 4 * i, 48, seed=i)), [(0.1, 0.2, 0.6, 0.7)], [1]) for i in range(6)]
    _tfrecord(str(tmp_path / "train.tfrecord"), _dirty_records() + good)
    (tmp_path / "labels.json").write_text(json.dumps([{"id": 1, "name": "a"}]))
    args = ["train", *TINY_FLAGS, "--checkpoint_every_steps=3", "--deterministic", "--skip_bad_examples",
            "--scale_min=0.8", "--scale_max=1.2", "--train_tfrecord=train.tfrecord", "--label_map=labels.json"]
    for run, steps in (("straight", 12), ("resumed", 6), ("resumed", 12)):
        result = _cli(*args, f"--train_steps={steps}", f"--model_dir={run}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stdout and "at step 6" in result.stdout
    assert_same_final_weights(tmp_path / "straight", tmp_path / "resumed", "ckpt-6")


def test_tfds_bad_boxes_and_images(tmp_path):
    """The real tfds.load path (tfds.testing.mock_data serving our records as the split's
    contents, as a custom TFDS dataset with plain tensor boxes could hold them)."""
    import tensorflow_datasets as tfds
    from keras_retina import commands

    records = [(image_id, encoded, boxes, [c - 1 if c == 1 else 99 for c in classes])  # 99: not a label
               for image_id, encoded, boxes, classes in _dirty_records()]
    data = {"tfds_name": "coco/2017", "tfds_train_split": "train", "tfds_data_dir": str(tmp_path)}
    with tfds.testing.mock_data(as_dataset_fn=tfds_records(records), data_dir=str(tmp_path)):
        with pytest.raises(ValueError, match=r"coco/2017 train example 0 \(image id 1\): box \[nan"):
            commands.sources(data)
        reports = {}
        train, _, label_map = commands.sources({**data, "skip_bad_examples": True}, reports=reports)
        assert len(label_map) == 80
        assert dict(reports["train"].counts) == DIRTY_RECORDS_COUNTS
        assert reports["train"].offenders["unreadable_image"] == ["coco/2017 train example 1 (image id 2)"]
        assert reports["train"].offenders["unknown_category"] == ["coco/2017 train example 2 (image id 3): category 99"]
        assert sorted(int(e["image_id"]) for e in train) == [1, 3, 4, 5]  # undecodable, shared ids: out
        dataset = pipeline.train_dataset(train, LabelEncoder(image_size=64), 64, batch_size=4,
                                         seed=0, repeat=False, shuffle_buffer=0)
        images, targets = next(iter(dataset))
        assert np.all(np.isfinite(images.numpy())) and np.all(np.isfinite(targets["box_targets"].numpy()))

        # --deterministic: the stream numbers the 4 good examples; batches from any resume step
        # equal an uninterrupted run's, and each epoch has its own order.
        stream = train.record_stream
        assert stream.num_examples == 4 and sorted(stream.exclude) == [
            "coco/2017 train example 1 (image id 2)", "coco/2017 train example 5 (image id 6)",
            "coco/2017 train example 6 (image id 6)"]

        def batches(start_step, count):
            ds = pipeline.deterministic_train_dataset(stream, LabelEncoder(image_size=64), 64, 2, seed=3,
                                                      start_step=start_step, scale_range=(0.8, 1.2))
            return [images.numpy() for (images, _), _ in zip(ds, range(count))]

        straight = batches(0, 8)
        for start_step in (1, 2, 5):
            assert all(np.array_equal(a, b) for a, b in zip(straight[start_step:], batches(start_step, 3)))
        # Each epoch (2 batches) holds every kept picture once, in its own order.
        ds = pipeline.deterministic_train_dataset(stream, LabelEncoder(image_size=64), 64, 4, seed=3)
        epochs = [[round(float(image[:32, :32].mean())) for image in images.numpy()]
                  for (images, _), _ in zip(ds, range(4))]
        assert all(sorted(epoch) == [30, 90, 120, 150] for epoch in epochs), epochs
        assert len({tuple(epoch) for epoch in epochs}) > 1, epochs


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
    assert cleaning.image_header(path)[2] == orientation
    decoded = coco_json.apply_orientation(coco_json.decode_image(tf.io.read_file(path)), orientation)
    assert np.array_equal(decoded.numpy(), expected)


def test_too_large_images_are_refused_by_name(tmp_path, monkeypatch):
    path = str(tmp_path / "huge.png")
    Image.new("L", (400, 300)).save(path)
    monkeypatch.setattr(cleaning, "MAX_PIXELS", 100_000)
    with pytest.raises(cleaning.BadImage, match="huge.png") as error:
        cleaning.image_header(path)
    assert error.value.kind == "too_large"


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "keras_retina.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_check_data_and_train_on_the_dirty_corpus(corpus, tmp_path):
    ann_path, images_dir, _ = corpus
    data = [f"--train_annotations={ann_path}", f"--train_images={images_dir}"]
    result = _cli("check-data", "--image_size=64", *data, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for phrase in ("ERROR", "image file missing", "cannot be decoded", "truncated.png", "duplicate image id",
                   "box entirely outside", "Training on this data stops with an error"):
        assert phrase in result.stdout, phrase

    result = _cli("train", *TINY_FLAGS, "--model_dir=run", "--train_steps=3", *data, cwd=tmp_path)
    assert result.returncode == 2
    assert "missing.jpg" in result.stderr and "--skip_bad_examples" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()

    result = _cli("train", *TINY_FLAGS, "--model_dir=run", "--train_steps=3", "--skip_bad_examples", *data,
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipped" in result.stdout and "Trained 3 steps" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data"]["train"]["missing_file"]["count"] == 1
    assert summary["data"]["train"]["unreadable_image"]["count"] == 4
    assert "skipped or dropped" in result.stdout  # the end-of-training summary says so too


def test_cli_names_a_file_that_only_fails_when_decoded(tiny_coco, tmp_path):
    """A truncated JPEG passes the header check; training stops with its name, not a TF trace."""
    ann_path, images_dir = tiny_coco["train"]
    victim = os.path.join(images_dir, sorted(os.listdir(images_dir))[3])
    with open(victim, "rb") as f:
        whole = f.read()
    with open(victim, "wb") as f:
        f.write(whole[: len(whole) // 2])
    data = [f"--train_annotations={ann_path}", f"--train_images={images_dir}"]
    result = _cli("train", *TINY_FLAGS, "--model_dir=run", "--train_steps=8", "--batch_size=16", *data,
                  cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "cannot be decoded" in result.stderr and os.path.basename(victim) in result.stderr
    assert "Traceback" not in result.stderr
