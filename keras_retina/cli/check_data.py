"""`keras_retina check-data`: every problem in the data, what training does with it, anchor coverage; with
--model_dir, the labels a trained model finds missing; with --report_dir, the data report page."""

import os

from keras_retina.data.check import check_data
from keras_retina.data.label_checks import format_unlabelled, unlabelled_objects
from keras_retina.files import read_json, write_json
from keras_retina.model_dir import ModelDir

CONFIDENT = 0.5  # a detection's score that counts as confident when the model's report gives none


def run(configs, options, args):
    model_dir = options["model_dir"]
    if model_dir and not ModelDir(model_dir).latest_checkpoint():
        # a training flagfile names the run folder training will write: no model to compare with yet
        print(f"[labels] --model_dir={model_dir} holds no trained model yet: the labels are not compared with "
              f"a model's detections.", flush=True)
        model_dir = None
    options = {**options, "model_dir": model_dir}
    keep = {} if options["report_dir"] or options["model_dir"] else None
    check_data(configs["data"], configs["model"], options["max_images"], options["write_coco"], options["output"],
               keep=keep)
    if options["model_dir"]:
        _unlabelled(options, configs, keep)
    if options["report_dir"]:
        from keras_retina.evaluation.data_report import write_data_report
        from keras_retina.modeling.builder import anchor_generator

        path = write_data_report(options["report_dir"], keep["sources"], keep["document"],
                                 configs["model"].resize_policy, anchor_generator(configs["model"]))
        print(f"Data report: {path}")
    return 0


def _unlabelled(options, configs, keep):
    """The model's confident detections that no label covers, split by split (`label_checks`)."""
    from keras_retina.inference.detector import batch_detector
    from keras_retina.inference.prelabels import report_thresholds

    run = ModelDir(options["model_dir"])
    summary = read_json(run.summary_path) if os.path.isfile(run.summary_path) else None
    measured, _ = report_thresholds(summary, "recommended", run.path)
    label_map = next(iter(keep["sources"].values())).label_map
    theirs, ours = {e["id"]: e["name"] for e in run.read_label_map()}, {e["id"]: e["name"] for e in label_map}
    if theirs != ours:
        differ = sorted(f"{cid}: {theirs.get(cid, '-')} / {ours.get(cid, '-')}" for cid in set(theirs) | set(ours)
                        if theirs.get(cid) != ours.get(cid))
        print(f"[labels] --model_dir={run.path} was trained on other classes than these labels have (id: model / "
              f"data: {'; '.join(differ[:6])}{' ...' if len(differ) > 6 else ''}): its detections are not "
              f"compared with them.", flush=True)
        return
    thresholds = {e["id"]: measured.get(e["id"], CONFIDENT) for e in label_map}
    how = "each class's best-F1 score from the model's evaluation" if measured else f"score >= {CONFIDENT}"
    detect = batch_detector(model_dir=options["model_dir"], mixed_precision=configs["train"].mixed_precision)
    for split, source in keep["sources"].items():
        found = unlabelled_objects(source, lambda pixels: detect(pixels[None])[0], thresholds)
        print(format_unlabelled(split, found, how), flush=True)
        keep["document"]["splits"][split]["label_checks"]["unlabelled"] = found
    if options["output"]:
        write_json(keep["document"], options["output"])
