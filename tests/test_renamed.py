"""Renamed words (CHANGELOG "Renamed"): the new names work, the old ones still do for one release with a
DeprecationWarning (Python) or a line on stderr (the command line), both together are refused, and files
saved under an old key load silently.

- `input_size` (the network input's height and width; was `image_size` on the label encoder, decoder and
  anchor functions, where `image_size` now means only the shorter side S of ModelConfig).
- `draw_threshold` (the score from which `predict`, the client and the report's advice draw; was
  `score_threshold`, which now means only the decoder's cut) and `report_threshold` (the report's cut).
"""

import json
import warnings
import zipfile

import keras
import numpy as np
import pytest
from PIL import Image

import keras_retina
from keras_retina import DetectionDecoder, LabelEncoder, RetinaNet, generate_anchors, num_anchors

from command_line import keras_retina as run_command
from conftest import TINY, make_tiny_model_dir


def _quietly(make):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return make()


def test_input_size_is_the_new_name_and_image_size_still_works_with_a_warning():
    encoder = _quietly(lambda: LabelEncoder(input_size=64))
    decoder = _quietly(lambda: DetectionDecoder(input_size=(64, 96)))
    assert encoder.input_size == 64 and decoder.input_size == [64, 96]
    assert _quietly(lambda: num_anchors(input_size=64)) == num_anchors(64)
    with pytest.warns(DeprecationWarning, match="image_size= is now input_size="):
        assert LabelEncoder(image_size=64).input_size == 64
    with pytest.warns(DeprecationWarning, match="DetectionDecoder: image_size= is now input_size="):
        assert DetectionDecoder(image_size=(64, 96)).input_size == [64, 96]
    with pytest.warns(DeprecationWarning):
        assert num_anchors(image_size=64) == num_anchors(64)
    with pytest.warns(DeprecationWarning):
        old = generate_anchors(image_size=64)
    assert all(np.array_equal(old[level], generate_anchors(64)[level]) for level in old)
    with pytest.raises(TypeError, match="give input_size= .*not both"):
        LabelEncoder(input_size=64, image_size=64)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        num_anchors(64, image_sise=64)


def test_the_layers_take_the_old_name_at_call_time_too():
    encoder = LabelEncoder()
    boxes, classes = np.array([[8.0, 8.0, 40.0, 40.0]], np.float32), np.array([0])
    new = encoder(boxes, classes, input_size=(64, 64))
    with pytest.warns(DeprecationWarning, match="LabelEncoder call: image_size= is now input_size="):
        old = encoder(boxes, classes, image_size=(64, 64))
    assert np.array_equal(new["cls_targets"], old["cls_targets"])


def test_a_keras_file_saved_with_the_old_layer_key_loads_silently(tmp_path):
    """A .keras file whose given decoder was saved before the rename (its config says "image_size")."""
    decoder = DetectionDecoder(input_size=64, max_detections=7)
    model = RetinaNet(**TINY, num_classes=2, decoder=decoder)
    path = tmp_path / "new.keras"
    model.save(path)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                assert '"input_size": 64' in text
                data = text.replace('"input_size": 64', '"image_size": 64').encode()
                assert json.loads(data)
            target.writestr(item, data)
    loaded = _quietly(lambda: keras.saving.load_model(old))
    assert loaded.decoder.input_size == 64 and loaded.decoder.max_detections == 7
    image = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    assert np.allclose(loaded.predict(image)["scores"], model.predict(image)["scores"])


def test_report_threshold_is_the_reports_name():
    import inspect

    for function in (keras_retina.build_report, keras_retina.write_report):
        assert "report_threshold" in inspect.signature(function).parameters
    for function in (keras_retina.predict_pictures, keras_retina.detect_video):
        assert "draw_threshold" in inspect.signature(function).parameters


def test_the_old_flag_name_draws_as_before_with_a_note(tmp_path):
    make_tiny_model_dir(tmp_path / "run")
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "p.png")
    args = ["predict", "--model_dir=run", "p.png", "--output_dir=out"]
    result = run_command(*args, "--score_threshold=0.9", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--score_threshold is now --draw_threshold (the same meaning)" in result.stderr
    assert "detection(s) >= 0.9" in result.stdout
    result = run_command(*args, "--draw_threshold=0.8", cwd=tmp_path)
    assert result.returncode == 0 and "detection(s) >= 0.8" in result.stdout and "now" not in result.stderr
    both = run_command(*args, "--score_threshold=0.9", "--draw_threshold=0.8", cwd=tmp_path)
    assert both.returncode == 2 and "give --draw_threshold alone" in both.stderr
