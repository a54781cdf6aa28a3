"""`train --init_from=DIR`: DIR's architecture, every weight, classifier rows carried over by class name."""

import dataclasses
import json
import math

import keras
import numpy as np
import pytest

from keras_retina.data import synthetic
from keras_retina.data.data_config import DataConfig
from keras_retina.data.splits import open_sources
from keras_retina.errors import DataError
from keras_retina.model_dir import ModelDir
from keras_retina.modeling.model_config import ModelConfig
from keras_retina.modeling.retinanet import RetinaNet
from keras_retina.training import fine_tuning, trainer
from keras_retina.training.train_config import TrainConfig

from command_line import keras_retina
from conftest import TINY, write_tiny_coco

# The source model differs from TINY in every architecture setting a user could have changed.
SOURCE = dict(TINY, fpn_filters=32, head_filters=32, head_convs=2, head_norm="group_norm", num_scales=2,
              aspect_ratios=(0.5, 1.0), anchor_geometry="detectron2", p6_input="P5", fpn_extra_padding="symmetric")


def _train_config(steps, **overrides):
    return TrainConfig(**dict(dict(batch_size=4, reference_batch_size=4, optimizer="adamw", learning_rate=1e-3,
                                   train_steps=steps, lr_boundaries=[], warmup_steps=0, checkpoint_every_steps=steps,
                                   strategy="one_device", verbose=0), **overrides))


def _rename(annotations, names):
    """Rewrites a COCO JSON's category names (ids kept) and returns its path."""
    data = json.loads(open(annotations).read())
    for category in data["categories"]:
        category["name"] = names.get(category["name"], category["name"])
    with open(annotations, "w") as f:
        json.dump(data, f)
    return annotations


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    """A trained source model_dir (classes red_square, green_disc, blue_triangle), trained once for
    the tests of this module, which only read it."""
    tmp_path = tmp_path_factory.mktemp("fine_tuning")
    keras.utils.set_random_seed(1234)  # as the tests' own seed: the same model whichever test asks first
    coco = write_tiny_coco(tmp_path / "data")
    data = DataConfig(train_annotations=coco["train"][0], train_images=coco["train"][1])
    model_dir = str(tmp_path / "source")
    trainer.train(model_dir, ModelConfig(**SOURCE), _train_config(2), open_sources(data), data)
    return model_dir


def test_initialise_copies_weights_and_rows_by_name(source_dir, tmp_path):
    source, source_labels, _, _ = ModelDir(source_dir).load_model()
    assert [e["name"] for e in source_labels] == ["red_square", "green_disc", "blue_triangle"]
    # The user's flags name another architecture (TINY's defaults); DIR's wins, the rest is the user's.
    asked = ModelConfig(**dict(TINY, num_classes=3, image_size=96, focal_gamma=1.5))
    config = fine_tuning.settings_from(asked, source_dir)
    for name in fine_tuning.ARCHITECTURE:
        assert getattr(config, name) == getattr(source.config, name), name
    assert (config.image_size, config.focal_gamma, config.freeze_backbone_at) == (96, 1.5, 0)  # tiny: 0
    label_map = [{"id": 4, "name": "Blue-Triangle"}, {"id": 5, "name": "purple_star"},
                 {"id": 6, "name": "red square"}]
    model = RetinaNet(**dataclasses.asdict(dataclasses.replace(config, num_classes=3)))
    fresh_kernel = model.classification_head.output_conv.kernel.numpy()
    report = fine_tuning.initialise(model, source_dir, label_map)
    assert report["carried"] == [["Blue-Triangle", "blue_triangle"], ["red square", "red_square"]]
    assert report["new"] == ["purple_star"]
    assert "2 class(es): Blue-Triangle (= blue_triangle), red square (= red_square); new: purple_star" in \
        fine_tuning.format_report(report)
    head = model.classification_head.output_conv
    for mine, theirs in zip(model.weights, source.weights):
        if mine is not head.kernel and mine is not head.bias:
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    anchors = model.anchor_generator.anchors_per_location
    kernel = head.kernel.numpy().reshape(head.kernel.shape[:-1] + (anchors, 3))
    bias = head.bias.numpy().reshape(anchors, 3)
    their_head = source.classification_head.output_conv
    their_kernel = their_head.kernel.numpy().reshape(kernel.shape)
    their_bias = their_head.bias.numpy().reshape(anchors, 3)
    for new, old in ((0, 2), (2, 0)):
        np.testing.assert_array_equal(kernel[..., new], their_kernel[..., old])
        np.testing.assert_array_equal(bias[:, new], their_bias[:, old])
    # the new class keeps the paper's initialisation: fresh kernel, prior bias (pi = 0.01)
    np.testing.assert_array_equal(kernel[..., 1], fresh_kernel.reshape(kernel.shape)[..., 1])
    np.testing.assert_allclose(bias[:, 1], -math.log(99.0), rtol=1e-6)
    assert not np.allclose(their_bias[:, 2], -math.log(99.0))  # trained rows moved: the copy is visible


