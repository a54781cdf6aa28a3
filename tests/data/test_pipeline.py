import numpy as np
import tensorflow as tf

from keras_retina.data import pipeline
from keras_retina.data.readers import coco_json, tfrecord
from keras_retina.modeling.label_encoder import LabelEncoder
from keras_retina.modeling.transform import ResizePolicy

from conftest import assert_close
from dirty_data import dirty_records, write_corpus, write_tfrecord

SQUARE = ResizePolicy(128, policy="square")  # the longer side fitted into 128 x 128
SHORTER = ResizePolicy(128, 256)  # the paper's: shorter side 128, longer at most 256
TINY_POLICY = ResizePolicy(64)


def _example(height=100, width=200):
    return {
        "image_id": tf.constant(3, tf.int64),
        "image": tf.constant(np.random.default_rng(0).integers(0, 255, (height, width, 3)), tf.uint8),
        "boxes": tf.constant([[10.0, 20.0, 50.0, 120.0], [0.0, 0.0, 100.0, 200.0]]),
        "classes": tf.constant([2, 1], tf.int32),
        "is_crowd": tf.constant([False, True]),
        "area": tf.constant([4000.0, 20000.0]),
    }


def test_training_resize_and_crowd_dropped():
    image, boxes, classes = pipeline.preprocess_for_training(_example(), SQUARE, flip=False)
    assert image.shape == (64, 128, 3)  # 200 px wide -> 128: scale 0.64 (padded when batched)
    assert_close(boxes[0], np.array([10, 20, 50, 120]) * 0.64, atol=1e-4)
    assert list(classes.numpy()) == [2, -1]  # the crowd box is never a positive
    image, boxes, _ = pipeline.preprocess_for_training(_example(), SHORTER, flip=False)
    assert image.shape == (128, 256, 3)  # shorter side 100 -> 128: scale 1.28
    assert_close(boxes[0], np.array([10, 20, 50, 120]) * 1.28, atol=1e-4)
    image, _, _ = pipeline.preprocess_for_training(_example(100, 400), SHORTER, flip=False)
    assert image.shape == (64, 256, 3)  # the longer side capped at 256


def test_flip_mirrors_boxes():
    image = tf.zeros((10, 40, 3))
    _, flipped = pipeline._flip(image, tf.constant([[1.0, 5.0, 4.0, 15.0]]))
    assert_close(flipped, [[1.0, 25.0, 4.0, 35.0]])


def test_flip_and_scale_jitter_keep_boxes_on_their_pixels():
    """After flip, random scale and crop, each kept box still frames its object's pixels."""
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 50:90] = 255  # the object: rows 20-60, columns 50-130, its left half brighter
    image[20:60, 90:130] = 170
    example = {**_example(), "image": tf.constant(image), "boxes": tf.constant([[20.0, 50.0, 60.0, 130.0]]),
               "classes": tf.constant([1]), "is_crowd": tf.constant([False]), "area": tf.constant([3200.0])}
    tf.random.set_seed(3)
    checked, widths, mirrored = 0, set(), []
    for _ in range(12):
        out, boxes, classes = pipeline.preprocess_for_training(example, SQUARE, scale_range=(0.5, 2.0))
        if int(classes[0]) < 0:
            continue
        grey = np.asarray(out).mean(-1)
        rows, cols = np.nonzero(grey > 127)
        pixels = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
        assert_close(boxes[0], pixels, atol=2.0)  # bilinear edges
        middle = (cols.min() + cols.max() + 1) // 2
        mirrored.append(grey[rows, cols][cols < middle].mean() < grey[rows, cols][cols >= middle].mean())
        widths.add(round(float(boxes[0, 3] - boxes[0, 1])))
        checked += 1
    assert checked >= 8
    assert len(widths) >= 5  # the jitter really rescales
    assert any(mirrored) and not all(mirrored)  # and flips some of the time


