"""`keras_retina rank PICTURE_OR_FOLDER ... --model_dir=RUN`: unlabelled pictures ordered by how much a
label would teach the model (`inference.ranking`), written as CSV (`--output`, default ranking.csv,
never overwriting a file), the first few printed with how they were scored."""

import os
import sys

import keras

from keras_retina.cli.flags import postprocess_settings
from keras_retina.cli.predict import expand_folders
from keras_retina.errors import UsageError
from keras_retina.files import new_name, read_json
from keras_retina.inference import prelabels as prelabel_lib
from keras_retina.inference import ranking
from keras_retina.inference import video as video_lib
from keras_retina.inference.detector import batch_detector, check_model
from keras_retina.model_dir import ModelDir
from keras_retina.pretrained import registry

SHOWN = 10  # ranked pictures printed


def run(configs, options, args):
    if registry.is_name(options["model"]):
        options = {**options, "model": None, "model_dir": registry.resolve_model_dir(options["model"])}
    paths = expand_folders(args)
    videos = [path for path in paths if video_lib.is_video(path)]
    if videos:
        raise UsageError(f"rank orders pictures; {videos[0]} is a video (extract the frames you would label).")
    output = options["output"] or "ranking.csv"
    if os.path.lexists(output):
        stem, suffix = os.path.splitext(os.path.basename(output))
        output = new_name(os.path.dirname(output), stem, suffix or ".csv")
    postprocess = postprocess_settings(options)
    check_model(options["model"], options["saved_model"], options["model_dir"], options["checkpoint"],
                postprocess=postprocess)
    weights, names, how = _class_weights(options)
    detect_batch = batch_detector(options["model"], options["saved_model"], options["model_dir"],
                                  configs["train"].mixed_precision, options["checkpoint"], postprocess=postprocess)
    bar = keras.utils.Progbar(len(paths), unit_name="picture")
    rows, failed = ranking.rank_pictures(detect_batch, paths, weights, mirror=options["rank_mirror"], names=names,
                                         progress=bar.update)
    if os.path.dirname(output):
        os.makedirs(os.path.dirname(output), exist_ok=True)
    ranking.write_ranking(rows, output)
    print(f"Ranked {len(rows)} picture(s) by uncertainty (entropy of scores >= {ranking.MIN_SCORE:g})"
          + (" + disagreement with the mirrored picture" if options["rank_mirror"] else "")
          + f"; classes weighted {how}. Best first:")
    for rank, row in enumerate(rows[:SHOWN], 1):
        found = ", ".join(f"{n} {name}" for name, n in sorted(row.classes.items(), key=lambda kv: -kv[1]))
        print(f"  {rank:>3}. {row.path}: {row.score:.2f} (uncertainty {row.uncertainty:.2f}, disagreement "
              f"{row.disagreement:.2f}; {row.detections} detection(s){': ' + found if found else ''})")
    print(f"The ranking is in {output}; label from the top.")
    if failed:
        print(f"{len(failed)} picture(s) could not be read and are not ranked (named above).", file=sys.stderr)
    return 1 if failed else 0


def _class_weights(options):
    """({category id: weight}, {category id: name}, a sentence saying where the weights come from)."""
    if options["saved_model"]:  # its class names come with its detections
        return {}, None, "equally (a SavedModel has no evaluation report to count its classes in)"
    if not options["model_dir"]:
        return {}, None, "equally (a model file has no evaluation report to count its classes in)"
    run = ModelDir(options["model_dir"])
    names = {e["id"]: e["name"] for e in run.read_label_map()}
    summary = read_json(run.summary_path) if os.path.isfile(run.summary_path) else None
    classes, path = prelabel_lib.report_classes(summary, options["model_dir"])
    weights = ranking.class_weights(classes)
    if not weights:
        return {}, names, "equally (the model_dir has no evaluation report to count its classes in)"
    return weights, names, (f"by rarity, sqrt(most / this class's validation objects) from {path} (" + ", ".join(
        f"{names.get(cid, cid)} {w:.1f}" for cid, w in sorted(weights.items(), key=lambda kv: -kv[1])[:6]) + ")")
