"""The ModelConfig a training run trains, and what a resumed run may change of it.

`model_settings(run, model_config, train_config, label_map, postprocess)`: K from the label map,
--init_from's architecture (`fine_tuning.settings_from`), then `resolve_model_settings` against the
run's config.json when it resumes. The architecture and the matching must stay as the run began;
the postprocessing settings (`detection_decoder.SETTINGS`: score cut, NMS, score voting) decode and
do not train, so a resume keeps the run's own unless asked for others.
"""

import dataclasses

from keras_retina.config_fields import from_dict
from keras_retina.errors import UsageError
from keras_retina.modeling.detection_decoder import SETTINGS as POSTPROCESSING
from keras_retina.modeling.model_config import ModelConfig, upgrade_settings
from keras_retina.training import fine_tuning


def model_settings(run, model_config, train_config, label_map, postprocess=None):
    """The ModelConfig this run trains: K from the label map, --init_from's architecture
    (`fine_tuning.settings_from`), and for a resumed run its own settings (`resolve_model_settings`)."""
    model_config = dataclasses.replace(model_config, num_classes=len(label_map))
    if train_config.init_from:
        model_config = fine_tuning.settings_from(model_config, train_config.init_from, run.path)
    previous = run.read_config()["model"] if run.has_config() else None
    return resolve_model_settings(model_config, previous, run.path, postprocess)


def resolve_model_settings(model_config, previous, model_dir, postprocess=None):
    """`model_config` with an unset `freeze_backbone_at` taken from the resumed run (`previous`,
    config.json's "model" dict, or None for a new run) or from `backbone.default_freeze_at`. The
    postprocessing settings (`detection_decoder.SETTINGS`: they decode, they do not train) are
    those `postprocess` gives (a PostprocessSettings, or None) or `model_config` sets, else the
    resumed run's: a run may change them when it resumes. Any other difference from `previous`
    (but backbone_weights, which only initialises a new run) is a UsageError."""
    given = postprocess.given() if postprocess is not None else {}
    if previous is None:
        return dataclasses.replace(model_config, **given).resolved()
    previous = from_dict(ModelConfig, upgrade_settings(previous), f"{model_dir}/config.json")
    if model_config.freeze_backbone_at is None:
        model_config = dataclasses.replace(model_config, freeze_backbone_at=previous.freeze_backbone_at)
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    kept = {name: getattr(previous, name) for name in POSTPROCESSING
            if getattr(model_config, name) == defaults[name]}  # not asked for: the resumed run's
    model_config = dataclasses.replace(model_config, **{**kept, **given})
    changed = sorted(f.name for f in dataclasses.fields(ModelConfig) if f.name not in ("backbone_weights",
                     *POSTPROCESSING) and getattr(previous, f.name) != getattr(model_config, f.name))
    if changed:
        differences = "; ".join(f"{name}: {getattr(previous, name)!r} there, {getattr(model_config, name)!r} asked"
                                for name in changed)
        raise UsageError(f"--model_dir={model_dir} holds a model with different settings ({differences}); "
                         f"give its settings to resume it, or a new --model_dir to start over.")
    return model_config
