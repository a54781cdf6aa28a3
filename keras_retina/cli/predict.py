"""`keras_retina predict IMAGE ...`: detections drawn on pictures, and detections.json."""

from keras_retina.cli.flags import POSTPROCESS_FLAGS, postprocess_overrides
from keras_retina.errors import UsageError
from keras_retina.inference.detector import picture_detector
from keras_retina.inference.pictures import predict_pictures


def run(configs, options, args):
    if options["model"]:
        given = [f"--{flag}" for flag in POSTPROCESS_FLAGS if options.get(flag) is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: a LiteRT / ONNX file's postprocessing was fixed when it was "
                             f"exported; export it again with them.")
    detect = picture_detector(options["model"], options["saved_model"], options["model_dir"],
                              configs["train"].mixed_precision, **postprocess_overrides(options))
    failed = predict_pictures(detect, args, options["output_dir"], options["score_threshold"])
    return 1 if failed else 0
