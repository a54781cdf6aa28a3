"""`keras_retina predict PICTURE_VIDEO_OR_FOLDER ...`: detections drawn on pictures (large ones by tiles)
and videos; a folder stands for its pictures and videos (by extension, sorted, not its sub-folders)."""

import os
import sys

from keras_retina.cli.flags import postprocess_settings
from keras_retina.cli.options import TILE_FLAGS
from keras_retina.errors import UsageError
from keras_retina.files import make_folder, read_json
from keras_retina.inference import prelabels as prelabel_lib
from keras_retina.inference import video as video_lib
from keras_retina.inference.detector import batch_detector
from keras_retina.inference.pictures import Prelabels, predict_pictures, predict_tiled_pictures
from keras_retina.inference.tiling import TileSettings
from keras_retina.model_dir import ModelDir
from keras_retina.ops.images import EXTENSIONS
from keras_retina.pretrained import registry


def run(configs, options, args):
    if registry.is_name(options["model"]):  # a registered detector: downloaded and converted once
        options = {**options, "model": None, "model_dir": registry.resolve_model_dir(options["model"])}
    args = expand_folders(args)
    videos = [path for path in args if video_lib.is_video(path)]
    pictures = [path for path in args if not video_lib.is_video(path)]
    prelabels = _prelabels(options, pictures)  # its flags checked before the model is loaded
    detect_batch = batch_detector(options["model"], options["saved_model"], options["model_dir"],
                                  configs["train"].mixed_precision, options["checkpoint"],
                                  postprocess=postprocess_settings(options))
    video_settings = video_lib.VideoSettings(every_nth_frame=options["every_nth_frame"],
                                             max_frames=options["max_frames"] or None,  # the flag's 0: all
                                             batch_size=options["detect_batch_size"])
    failed = 0
    if pictures and options["tile"]:
        settings = TileSettings(tile=options["tile"], **{field: options[flag] for flag, field in TILE_FLAGS.items()})
        failed += predict_tiled_pictures(detect_batch, pictures, options["output_dir"], options["draw_threshold"],
                                         settings=settings, prelabels=prelabels)
    elif pictures:
        failed += predict_pictures(lambda pixels: detect_batch(pixels[None])[0], pictures, options["output_dir"],
                                   options["draw_threshold"], prelabels=prelabels)
    taken = set()
    for path in videos:
        make_folder(options["output_dir"], "--output_dir")
        output, lines = video_lib.video_output_names(path, options["output_dir"], taken)
        summary = video_lib.detect_video(detect_batch, path, output, lines, settings=video_settings,
                                         draw_threshold=options["draw_threshold"], show_progress=True)
        print(f"{path}: {summary.frames} frames ({summary.detected} detected) in {summary.seconds:.1f} s, "
              f"{summary.frames / max(summary.seconds, 1e-9):.1f} frames/s -> {output}, {lines}", flush=True)
        if summary.error:
            print(f"{summary.error}; the {summary.frames} frames before it are written.", file=sys.stderr,
                  flush=True)
            failed += 1
    return 1 if failed else 0


def _prelabels(options, pictures):
    """predict's Prelabels when --save_annotations is set (checked before any picture is detected)."""
    if not options["save_annotations"]:
        return None
    settings = prelabel_lib.PrelabelSettings(
        format=options["save_annotations"], threshold=options["prelabel_threshold"],
        classes_file=options["prelabel_classes"], labelstudio_from_name=options["labelstudio_from_name"],
        labelstudio_to_name=options["labelstudio_to_name"], labelstudio_image_url=options["labelstudio_image_url"])
    prelabel_lib.check_names(pictures, settings.format)
    summary = None
    if options["model_dir"]:
        run = ModelDir(options["model_dir"])
        label_map = run.read_label_map()
        summary = read_json(run.summary_path) if os.path.isfile(run.summary_path) else None
    elif options["model"]:
        from keras_retina.deploy import runtime

        label_map = runtime.load(options["model"]).label_map
    elif options["saved_model"]:
        label_map = read_json(os.path.join(options["saved_model"], "assets", "label_map.json"))
    else:
        return None  # no model: batch_detector says what predict needs
    if settings.format == "yolo":
        prelabel_lib.yolo_order(settings, label_map)  # --prelabel_classes checked before any detection
    thresholds, how = prelabel_lib.labelling_thresholds(summary, label_map, settings.threshold,
                                                        options["model_dir"])
    return Prelabels(settings, label_map, thresholds, how)


FOLDER_EXTENSIONS = EXTENSIONS + (".tif", ".tiff") + video_lib.VIDEO_EXTENSIONS


def expand_folders(args):
    """The command's arguments with each folder replaced by its pictures and videos (sorted by name;
    sub-folders and other files left out); a folder with none of them is a usage error naming it."""
    paths = []
    for arg in args:
        if not os.path.isdir(arg):
            paths.append(arg)
            continue
        found = sorted(os.path.join(arg, name) for name in os.listdir(arg)
                       if name.lower().endswith(FOLDER_EXTENSIONS) and os.path.isfile(os.path.join(arg, name)))
        if not found:
            raise UsageError(f"{arg}: a folder without pictures or videos ({', '.join(FOLDER_EXTENSIONS)}).")
        paths.extend(found)
    return paths