def test_train_init_from_fine_tunes_and_reports(source_dir, tmp_path, capsys):
    """Through trainer.train: a new dataset sharing two class names and adding one starts from
    DIR's weights; the start-up line and summary.json say which classes were carried over; a
    resume continues its own checkpoint with the same command."""
    paths = synthetic.write_coco_dataset(str(tmp_path / "second"), num_train=8, num_val=4, num_classes=3,
                                         sizes=((64, 96), (64, 64)), max_objects=2, seed=3)
    _rename(paths["train"][0], {"green_disc": "Motorbike"})
    data = DataConfig(train_annotations=paths["train"][0], train_images=paths["train"][1])
    model_dir = str(tmp_path / "fine")
    train = _train_config(2, init_from=source_dir)
    summary = trainer.train(model_dir, ModelConfig(**TINY), train, open_sources(data), data)
    out = capsys.readouterr().out
    assert "classifier rows carried over for 2 class(es): red_square, blue_triangle; new: Motorbike" in out
    assert summary["init_from"]["carried"] == [["red_square", "red_square"], ["blue_triangle", "blue_triangle"]]
    assert ModelDir(model_dir).model_config().head_norm == "group_norm"  # DIR's architecture was trained
    summary = trainer.train(model_dir, ModelConfig(**TINY), _train_config(3, init_from=source_dir),
                             open_sources(data), data)
    out = capsys.readouterr().out
    assert "Resuming from" in out and "carried over" not in out and "init_from" not in summary
    assert summary["steps"] == 3


def test_init_from_a_folder_that_is_not_a_model_dir(tmp_path):
    with pytest.raises(DataError, match=r"--init_from=.*no config.json"):
        fine_tuning.settings_from(ModelConfig(**TINY), str(tmp_path))


def test_train_init_from_on_the_command_line(source_dir, tmp_path, tiny_coco):
    """`keras_retina train --init_from=DIR` as a user runs it: the start-up line names the classes
    carried over; the flags' architecture (TINY's) gives way to DIR's."""
    from conftest import TINY_FLAGS

    args = ["train", *TINY_FLAGS, f"--init_from={source_dir}", "--model_dir=fine", "--train_steps=2",
            "--checkpoint_every_steps=2", f"--train_annotations={tiny_coco['train'][0]}",
            f"--train_images={tiny_coco['train'][1]}"]
    result = keras_retina(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("classifier rows carried over for 3 class(es): red_square, green_disc, blue_triangle; new: none"
            in result.stdout), result.stdout[-2000:]
    assert ModelDir(str(tmp_path / "fine")).model_config().head_norm == "group_norm"


def test_initialise_refuses_a_model_built_otherwise(source_dir):
    """Weights are copied by name and shape: a model whose parts are named otherwise (built by hand,
    not from DIR's settings) is refused, naming the weight, before anything is copied."""
    from keras_retina.modeling.heads import PredictionHead

    config = fine_tuning.settings_from(ModelConfig(**dict(TINY, num_classes=3)), source_dir)
    head = PredictionHead(3, 4, config.head_filters, config.head_convs, 0.01, config.head_norm, name="my_head")
    model = RetinaNet(**dataclasses.asdict(config), classification_head=head)
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(DataError, match="classification_head/conv0/kernel .* is my_head/conv0/kernel"):
        fine_tuning.initialise(model, source_dir, [{"id": 1, "name": "red_square"}] * 3)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, model.weights))
