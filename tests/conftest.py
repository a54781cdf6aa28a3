"""Test setup: quiet TensorFlow logs, two logical CPU devices (for MirroredStrategy), seeds."""

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One thread per TensorFlow op, in this process and the commands it starts (they inherit the
# environment): the tests' models are tiny, two pytest-xdist workers share two cores, and an op
# split over threads only adds their hand-overs (measured: the demo-trained fixture 144 -> 128 CPU
# seconds and no slower alone; a tiny model's 300-step fit 40 -> 33 CPU seconds and faster).
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# The time budget's hooks: the ten slowest tests and a warning past the budget, at the end of a run.
from time_budget import (  # noqa: E402, F401
    pytest_runtest_logreport,
    pytest_runtest_makereport,
    pytest_runtest_protocol,
    pytest_sessionstart,
    pytest_terminal_summary,
)

# Must run before TensorFlow initialises its devices: split the CPU into two
# logical devices so tests can run a real two-replica MirroredStrategy.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout's root

# The one tiny model every test shares (RetinaNet settings; TINY_FLAGS gives it to the command
# line): 64 px, tiny backbone, narrow heads. Tests on 128 px pictures set image_size=128.
TINY = dict(backbone="tiny", image_size=64, fpn_filters=16, head_filters=16, head_convs=1)


@pytest.fixture(autouse=True, scope="module")
def _collect_garbage_between_modules():
    """Module fixtures' values are garbage once their module ends: collected here, then what is
    left is frozen again (below)."""
    yield
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield
    # What a test leaves alive (imported modules, fixtures, the graphs TensorFlow keeps of every
    # traced function) is moved out of the garbage collector's generations: a full collection
    # would walk it again and again, and with millions of such objects it takes most of the time
    # of the tests that trace models late in a run.
    gc.collect()
    gc.freeze()


def assert_close(actual, expected, atol=1e-5, rtol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=atol, rtol=rtol)


def assert_same_detections(ours, theirs, box_tolerance, score_tolerance, label=""):
    """Two detectors' detections of one image, each (boxes [D, 4], scores [D], classes [D]) with
    its padding rows cut: the same count, the same sorted scores, and each of theirs has its own
    of ours with the same class, box and score. Near-equal scores may come out in either order;
    at the cut-off (the lowest kept score, where the detection cap or threshold falls) either side
    may have kept a different one of a tie: those, and only those, may stay unmatched on both
    sides. Returns the largest box difference of the matches."""
    (boxes, scores, classes), (their_boxes, their_scores, their_classes) = ours, theirs
    assert len(scores) == len(their_scores), f"{label}: {len(scores)} detections, expected {len(their_scores)}"
    assert len(scores) > 0, f"{label}: nothing detected; the comparison would be empty"
    np.testing.assert_allclose(np.sort(scores), np.sort(their_scores), atol=score_tolerance, rtol=0, err_msg=label)
    cut_off = their_scores.min() + score_tolerance
    unused, box_errors = np.ones(len(scores), bool), [0.0]
    for box, score, category in zip(their_boxes, their_scores, their_classes):
        match = np.flatnonzero(unused & (classes == category) & (np.abs(scores - score) <= score_tolerance)
                               & (np.abs(boxes - box).max(axis=1) <= box_tolerance))
        if not len(match) and score <= cut_off:
            continue
        near = np.flatnonzero(classes == category)
        assert len(match), (f"{label}: no detection matches class {category}, score {score}, box {box}; those of "
                            f"that class: {list(zip(scores[near], boxes[near].round(3).tolist()))[:8]}")
        unused[match[0]] = False
        box_errors.append(float(np.abs(boxes[match[0]] - box).max()))
    assert (scores[unused] <= cut_off + score_tolerance).all(), f"{label}: unmatched {scores[unused]} above the cut-off"
    return max(box_errors)


def checkpoint_values(run_dir, checkpoint=None):
    """Every model and optimizer value of a run's latest (or named) checkpoint, by name."""
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / checkpoint) if checkpoint
                                      else str(run_dir / "checkpoints"))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(("model/", "optimizer/"))}


def assert_same_final_weights(straight_dir, other_dir, earlier_checkpoint):
    """`other_dir`'s run (resumed, killed...) ended with exactly the uninterrupted run's values, and
    those moved since `earlier_checkpoint` of the uninterrupted run (the later steps trained)."""
    straight, other = checkpoint_values(straight_dir), checkpoint_values(other_dir)
    assert straight.keys() == other.keys() and len(straight) > 20
    different = [name for name in straight if not np.array_equal(straight[name], other[name])]
    assert not different, different[:5]
    earlier = checkpoint_values(straight_dir, earlier_checkpoint)
    assert sum(not np.array_equal(earlier[name], value) for name, value in straight.items()) > 100


def tf_feature(values, kind):
    """A tf.train.Feature of "bytes", "float" or "int" values (for test TFRecords)."""
    from keras_retina.data.readers.tfrecord import feature

    return feature(values, kind)


