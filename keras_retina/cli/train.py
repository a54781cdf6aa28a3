"""`keras_retina train`: train (or resume) into --model_dir, then export when --export_dir is set."""

from keras_retina.cli.flags import EXPORT_OPTIONS, postprocess_settings
from keras_retina.deploy import export
from keras_retina.model_dir import ModelDir
from keras_retina.training import trainer
from keras_retina.training.strategy import is_chief, make_strategy


def run(configs, options, args):
    ModelDir(options["model_dir"])  # a missing --model_dir is an error before any work
    settings, postprocess = None, postprocess_settings(options)
    if options["export_dir"]:  # it exports at the end: its flags are checked now, not after training
        settings = export.ExportSettings(**{name: options[name] for name in EXPORT_OPTIONS},
                                         mixed_precision=configs["train"].mixed_precision)
        if settings.format != "saved_model":  # the file must not exist yet (the input size is the model's)
            settings.file_path(configs["model"].resize_policy)
    # MultiWorkerMirroredStrategy must exist before TensorFlow runs any op (reading the data does).
    strategy = make_strategy(configs["train"].strategy)
    summary = trainer.train(options["model_dir"], configs["model"], configs["train"], data_config=configs["data"],
                            strategy=strategy, allow_other_data=options["resume_with_other_data"],
                            coverage_images=min(options["max_images"], 500), postprocess=postprocess)
    print(trainer.format_summary(summary), flush=True)
    if settings is not None and is_chief(strategy):
        export.export(options["model_dir"], settings=settings, postprocess=postprocess)
    return 0


