"""`keras_retina evaluate`: COCO metrics and the evaluation report of --model_dir's best checkpoint, or of a
--model file; the postprocessing flags (--nms_score_threshold, --box_voting_sigma, ...) evaluate a model_dir
with the settings an export would fix."""

from keras_retina.cli import flags
from keras_retina.evaluation.evaluate import evaluate_file, evaluate_model_dir
from keras_retina.pretrained import registry


def run(configs, options, args):
    options = {**options, "model_dir": registry.resolve_model_dir(options["model_dir"])}
    train = configs["train"]
    report = {"report": train.report, "report_pictures": train.report_pictures,
              "report_score_threshold": train.report_score_threshold}
    if options["model"]:
        from keras_retina.deploy import runtime

        evaluate_file(runtime.load(options["model"]), options["model_dir"], configs["data"], options["output"],
                      postprocess=flags.postprocess_settings(options), **report)
    else:
        evaluate_model_dir(options["model_dir"], configs["data"], train.batch_size, options["output"],
                           train.mixed_precision, options["checkpoint"],
                           postprocess=flags.postprocess_settings(options), **report)
    return 0
