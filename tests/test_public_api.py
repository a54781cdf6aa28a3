"""The functions that do what the commands do (docs/python-api.md's table) and the settings objects
they take: every parameter and every return type annotated, every settings object keyword-only,
frozen and documented field by field."""

import dataclasses
import inspect

import pytest

import keras_retina

COMMAND_FUNCTIONS = ("train", "evaluate_model_dir", "evaluate_file", "check_data", "export", "export_saved_model",
                     "picture_detector", "batch_detector", "predict_pictures", "detect_video", "detect_tiled",
                     "tile_dataset", "convert", "build_converted", "load_deployed")
SETTINGS = ("ExportSettings", "TileSettings", "VideoSettings", "PostprocessSettings")


def test_every_public_name_is_there():
    for name in keras_retina.__all__:
        assert getattr(keras_retina, name) is not None, name
    assert set(COMMAND_FUNCTIONS + SETTINGS) <= set(keras_retina.__all__)


@pytest.mark.parametrize("name", COMMAND_FUNCTIONS)
def test_command_functions_are_annotated(name):
    signature = inspect.signature(getattr(keras_retina, name))
    bare = [p.name for p in signature.parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.annotation is inspect.Parameter.empty]
    assert not bare, f"{name}: parameters without a type: {bare}"
    assert signature.return_annotation is not inspect.Signature.empty, f"{name}: no return type"


@pytest.mark.parametrize("name", SETTINGS)
def test_settings_are_keyword_only_frozen_and_documented(name):
    settings = getattr(keras_retina, name)
    fields = dataclasses.fields(settings)
    assert settings.__dataclass_params__.frozen and all(f.kw_only for f in fields)
    documented = [line.strip().split(":")[0] for line in settings.__doc__.splitlines()]
    assert [f.name for f in fields if f.name not in documented] == [], f"{name}: fields not in its docstring"