def tfds_records(records):
    """An `as_dataset_fn` for `tfds.testing.mock_data` serving COCO-like records
    (image id, encoded image, normalised yxyx boxes, TFDS labels 0..79) through the real
    `tfds.load`, images decoded unless the caller asks to skip decoding. (mock_data's own
    random COCO records cannot be encoded: their object fields differ in length.)"""

    def as_dataset(self, split, decoders=None, **kwargs):
        def generate():
            for image_id, encoded, boxes, labels in records:
                yield {"image": encoded, "image/id": image_id,
                       "objects": {"bbox": np.asarray(boxes, np.float32).reshape(-1, 4),
                                   "label": np.asarray(labels, np.int64),
                                   "is_crowd": np.zeros(len(labels), bool),
                                   "area": np.ones(len(labels), np.float32)}}

        dataset = tf.data.Dataset.from_generator(generate, output_signature={
            "image": tf.TensorSpec((), tf.string), "image/id": tf.TensorSpec((), tf.int64),
            "objects": {"bbox": tf.TensorSpec((None, 4), tf.float32), "label": tf.TensorSpec((None,), tf.int64),
                        "is_crowd": tf.TensorSpec((None,), tf.bool), "area": tf.TensorSpec((None,), tf.float32)}})
        import tensorflow_datasets as tfds

        if isinstance((decoders or {}).get("image"), tfds.decode.SkipDecoding):
            return dataset
        return dataset.map(lambda e: {**e, "image": tf.io.decode_image(e["image"], 3, expand_animations=False)})

    return as_dataset


def keras_file_round_trip(model, tmp_path, name="model.keras"):
    """Saves `model` as a .keras file and loads it back."""
    path = str(tmp_path / name)
    model.save(path)
    return keras.saving.load_model(path)


def layer_round_trip(layer, inputs, tmp_path):
    """A layer rebuilt from its config has the same config; wrapped in a model and saved
    to a .keras file, it computes the same outputs after loading."""
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    if isinstance(inputs, dict):
        symbolic = {k: keras.Input(v.shape[1:], dtype=v.dtype, name=k) for k, v in inputs.items()}
    else:
        symbolic = keras.Input(inputs.shape[1:], dtype=inputs.dtype)
    model = keras.Model(symbolic, layer(symbolic))
    restored = keras_file_round_trip(model, tmp_path)
    tf.nest.map_structure(assert_close, restored(inputs), model(inputs))


TINY_FLAGS = [f"--{name}={value}" for name, value in TINY.items()] + [
    "--batch_size=4", "--reference_batch_size=4", "--optimizer=adamw", "--learning_rate=0.001",
    "--warmup_steps=2", "--lr_boundaries=", "--verbose=2"]


def make_tiny_model_dir(path, label_map=({"id": 1, "name": "a"}, {"id": 2, "name": "b"})):
    """An untrained tiny model_dir as training leaves it; prior 0.3 gives it many detections with
    varied scores, so comparisons are not between empty results."""
    from keras_retina import RetinaNet
    from keras_retina.model_dir import ModelDir

    model = RetinaNet(**{**TINY, "num_classes": len(label_map), "prior_probability": 0.3})
    run = ModelDir(str(path))
    run.write_config({"model": model.config.to_json(), "train": {}, "data": {}})
    run.write_label_map(list(label_map))
    run.checkpoint_manager(tf.train.Checkpoint(model=model)).save(checkpoint_number=1)
    return str(path)


PETS = [{"id": 4, "name": "cat"}, {"id": 9, "name": "dog"}, {"id": 17, "name": "bird"}]


def make_pets_model_dir(path):
    """A model_dir as training leaves it (TINY at 128 px, the PETS label map); returns its model.
    prior_probability=0.3 gives an untrained model many detections with varied scores, so
    comparisons are not between empty results."""
    from keras_retina import RetinaNet
    from keras_retina.model_dir import ModelDir

    model = RetinaNet(**{**TINY, "image_size": 128, "num_classes": 3, "prior_probability": 0.3})
    run = ModelDir(path)
    run.write_config({"model": model.config.to_json(), "train": {}, "data": {}})
    run.write_label_map(PETS)
    run.checkpoint_manager(tf.train.Checkpoint(model=model)).save(checkpoint_number=7)
    return model


@pytest.fixture(scope="session")
def pets_saved_model(tmp_path_factory):
    """(model, SavedModel path): `make_pets_model_dir`'s model exported once per run, for the tests
    that only read it (the SavedModel's and the serving client's)."""
    from keras_retina.deploy import saved_model

    root = tmp_path_factory.mktemp("pets")
    keras.utils.set_random_seed(3)
    model = make_pets_model_dir(str(root / "model"))
    return model, saved_model.export_saved_model(model, PETS, str(root / "serving" / "retinanet"))


def write_tiny_coco(folder):
    """A small COCO JSON dataset in `folder`: {"train": (json, images dir), "val": (...)}, with
    landscape, portrait and square pictures (three resize-policy buckets at the tiny model's 64)."""
    from keras_retina.data import synthetic

    return synthetic.write_coco_dataset(str(folder), num_train=16, num_val=8, num_classes=3,
                                        sizes=((64, 96), (96, 64), (64, 64)), max_objects=2)


@pytest.fixture
def tiny_coco(tmp_path):
    """`write_tiny_coco` in the test's own folder (tests may change it)."""
    return write_tiny_coco(tmp_path / "data")