def test_coco_source_is_shuffled_over_the_whole_set_before_decoding(tiny_coco):
    source = coco_json.read_coco_json(*tiny_coco["train"])
    ids = [int(e["image_id"]) for e in source.examples(shuffle=True, seed=1).take(16)]
    assert sorted(ids) == sorted(r["id"] for r in source.images)  # one pass = every image once
    assert ids != sorted(ids)


def test_train_dataset_yields_encoded_batches():
    encoder = LabelEncoder(128)
    examples = tf.data.Dataset.from_tensors(_example()).repeat(3)
    images, targets = next(iter(pipeline.train_dataset(examples, encoder, SQUARE, 2, flip=False, seed=1)))
    assert images.shape == (2, 128, 128, 3)
    assert np.all(images.numpy()[:, 64:] == 0) and images.numpy()[:, :64].std() > 10  # padded below
    _, boxes, classes = pipeline.preprocess_for_training(_example(), SQUARE, flip=False)
    expected = encoder(boxes, classes)
    assert_close(targets["cls_targets"][0], expected["cls_targets"], atol=0)
    assert_close(targets["box_targets"][1], expected["box_targets"], atol=1e-6)


def test_eval_dataset_meta():
    examples = tf.data.Dataset.from_tensors(_example()).concatenate(
        tf.data.Dataset.from_tensors({**_example(60, 30), "boxes": tf.zeros((0, 4)),
                                      "classes": tf.zeros((0,), tf.int32),
                                      "is_crowd": tf.zeros((0,), tf.bool), "area": tf.zeros((0,))}))
    images, meta = next(iter(pipeline.eval_dataset(examples, SQUARE, 2)))
    assert images.shape == (2, 128, 128, 3)
    assert_close(meta["scale"], [0.64, 128 / 60], atol=1e-6)
    assert meta["picture_size"].numpy().tolist() == [[64, 128], [128, 64]]  # each picture inside its input
    assert meta["original_size"].numpy().tolist() == [[100, 200], [60, 30]]
    assert meta["classes"].numpy().tolist() == [[2, 1], [-1, -1]]  # padded ground truth
    assert_close(meta["boxes"][0], _example()["boxes"])  # original pixels, not resized


def test_training_pipeline_on_the_clean_rest_of_dirty_data_gives_finite_targets(tmp_path):
    ann_path, images_dir, _ = write_corpus(str(tmp_path))
    source = coco_json.read_coco_json(ann_path, images_dir, skip_bad_examples=True)
    # Batches of 2: however the random flips and scales spread the 11 clean images over the 5
    # buckets (and the mixed canvas), each leaves at most one out: always >= 3 full batches.
    dataset = pipeline.train_dataset(source, LabelEncoder(), TINY_POLICY, batch_size=2,
                                     scale_range=(0.8, 1.2), seed=0, repeat=False)
    batches = list(dataset)
    assert sum(len(images) for images, _ in batches) <= 11  # 11 clean images; full batches of a bucket
    assert len(batches) >= 3
    for images, targets in batches:
        assert tuple(images.shape[1:3]) in TINY_POLICY.buckets
        assert np.all(np.isfinite(images.numpy()))
        assert np.all(np.isfinite(targets["box_targets"].numpy()))


def test_record_source_order_and_shuffle(tmp_path):
    """File order without shuffling; shuffled through a buffer of encoded records, each decodable
    picture once per pass in a new order (a picture's grey level names it; flips keep it)."""
    path = str(tmp_path / "dirty.tfrecord")
    write_tfrecord(path, dirty_records())
    source = tfrecord.tfrecord_source(path, [{"id": 1, "name": "a"}]).checked(skip_bad_examples=True)
    images, targets = next(iter(pipeline.train_dataset(source, LabelEncoder(), ResizePolicy(64, policy="square"),
                                                       batch_size=3, seed=0, repeat=False, shuffle=False)))
    assert np.all(np.isfinite(targets["box_targets"].numpy()))
    assert (targets["cls_targets"].numpy()[0] >= 0).sum() > 0  # the good box is still a positive
    means = [[round(float(images.numpy()[0, :32, :32].mean())) for images, _ in pipeline.train_dataset(
        source, LabelEncoder(), TINY_POLICY, batch_size=1, seed=seed, repeat=False, shuffle=shuffle)]
        for seed, shuffle in ((0, False), (0, True), (1, True))]
    assert means[0] == [30, 90, 120, 150]  # file order; the undecodable record and the shared id left out
    assert all(sorted(m) == means[0] for m in means) and means[1] != means[0] and means[2] != means[1]


