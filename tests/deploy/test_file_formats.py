"""The table of file formats is the one place a format is added: export and runtime.load follow it."""

import json
import os

import pytest

from keras_retina.deploy import export, file_formats, runtime
from keras_retina.deploy.file_formats import FILE_FORMATS, FileFormat
from keras_retina.deploy.metadata import EXPORT_FORMATS
from keras_retina.errors import UsageError
from keras_retina.modeling.detection_decoder import PostprocessSettings

from conftest import make_tiny_model_dir


def test_every_format_names_an_exporter_and_a_runtime_that_exist():
    assert EXPORT_FORMATS == ("saved_model", "tflite", "onnx")
    for kind in FILE_FORMATS.values():
        assert callable(file_formats.load(kind.exporter))
        assert issubclass(file_formats.load(kind.runtime), runtime.DeployedModel)
        assert kind.requires is None or callable(file_formats.load(kind.requires))
        assert file_formats.by_suffix(f"a/b/model{kind.suffix.upper()}") is kind
    assert file_formats.by_suffix("model.keras") is None


class _FakeRuntime:
    def __init__(self, path, num_threads):
        self.path, self.document = path, json.loads(open(path).read())


def _fake_exporter(model, label_map, path, input_size, *, postprocess):
    with open(path, "w") as file:
        json.dump({"classes": [e["name"] for e in label_map], "input_size": list(input_size),
                   "max_detections": postprocess.apply(model.decoder).max_detections}, file)
    return {"path": path, "bytes": os.path.getsize(path), "ops": ["FAKE_OP"], "input_size": input_size}


def test_a_format_added_to_the_table_exports_and_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(FILE_FORMATS, "fake", FileFormat(
        name="fake", title="Fake", exporter=_fake_exporter, runtime=_FakeRuntime, requires=None, batch=2,
        ops="fake", quantizes=False, install="pip install fake-runtime"))
    make_tiny_model_dir(str(tmp_path / "run"))
    path = export.export(str(tmp_path / "run"), str(tmp_path / "out"), format="fake", input_size="64",
                         postprocess=PostprocessSettings(max_detections=3))
    assert path == str(tmp_path / "out" / "retinanet_64x64.fake")
    printed = capsys.readouterr().out
    assert "input: images uint8 [2, 64, 64, 3]" in printed and "all fake: FAKE_OP" in printed
    assert "(needs pip install fake-runtime)" in printed
    loaded = runtime.load(path)
    assert isinstance(loaded, _FakeRuntime)
    assert loaded.document == {"classes": ["a", "b"], "input_size": [64, 64], "max_detections": 3}
    with pytest.raises(UsageError, match="--quantize=int8 is for --format=tflite \\(got --format=fake\\)"):
        export.ExportSettings(format="fake", quantize="int8", export_dir=str(tmp_path / "out"))
    with pytest.raises(UsageError, match="--output=x.tflite: a --format=fake file ends in .fake"):
        export.ExportSettings(format="fake", output="x.tflite")
    with pytest.raises(UsageError, match="give a .tflite or .onnx or .fake file"):
        runtime.load(str(tmp_path / "run" / "config.json"))
