"""`keras_retina export`: a SavedModel version for TF Serving, or a LiteRT / ONNX file."""

from keras_retina.cli.flags import EXPORT_OPTIONS, postprocess_settings
from keras_retina.deploy import export
from keras_retina.pretrained import registry


def run(configs, options, args):
    export.export(registry.resolve_model_dir(options["model_dir"]), mixed_precision=configs["train"].mixed_precision,
                  checkpoint=options["checkpoint"],
                  **{name: options[name] for name in EXPORT_OPTIONS}, postprocess=postprocess_settings(options))
    return 0
