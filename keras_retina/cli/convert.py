"""`keras_retina convert`: a published torchvision / detectron2 COCO RetinaNet -> a new --model_dir."""

from keras_retina.errors import UsageError
from keras_retina.pretrained import convert, registry


def run(configs, options, args):
    if registry.is_name(options["weights"]):  # a registered file: downloaded and checked once
        item = registry.entry(options["weights"])
        if item["task"] != "detection":
            raise UsageError(f"--weights={options['weights']} is a backbone's ImageNet weights, not a detector.")
        weights = registry.fetch(options["weights"])
        options = {**options, "source": options["source"] or item["format"], "weights": weights}
    if not options["model_dir"] or not options["source"] or not options["weights"]:
        raise UsageError("convert needs --source (torchvision or detectron2), --weights (the downloaded file) and "
                         "--model_dir (a new folder).")
    summary = convert.convert(options["source"], options["weights"], options["model_dir"])
    print(convert.format_summary(summary), flush=True)
    return 0
