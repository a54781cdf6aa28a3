"""`keras_retina train`: train (or resume) into --model_dir, then export when --export_dir is set."""

from keras_retina.cli.flags import EXPORT_OPTIONS, postprocess_overrides
from keras_retina.deploy import export
from keras_retina.model_dir import ModelDir
from keras_retina.training import trainer
from keras_retina.training.strategy import is_chief, make_strategy


def run(configs, options, args):
    ModelDir(options["model_dir"])  # a missing --model_dir is an error before any work
    exporting = {name: options[name] for name in EXPORT_OPTIONS}
    if options["export_dir"]:  # it exports at the end: its flags are checked now, not after training
        export.check_options(options["model_dir"], **{k: v for k, v in exporting.items() if k != "calibration_count"})
        if options["format"] != "saved_model":  # the file must not exist yet (the input size is the model's)
            export.file_path(configs["model"].resize_policy, options["export_dir"], options["format"],
                             options["output"], options["input_size"], options["quantize"])
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op (reading the data does).
    strategy = make_strategy(configs["train"].strategy)
    summary = trainer.train(options["model_dir"], configs["model"], configs["train"], data_config=configs["data"],
                            strategy=strategy, allow_other_data=options["resume_with_other_data"],
                            coverage_images=min(options["max_images"], 500))
    print(trainer.format_summary(summary), flush=True)
    if options["export_dir"] and is_chief(strategy):
        export.export(options["model_dir"], mixed_precision=configs["train"].mixed_precision, **exporting,
                      **postprocess_overrides(options))
    return 0