def test_boxes_the_rule_rejects_never_become_positives():
    example = {**_example(), "boxes": tf.constant([[10.0, 20.0, 50.0, 120.0], [np.nan, 0, 5, 5],
                                                   [300.0, 10.0, 400.0, 50.0], [-20.0, -20.0, 30.0, 30.0]]),
               "classes": tf.constant([2, 1, 1, 0], tf.int32), "is_crowd": tf.constant([False] * 4),
               "area": tf.ones([4])}
    _, boxes, classes = pipeline.preprocess_for_training(example, SQUARE, flip=False)
    assert classes.numpy().tolist() == [2, -1, -1, 0]  # NaN and fully outside: class -1
    assert_close(boxes[3], [0, 0, 30 * 0.64, 30 * 0.64], atol=1e-4)  # clipped, kept
    assert np.all(np.isfinite(boxes.numpy()))


def _mixed_examples():
    """Landscape, portrait and square pictures (a grey level per picture), two boxes each."""
    sizes = [(100, 200), (200, 100), (120, 120), (90, 160), (160, 90), (150, 150), (100, 140), (140, 100)] * 3
    for i, (height, width) in enumerate(sizes):
        yield {"image_id": np.int64(i), "image": np.full((height, width, 3), 10 + 10 * i, np.uint8),
               "boxes": np.array([[10, 10, 60, 60], [20, 30, 80, 90]], np.float32),
               "classes": np.array([0, 1], np.int32), "is_crowd": np.zeros(2, bool), "area": np.ones(2, np.float32)}


def _mixed_dataset():
    spec = {"image_id": tf.TensorSpec([], tf.int64), "image": tf.TensorSpec([None, None, 3], tf.uint8),
            "boxes": tf.TensorSpec([None, 4], tf.float32), "classes": tf.TensorSpec([None], tf.int32),
            "is_crowd": tf.TensorSpec([None], tf.bool), "area": tf.TensorSpec([None], tf.float32)}
    return tf.data.Dataset.from_generator(_mixed_examples, output_signature=spec)


def test_training_batches_are_grouped_by_aspect_ratio_bucket():
    encoder = LabelEncoder()
    batches = list(pipeline.train_dataset(_mixed_dataset(), encoder, SHORTER, 2, flip=False, shuffle=False,
                                          seed=0, repeat=False))
    assert SHORTER.buckets == ((128, 128), (128, 192), (192, 128), (128, 256), (256, 128))  # 4:3, 3:2 share one
    shapes = [tuple(images.shape[1:3]) for images, _ in batches]
    assert set(shapes) <= set(SHORTER.buckets) and len(set(shapes)) >= 4  # landscape, portrait, square
    assert sum(len(images) for images, _ in batches) >= 20
    for images, targets in batches:
        canvas = tuple(images.shape[1:3])
        count = encoder.anchor_generator.num_anchors(canvas)
        assert targets["cls_targets"].shape == (2, count) and targets["box_targets"].shape == (2, count, 4)
        assert (targets["cls_targets"].numpy() >= 0).sum(axis=1).min() > 0  # every image has positives
        # Each picture is one grey level on zero padding: its content's extent is its resized size.
        # The canvas is the smallest bucket holding each of them, and they share an orientation.
        extents = [(int(np.count_nonzero(image[:, 0, 0])), int(np.count_nonzero(image[0, :, 0])))
                   for image in images.numpy()]
        for height, width in extents:
            assert tuple(int(s) for s in SHORTER.canvas(height, width)) == canvas, (extents, canvas)


