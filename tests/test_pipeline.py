import numpy as np
import tensorflow as tf

from conftest import assert_close
from keras_retina.data import pipeline
from keras_retina.label_encoder import LabelEncoder


def _example(height=100, width=200):
    return {
        "image_id": tf.constant(3, tf.int64),
        "image": tf.constant(np.random.default_rng(0).integers(0, 255, (height, width, 3)), tf.uint8),
        "boxes": tf.constant([[10.0, 20.0, 50.0, 120.0], [0.0, 0.0, 100.0, 200.0]]),
        "classes": tf.constant([2, 1], tf.int32),
        "is_crowd": tf.constant([False, True]),
        "area": tf.constant([4000.0, 20000.0]),
    }


def test_training_resize_pad_and_crowd_dropped():
    image, boxes, classes = pipeline.preprocess_for_training(_example(), 128, flip=False)
    assert image.shape == (128, 128, 3)
    # 200 px wide -> 128: scale 0.64; height 64, zero padding below.
    assert_close(boxes[0], np.array([10, 20, 50, 120]) * 0.64, atol=1e-4)
    assert np.all(np.asarray(image)[64:] == 0) and np.asarray(image)[:64].std() > 10
    assert list(classes.numpy()) == [2, -1]  # the crowd box is never a positive


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
        out, boxes, classes = pipeline.preprocess_for_training(example, 128, scale_range=(0.5, 2.0))
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
    from keras_retina.data import coco_json

    source = coco_json.read_coco_json(*tiny_coco["train"])
    ids = [int(e["image_id"]) for e in source.dataset(shuffle=True, seed=1).take(16)]
    assert sorted(ids) == sorted(r["id"] for r in source.images)  # one pass = every image once
    assert ids != sorted(ids)


def test_train_dataset_yields_encoded_batches():
    encoder = LabelEncoder(128)
    examples = tf.data.Dataset.from_tensors(_example()).repeat(3)
    images, targets = next(iter(pipeline.train_dataset(examples, encoder, 128, 2, flip=False, seed=1)))
    assert images.shape == (2, 128, 128, 3)
    _, boxes, classes = pipeline.preprocess_for_training(_example(), 128, flip=False)
    expected = encoder(boxes, classes)
    assert_close(targets["cls_targets"][0], expected["cls_targets"], atol=0)
    assert_close(targets["box_targets"][1], expected["box_targets"], atol=1e-6)


def test_eval_dataset_meta():
    examples = tf.data.Dataset.from_tensors(_example()).concatenate(
        tf.data.Dataset.from_tensors({**_example(60, 30), "boxes": tf.zeros((0, 4)),
                                      "classes": tf.zeros((0,), tf.int32),
                                      "is_crowd": tf.zeros((0,), tf.bool), "area": tf.zeros((0,))}))
    images, meta = next(iter(pipeline.eval_dataset(examples, 128, 2)))
    assert images.shape == (2, 128, 128, 3)
    assert_close(meta["scale"], [0.64, 128 / 60], atol=1e-6)
    assert meta["original_size"].numpy().tolist() == [[100, 200], [60, 30]]
    assert meta["classes"].numpy().tolist() == [[2, 1], [-1, -1]]  # padded ground truth
    assert_close(meta["boxes"][0], _example()["boxes"])  # original pixels, not resized
