"""The commands' own flags (those that are not config fields): name -> (kind, default, help, group), and
their checks. `POSTPROCESS_FLAGS` and `TILE_FLAGS` map the postprocessing and tiling flags to the
settings they set, checked by those settings' own rules; `cli.flags` defines them with the configs'.
"""

from keras_retina.deploy.metadata import EXPORT_FORMATS, QUANTIZE
from keras_retina.inference.tiling import CHECKS as TILE_CHECKS
from keras_retina.inference.tiling import MERGES as TILE_MERGES
from keras_retina.inference.video import CHECKS as VIDEO_CHECKS
from keras_retina.modeling.detection_decoder import CHECKS as POSTPROCESS_CHECKS
from keras_retina.modeling.detection_decoder import SETTINGS as POSTPROCESS_SETTINGS
from keras_retina.ops.drawing import DRAW_THRESHOLD
from keras_retina.ops.tiles import MAX_TILES

# The commands' own flags: name -> (kind, default, help, group).
OPTIONS = {
    "model_dir": ("string", None, "The run folder: checkpoints, logs, metrics, the model (check-data: a trained "
                  "model whose confident detections on no label point at labels that may be missing).", "run"),
    "resume_with_other_data": ("boolean", False, "train: continue a model_dir on another label map or other "
                               "data flags than it was trained on (refused otherwise).", "run"),
    "max_images": ("integer", 1000, "Images for the anchor-coverage report (check-data reads every image).", "run"),
    "checkpoint": ("enum", ("best", ["best", "latest"]), "evaluate, export, predict: the model_dir's best "
                   "checkpoint (its best validation metric; the latest when none was kept) or its latest.", "run"),
    "report_dir": ("string", None, "check-data: write the data report page (counts, box sizes and shapes against "
                   "the anchors, samples of each class, labels to look at, copies across splits) into this folder.",
                   "run"),
    "write_coco": ("string", None, "check-data: also write the training annotations (any format) as this COCO JSON "
                   "file, and the validation ones beside it (-val before the suffix).", "run"),
    "output": ("string", None, "evaluate: JSON file for the metrics (default model_dir/eval, or FILE.metrics.json "
               "for --model=FILE); export --format=tflite|onnx: the file to write; check-data: JSON file for the "
               "counts, problems and anchor coverage of each split; rank: the ranking's CSV file (default "
               "ranking.csv).", "run"),
    "export_dir": ("string", None, "SavedModel base folder; versions go in numbered subfolders, as TF Serving "
                   "expects (train exports at the end when set).", "export"),
    "version": ("integer", None, "Version number (default: one more than the latest).", "export"),
    "format": ("enum", (EXPORT_FORMATS[0], list(EXPORT_FORMATS)), "saved_model (TF Serving), tflite "
               "(LiteRT flatbuffer, builtin ops only) or onnx (standard ops, any batch); the last two have a "
               "fixed --input_size and are written to --output or into --export_dir.", "export"),
    "input_size": ("string", None, "tflite/onnx: the fixed input, HEIGHT,WIDTH (multiples of 32) or one side for "
                   "a square (default: a square of the model's longer side L rounded up to 32, so pictures of either "
                   "orientation keep the model's scale: 128 for the demo, 1344 at 800/1333; resize=square "
                   "models: their square).", "export"),
    "quantize": ("enum", (QUANTIZE[0], list(QUANTIZE)), "tflite: none (float32), float16 "
                 "(weights), dynamic (int8 weights) or int8 (network int8, calibrated; postprocessing float).",
                 "export"),
    "calibration_images": ("string", None, "tflite int8: a folder of pictures to calibrate on (default: the "
                           "model_dir's training data, else its validation data).", "export"),
    "calibration_count": ("integer", 200, "tflite int8: pictures to calibrate on.", "export"),
    "nms_score_threshold": ("float", None, "Score threshold (default: the model's, 0.05).", "export"),
    "pre_nms_top_k": ("integer", None, "Candidates per level (default: the model's, 1000).", "export"),
    "nms_iou_threshold": ("float", None, "NMS IoU (default: the model's, 0.5).", "export"),
    "max_detections": ("integer", None, "Detections per image (default: the model's, 100).", "export"),
    "box_voting_sigma": ("float", None, "Score voting after NMS: 0 (off) or its sigma, 0.025 PAA's (default: the "
                         "model's, 0: off; modeling/detection_decoder.py).", "export"),
    "saved_model": ("string", None, "An exported SavedModel version folder.", "predict"),
    "model": ("string", None, "predict: a registered detector's name (keras_retina models), or, for predict and "
              "evaluate, a .tflite or .onnx file from keras_retina export (run with "
              "ai-edge-litert / onnxruntime).", "predict"),
    "output_dir": ("string", "predictions", "Where pictures and detections.json go.", "predict"),
    "draw_threshold": ("float", DRAW_THRESHOLD, "Draw (and print) detections scoring at least this; the "
                       "decoder's own cut is --nms_score_threshold.", "predict"),
    "save_annotations": ("string", None, "Also write the detections as pre-labels a labelling tool imports: "
                         "voc, yolo, coco, csv, labelstudio or cvat (inference/prelabels.py), at each class's "
                         "labelling threshold.", "predict"),
    "prelabel_threshold": ("float", None, "--save_annotations: one score threshold for every class (default: per "
                           "class, the score that still finds 90% of its validation objects in the model_dir's "
                           "evaluation report; else 0.3).", "predict"),
    "prelabel_classes": ("string", None, "--save_annotations=yolo: your project's data.yaml or classes.txt, whose "
                         "class indices the labels use (default: the model's order).", "predict"),
    "labelstudio_from_name": ("string", "label", "--save_annotations=labelstudio: the RectangleLabels name of your "
                              "labelling config.", "predict"),
    "labelstudio_to_name": ("string", "image", "--save_annotations=labelstudio: the Image name of your labelling "
                            "config (also the task's data key).", "predict"),
    "labelstudio_image_url": ("string", "/data/local-files/?d=", "--save_annotations=labelstudio: what goes before a "
                              "picture's file name in its task's URL (your storage's prefix).", "predict"),
    "score_threshold": ("float", None, "Renamed --draw_threshold (the same meaning); this name goes in the next "
                        "release.", "predict"),
    "tiles_dir": ("string", None, "tile-data: the folder for the tiles (train/, val/) and their annotations "
                  "(train.json, val.json).", "tiling"),
    "tile_rule": ("enum", ("visible", ["visible", "centre"]), "tile-data: a box goes to a tile when at least "
                  "--tile_min_visible of its area is inside it (visible) or its centre is (centre); it is clipped.",
                  "tiling"),
    "tile_min_visible": ("float", 0.6, "tile-data --tile_rule=visible: the share of a box's area a tile must hold.",
                         "tiling"),
    "tile_cut": ("enum", ("ignore", ["ignore", "drop"]), "tile-data: a box a tile cuts but does not take becomes a "
                 "crowd box there (evaluation ignores detections on it) or is dropped.", "tiling"),
    "tile_empty": ("enum", ("keep", ["keep", "drop"]), "tile-data: tiles without boxes are kept (background "
                   "examples) or left out.", "tiling"),
    "tile_format": ("enum", ("jpg", ["jpg", "png"]), "tile-data: the tiles' picture format.", "tiling"),
    "tile": ("integer", 0, "predict: detect on large pictures (aerial, satellite, scans; tiled TIFFs of any size) "
             "by overlapping tiles of this many model pixels, boxes mapped back to the picture (0: the whole picture "
             "at the model's scale). The model's training --image_size is a good tile.", "predict"),
    "tile_overlap": ("float", 0.2, "predict --tile, tile-data: the share of a tile its neighbours overlap.",
                     "predict"),
    "tile_scale": ("float", 1.0, "predict --tile: shrink the picture by this first (0.5: a tile covers twice "
                   "its size).", "predict"),
    "tile_merge": ("enum", (TILE_MERGES[0], list(TILE_MERGES)), "predict --tile: nms removes an object's copies from "
                   "overlapping tiles; merge also joins the parts of an object cut by a tile's border; wbf averages "
                   "the copies (weighted box fusion, weighted by score) and joins the parts.", "predict"),
    "tile_merge_iou": ("float", 0.5, "predict --tile: the overlap at which boxes are one object (IoU for nms "
                       "and wbf, of the smaller box for merge and wbf's cut parts).", "predict"),
    "max_tiles": ("integer", MAX_TILES, "predict --tile: refuse a picture needing more tiles than this (its header "
                  "alone decides the count; raise it for a real picture that large, which takes time in "
                  "proportion).", "predict"),
    "tile_whole_picture": ("boolean", False, "predict --tile: also detect on the whole picture (objects larger "
                           "than a tile).", "predict"),
    "every_nth_frame": ("integer", 1, "predict on videos: detect on every Nth frame (the others show the latest "
                        "detections).", "predict"),
    "max_frames": ("integer", 0, "predict on videos: stop after this many frames (0: all).", "predict"),
    "detect_batch_size": ("integer", 4, "predict: video frames or tiles per call of the model.", "predict"),
    "rank_mirror": ("boolean", True, "rank: also detect each picture mirrored and count where the two disagree "
                    "(twice the detection time).", "rank"),
    "runner": ("enum", ("direct", ["direct", "prism", "dataflow", "flink", "spark"]), "detect-batch, "
               "write-records: the Beam runner (direct: processes on this machine, offline; the others: "
               "docs/scale.md).", "batch"),
    "workers": ("integer", 2, "detect-batch, write-records --runner=direct: worker processes, each with the model "
                "loaded once (1: all in this process).", "batch"),
    "shards": ("integer", 0, "detect-batch, write-records: output shards (default one per 1,000 inputs); a rerun "
               "skips the shards already written.", "batch"),
    "records_dir": ("string", None, "write-records: where the TFRecord shards, the label map and the failures "
                    "go.", "batch"),
    "input_list": ("string", None, "detect-batch: a file listing inputs, one path or URI a line (gs://, s3://, ...).",
                   "batch"),
    "beam_options": ("string", "", "detect-batch, write-records: Beam's own pipeline options for the runner, as one "
                     "string (\"--project=P --region=R --temp_location=gs://B/tmp\").", "batch"),
    "source": ("enum", (None, ["torchvision", "detectron2"]), "Where the weights come from: torchvision "
               "(retinanet_resnet50_fpn[_v2] .pth) or detectron2 (model zoo RetinaNet .pkl).", "convert"),
    "weights": ("string", None, "The downloaded weight file, or a registered detector's name (keras_retina models); "
                "never executed: only tensors are read.", "convert"),
}
OPTION_CHECKS = {
    "max_images": (lambda v: v > 0, "must be positive."),
    "version": (lambda v: v > 0, "must be positive."),
    "calibration_count": (lambda v: v > 0, "must be positive."),
    "draw_threshold": (lambda v: 0 <= v <= 1, "must be in [0, 1]."),
    "score_threshold": (lambda v: 0 <= v <= 1, "must be in [0, 1]."),
    "tile": (lambda v: v >= 0, "must be 0 (off) or a tile size in pixels."),
    "tile_min_visible": (lambda v: 0 < v <= 1, "must be in (0, 1]."),
    "every_nth_frame": VIDEO_CHECKS["every_nth_frame"],  # VideoSettings' rule; --max_frames' 0 is its None
    "max_frames": (lambda v: v >= 0, "must be 0 (all) or positive."),
    "workers": (lambda v: v >= 1, "must be 1 (all in this process) or more."),
    "shards": (lambda v: v >= 0, "must be 0 (one per 1,000 inputs) or positive."),
}
# The command-line flag of each postprocessing setting (detection_decoder.SETTINGS), checked by the
# decoder's own rules (`detection_decoder.CHECKS`).
POSTPROCESS_FLAGS = dict(zip(("nms_score_threshold", "pre_nms_top_k", "nms_iou_threshold", "max_detections",
                              "box_voting_sigma"), POSTPROCESS_SETTINGS, strict=True))
OPTION_CHECKS.update({flag: POSTPROCESS_CHECKS[setting] for flag, setting in POSTPROCESS_FLAGS.items()})
# The TileSettings field of each tiling flag, checked by its rules (`inference.tiling.CHECKS`).
TILE_FLAGS = {"tile_overlap": "overlap", "tile_scale": "scale", "detect_batch_size": "batch_size",
              "tile_merge": "merge", "tile_merge_iou": "merge_iou", "tile_whole_picture": "whole_picture",
              "max_tiles": "max_tiles"}
OPTION_CHECKS.update({flag: TILE_CHECKS[field] for flag, field in TILE_FLAGS.items() if field in TILE_CHECKS})