def test_deterministic_batches_are_a_function_of_the_step(tmp_path):
    """Batch k is the same whether the stream starts at step 0 or at step k (a resumed run), and
    every batch is padded to a bucket or, mixing orientations, to the mixed canvas."""
    import json

    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    records, annotations = [], []
    for i, example in enumerate(_mixed_examples()):
        name = f"{i}.png"
        Image.fromarray(example["image"]).save(folder / name)
        height, width = example["image"].shape[:2]
        records.append({"id": i + 1, "file_name": name, "height": height, "width": width})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [5, 5, 40, 30],
                            "area": 1200, "iscrowd": 0})
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"images": records, "annotations": annotations,
                                "categories": [{"id": 1, "name": "a"}]}))
    source = coco_json.read_coco_json(str(path), str(folder))
    encoder = LabelEncoder()

    def batches(start, count):
        ds = pipeline.deterministic_train_dataset(source, encoder, SHORTER, 4, seed=7, start_step=start)
        return [(images.numpy(), targets["cls_targets"].numpy()) for images, targets in ds.take(count)]

    straight = batches(0, 5)
    resumed = batches(3, 2)
    for (images, classes), (again, again_classes) in zip(straight[3:], resumed):
        assert np.array_equal(images, again) and np.array_equal(classes, again_classes)
    for images, _ in straight:
        assert tuple(images.shape[1:3]) in SHORTER.buckets + (SHORTER.mixed_canvas,)


def test_batches_are_padded_with_the_policy_colour():
    """Training batches of a policy with a pad colour (evaluation batches are padded by the same
    two functions): the padding has that colour and the pictures equal those of the
    black-padded batches (to float rounding)."""
    colour = (123.675, 116.28, 103.53)
    coloured = ResizePolicy(128, 256, pad_color=colour)
    encoder = LabelEncoder()
    kwargs = dict(flip=False, shuffle=False, seed=0, repeat=False)
    padded = 0
    for black, tinted in zip(pipeline.train_dataset(_mixed_dataset(), encoder, SHORTER, 2, **kwargs),
                             pipeline.train_dataset(_mixed_dataset(), encoder, coloured, 2, **kwargs)):
        black, tinted = black[0].numpy(), tinted[0].numpy()
        content = black.max(axis=-1) > 0  # the pictures are grey levels > 0 on black padding
        padded += int((~content).sum())
        np.testing.assert_allclose(tinted[content], black[content], atol=1e-4)
        np.testing.assert_allclose(tinted[~content], np.broadcast_to(np.float32(colour), tinted[~content].shape),
                                   atol=1e-4)
    assert padded > 1000  # pixels of padding were compared


def test_floor_rounding_and_tight_canvas_in_training_evaluation_and_serving():
    """A converted torchvision model's policy (sides floored, tight canvas) is the same in training,
    evaluation and serving, also when S == L leaves one bucket."""
    from keras_retina.modeling.transform import to_model_input

    policy = ResizePolicy(800, 800, rounding="floor", canvas="tight")
    example = _example(370, 501)  # scale 800 / 501: 590.8 x 800, floored to 590 (rounding would give 591)
    image, _, _ = pipeline.preprocess_for_training(example, policy, flip=False)
    assert tuple(image.shape[:2]) == (590, 800)
    served, _ = to_model_input(example["image"], policy)
    assert tuple(served.shape[:2]) == (608, 800)  # each side up to a multiple of 32
    images, meta = next(iter(pipeline.eval_dataset(tf.data.Dataset.from_tensors(example), policy, 1)))
    assert tuple(images.shape[1:3]) == (608, 800) and meta["picture_size"].numpy().tolist() == [[590, 800]]
    np.testing.assert_array_equal(images[0].numpy(), served.numpy())
