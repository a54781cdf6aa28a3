"""LiteRT and ONNX exports, run by their own runtimes (ai-edge-litert, onnxruntime) against the SavedModel."""

import json
import os

import numpy as np
import onnx
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.lite.python import schema_py_generated as schema

from keras_retina import RetinaNet
from keras_retina.data import pipeline
from keras_retina.data.readers import coco_json
from keras_retina.data.source import DatasetSource
from keras_retina.deploy import fixed_size_detector, litert, metadata, runtime
from keras_retina.deploy import onnx as onnx_export
from keras_retina.deploy import saved_model as export
from keras_retina.errors import DataError, UsageError
from keras_retina.evaluation import coco_metrics
from keras_retina.model_dir import ModelDir
from keras_retina.modeling import transform
from keras_retina.modeling.detection_decoder import NMS_IOU_THRESHOLD, SCORE_THRESHOLD, PostprocessSettings
from keras_retina.modeling.transform import ResizePolicy

from command_line import keras_retina
from conftest import TINY, TINY_FLAGS, assert_same_detections

DEMO_INPUT = (96, 128)  # the demo's landscape canvas: its 4:3 pictures go in at scale 1
# The demo recipe, shortened: enough for AP50 ~0.9 on the demo's validation pictures in ~1 minute.
SHORT_DEMO = ["--flagfile=configs/demo.flags", "--train_steps=300", "--warmup_steps=50", "--lr_boundaries=200,250",
              "--eval_every_steps=300", "--checkpoint_every_steps=300", "--verbose=0"]
# float32 files against the SavedModel (the bounds): boxes normalised, scores.
BOX_TOLERANCE, SCORE_TOLERANCE = 1e-3, 1e-4
# The stated tolerances of the lossy modes, as COCO AP50 on the demo's validation pictures:
# float16 and dynamic-range within this of the float32 file's (one object more or less moves AP50 on these
# 33 pictures by about 0.01, so a tighter bound fails on a single score crossing a threshold, run to run);
# int8 at least this share of the SavedModel's.
AP50_DROP = {"float16": 0.02, "dynamic": 0.02}
INT8_AP50_SHARE = 0.95


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo recipe trained for 300 steps (and exported as a SavedModel, as train does)."""
    root = tmp_path_factory.mktemp("demo")
    result = keras_retina("train", *SHORT_DEMO, cwd=str(root))
    assert result.returncode == 0, result.stderr[-3000:]
    net, label_map, _, _ = ModelDir(str(root / "runs/demo")).load_model()
    saved_model = tf.saved_model.load(str(root / "runs/demo/export/demo/1"))
    val = coco_json.read_coco_json(str(root / "demo_data/val.json"), str(root / "demo_data/val"))
    return {"root": root, "net": net, "label_map": label_map, "val": val,
            "serving": saved_model.signatures["serving_image_tensor"], "keep": saved_model}


def _inputs(demo, size, count=8):
    """Validation pictures letterboxed to `size`: uint8 [size..., 3] each."""
    examples = demo["val"].examples().take(count)
    return [transform.letterbox(e["image"].numpy(), size, demo["net"].resize_policy)[0] for e in examples]


def _assert_same_detections(file_out, saved_out, label=""):
    """A file's outputs and the SavedModel's for one image: `conftest.assert_same_detections` at
    the issue's bounds (boxes normalised, scores)."""
    rows = [(out["detection_boxes"][0, :n], out["detection_scores"][0, :n], out["detection_classes"][0, :n])
            for out in (file_out, saved_out) for n in [int(out["num_detections"][0])]]
    assert_same_detections(*rows, BOX_TOLERANCE, SCORE_TOLERANCE, label)


def _saved(serving, image):
    return {k: v.numpy() for k, v in serving(inputs=tf.constant(image[None])).items()}


BUILTIN_OPS = {k for k in vars(schema.BuiltinOperator) if not k.startswith("_")}


def _ops_in_flatbuffer(path):
    """Op names straight from the flatbuffer's operator codes (builtin names, custom codes as given)."""
    with open(path, "rb") as f:
        model = schema.Model.GetRootAs(f.read(), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        custom = code.CustomCode()
        ops.add(custom.decode() if custom else names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
    return ops


@pytest.fixture(scope="module")
def demo_files(demo, tmp_path_factory):
    """A LiteRT file of each quantisation and an ONNX file, at DEMO_INPUT: the canvas the SavedModel
    gives the demo's 4:3 landscape pictures, so both see the same input (the tiny backbone's
    GroupNorm sees padding: equal inputs need equal canvases)."""
    root = tmp_path_factory.mktemp("files")
    net, label_map = demo["net"], demo["label_map"]
    train = coco_json.read_coco_json(str(demo["root"] / "demo_data/train.json"), str(demo["root"] / "demo_data/train"))
    calibration = [transform.letterbox(e["image"].numpy(), DEMO_INPUT, net.resize_policy)[0]
                   for e in train.examples(shuffle=True, seed=0).take(100)]
    files = {"onnx": str(root / "demo.onnx")}
    onnx_export.export_onnx(net, label_map, files["onnx"], DEMO_INPUT)
    for quantize in metadata.QUANTIZE:
        files[quantize] = str(root / f"demo_{quantize}.tflite")
        litert.export_litert(net, label_map, files[quantize], DEMO_INPUT, quantize,
                                    calibration if quantize == "int8" else None)
    return files


@pytest.mark.parametrize("kind", ["none", "onnx"])
def test_float32_files_detect_what_the_saved_model_detects(demo, demo_files, kind):
    model = runtime.load(demo_files[kind])
    assert model.input_size == DEMO_INPUT
    assert model.label_map == demo["label_map"]
    for i, image in enumerate(_inputs(demo, DEMO_INPUT)):
        _assert_same_detections(model.run(image[None]), _saved(demo["serving"], image), f"{kind} picture {i}")


def test_onnx_takes_any_batch_and_each_image_keeps_its_own_detections(demo, demo_files):
    model = runtime.load(demo_files["onnx"])
    dims = onnx.load(demo_files["onnx"]).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [*DEMO_INPUT, 3]
    images = np.stack(_inputs(demo, DEMO_INPUT, count=3))
    batch = model.run(images)
    for i, image in enumerate(images):
        alone = model.run(image[None])
        n = int(alone["num_detections"][0])
        assert int(batch["num_detections"][i]) == n
        np.testing.assert_allclose(batch["detection_boxes"][i, :n], alone["detection_boxes"][0, :n], atol=1e-5)
        np.testing.assert_array_equal(batch["detection_classes"][i, :n], alone["detection_classes"][0, :n])


def test_pictures_of_any_size_are_letterboxed_like_the_saved_model_resizes_them(demo, demo_files):
    """A 4:3 picture twice the input's size. The letterbox resizes it as the SavedModel does (its
    `transform.to_model_input`, at the policy's scale 1/2: the same pixels up to rounding to
    uint8), and `detect_picture` gives the file's detections on those pixels, mapped back to the
    picture: the SavedModel's detections of the same uint8 pixels (which fill its 96x128 canvas
    at scale 1, so boxes normalised to either are the same numbers)."""
    model = runtime.load(demo_files["none"])
    policy = demo["net"].resize_policy
    pictures = [e["image"].numpy() for e in demo["val"].examples() if e["image"].shape[:2] == (192, 256)][:4]
    assert len(pictures) == 4
    for i, picture in enumerate(pictures):
        image, scale = transform.letterbox(picture, DEMO_INPUT, policy)
        resized, saved_scale = transform.to_model_input(tf.constant(picture), policy)
        assert scale == float(saved_scale) == 0.5 and resized.shape == (*DEMO_INPUT, 3)
        np.testing.assert_allclose(image, resized.numpy(), atol=0.5 + 1e-3, rtol=0)
        boxes, scores, classes, names = model.detect_picture(picture)
        saved = _saved(demo["serving"], image)
        n = int(saved["num_detections"][0])
        assert_same_detections((boxes, scores, classes), (saved["detection_boxes"][0, :n],
                               saved["detection_scores"][0, :n], saved["detection_classes"][0, :n]),
                               BOX_TOLERANCE, SCORE_TOLERANCE, f"picture {i}")
        assert set(names) <= {entry["name"] for entry in demo["label_map"]}


def test_letterbox_and_the_way_back():
    # a 50 x 100 picture: the model's scale (shorter side 64: 1.28) fits a 128 x 128 input
    policy = ResizePolicy(64, 128, pad_color=(10.0, 20.0, 30.0))
    picture = np.full((50, 100, 3), 200, np.uint8)
    image, scale = transform.letterbox(picture, (128, 128), policy)
    assert scale == 1.28 and image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert (image[:64] == 200).all()
    assert (image[64:] == [10, 20, 30]).all()
    # a box over the picture's right half, in the input's normalised coordinates -> the picture's
    box = np.array([[0.0, 64 / 128, 64 / 128, 1.0]], np.float32)
    np.testing.assert_allclose(transform.to_picture(box, scale, (128, 128), (50, 100)),
                               [[0.0, 0.5, 1.0, 1.0]], atol=1e-6)
    # a box reaching into the padding is clipped to the picture
    np.testing.assert_allclose(transform.to_picture(np.array([[0.25, 0.0, 0.9, 0.5]]), scale, (128, 128),
                                                              (50, 100)), [[0.5, 0.0, 1.0, 0.5]], atol=1e-6)
    # at the model's scale (1.28: 64 x 128) it would not fit a 64 x 64 input: it is fitted instead (0.64)
    image, scale = transform.letterbox(picture, (64, 64), policy)
    assert scale == 0.64 and (image[:32] == 200).all() and (image[32:] == [10, 20, 30]).all()
    # a small picture is enlarged to the model's scale, not to the input's size
    image, scale = transform.letterbox(np.full((32, 40, 3), 9, np.uint8), (256, 256), policy)
    assert scale == 2.0 and (image[:64, :80] == 9).all() and (image[64:] == [10, 20, 30]).all()


@pytest.mark.parametrize("text,size", [("480,640", (480, 640)), ("640", (640, 640)), ("96x128", (96, 128))])
def test_input_size_flag(text, size):
    assert fixed_size_detector.parse_input_size(text) == size


@pytest.mark.parametrize("text", ["100,640", "0", "a,b", "1,2,3", "-32"])
def test_bad_input_size_names_the_flag(text):
    with pytest.raises(UsageError, match=f"--input_size={text}"):
        fixed_size_detector.parse_input_size(text)


def _metrics(model, source, label_map):
    return coco_metrics.evaluate_deployed(model, source.examples(), label_map)


def test_quantised_files_keep_the_accuracy_they_promise(demo, demo_files):
    """COCO AP50 through the LiteRT interpreter on the demo's 4:3 landscape validation pictures
    (they fill DEMO_INPUT at the model's scale, as in the SavedModel's canvas): float16 and
    dynamic-range within AP50_DROP of the float32 file, int8 at least INT8_AP50_SHARE of the
    SavedModel's on the same pictures through our evaluation pipeline."""
    landscape = DatasetSource(demo["val"].examples().filter(lambda e: tf.reduce_all(tf.shape(e["image"])[:2] ==
                                                                                     [192, 256])),
                              demo["label_map"])
    label_map = demo["label_map"]
    ap50 = {quantize: _metrics(runtime.load(demo_files[quantize]), landscape, label_map)["AP50"]
            for quantize in metadata.QUANTIZE}
    saved = coco_metrics.evaluate_coco(demo["net"], pipeline.eval_dataset(landscape, demo["net"].resize_policy, 16),
                                     label_map)
    print(f"AP50 on {saved['num_images']} pictures: SavedModel {saved['AP50']:.3f}, LiteRT files {ap50}")
    assert saved["num_images"] > 20 and saved["AP50"] > 0.7, "the comparison would say nothing"
    assert abs(ap50["none"] - saved["AP50"]) < 0.005, (saved["AP50"], ap50)  # the same inputs, float32
    for quantize, drop in AP50_DROP.items():
        assert ap50[quantize] >= ap50["none"] - drop, (quantize, ap50)
    assert ap50["int8"] >= INT8_AP50_SHARE * saved["AP50"], (saved["AP50"], ap50)


def test_files_hold_only_builtin_or_standard_ops_with_nms_inside(demo_files):
    for quantize in metadata.QUANTIZE:
        ops = _ops_in_flatbuffer(demo_files[quantize])
        assert "NON_MAX_SUPPRESSION_V5" in ops and "CONV_2D" in ops, quantize
        assert "WHILE" not in ops, quantize  # batch 1: the NMS runs once, without a loop
        assert ops <= BUILTIN_OPS - {"CUSTOM", "DELEGATE"}, (quantize, ops - BUILTIN_OPS)  # a custom op keeps its name
    graph = onnx.load(demo_files["onnx"]).graph
    ops = onnx_export.op_types(graph)
    assert ("", "NonMaxSuppression") in ops and ("", "Conv") in ops
    assert {domain for domain, _ in ops} == {""}
    onnx.checker.check_model(onnx.load(demo_files["onnx"]), full_check=True)


def test_int8_quantises_the_network_and_keeps_the_postprocessing_float(demo_files):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=demo_files["int8"])
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kinds = {}
    for op in interpreter._get_ops_details():
        for index in op["outputs"]:
            kinds.setdefault(op["op_name"], set()).add(tensors[index]["dtype"].__name__)
    assert "int8" in kinds["CONV_2D"]
    for op in ("LOGISTIC", "EXP", "TOPK_V2"):  # scores, box sizes, top-k (values; its indices are int32)
        assert kinds[op] <= {"float32", "int32"} and "float32" in kinds[op], (op, kinds[op])
    scope = fixed_size_detector.POSTPROCESS_SCOPE + "/"
    postprocessing = [t for t in tensors.values() if any(part.startswith(scope) for part in t["name"].split(";"))]
    assert len(postprocessing) > 50  # the names the export relies on are there
    assert not [t["name"] for t in postprocessing if t["dtype"] == np.int8]


def test_class_names_and_input_travel_inside_the_files(demo, demo_files):
    for kind, size in (("int8", DEMO_INPUT), ("onnx", DEMO_INPUT)):
        document = runtime.load(demo_files[kind]).metadata
        assert document["label_map"] == demo["label_map"]
        assert (document["input"]["height"], document["input"]["width"]) == size
        assert document["input"]["dtype"] == "uint8" and document["input"]["channels"] == "RGB"
        assert document["postprocess"]["max_detections"] == 100
    assert json.loads(litert.read_metadata(demo_files["int8"]))["quantize"] == "int8"


def test_wrong_input_shape_or_dtype_is_a_clear_error(demo_files):
    wrong = {"shape": np.zeros((1, 64, 64, 3), np.uint8), "dtype": np.zeros((1, *DEMO_INPUT, 3), np.float32),
             "batch": np.zeros((2, *DEMO_INPUT, 3), np.uint8)}
    litert_model = runtime.load(demo_files["none"])
    for value in wrong.values():
        with pytest.raises(ValueError, match=r"input images must be uint8 \[1, 96, 128, 3\]"):
            litert_model.run(value)
    onnx_model = runtime.load(demo_files["onnx"])
    assert onnx_model.run(wrong["batch"])["num_detections"].shape == (2,)  # ONNX: any batch
    for name in ("shape", "dtype"):
        with pytest.raises(ValueError, match=r"input images must be uint8 \[N, 96, 128, 3\]"):
            onnx_model.run(wrong[name])
    # the runtimes themselves, as an app calls them, refuse with their own messages
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=demo_files["none"])
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    with pytest.raises(ValueError, match="Dimension mismatch"):
        interpreter.set_tensor(index, wrong["shape"])
    with pytest.raises(ValueError, match="type FLOAT32 but expected type UINT8"):
        interpreter.set_tensor(index, wrong["dtype"])
    session = onnxruntime.InferenceSession(demo_files["onnx"], providers=["CPUExecutionProvider"])
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument, match="dimensions"):
        session.run(None, {"images": wrong["shape"]})
    with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument, match="type"):
        session.run(None, {"images": wrong["dtype"]})


def test_hostile_files_are_refused_naming_them(tmp_path, demo_files):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="junk.tflite"):
        runtime.load(str(junk))
    junk_onnx = tmp_path / "junk.onnx"
    junk_onnx.write_bytes(b"not a protobuf" * 10)
    with pytest.raises(DataError, match="junk.onnx"):
        runtime.load(str(junk_onnx))
    # a LiteRT file whose metadata is not ours, or lies about its labels
    with open(demo_files["none"], "rb") as f:
        flatbuffer = f.read()
    for name, payload in (("other.tflite", b"{\"format\": \"something else\"}"),
                          ("bad_labels.tflite", json.dumps({**json.loads(litert.read_metadata(
                              demo_files["none"])), "label_map": [{"id": "x", "name": 3}]}).encode())):
        path = tmp_path / name
        path.write_bytes(litert.with_metadata(flatbuffer, metadata.KEY, payload))
        with pytest.raises(DataError, match=name):
            runtime.load(str(path))
    # metadata that does not describe the graph (another input size)
    document = json.loads(litert.read_metadata(demo_files["none"]))
    document["input"]["height"] = 128
    lying = tmp_path / "lying.tflite"
    lying.write_bytes(litert.with_metadata(flatbuffer, metadata.KEY, json.dumps(document).encode()))
    with pytest.raises(DataError, match="lying.tflite: its graph .* is not what its metadata says"):
        runtime.load(str(lying))
    with pytest.raises(UsageError, match="is a folder"):
        runtime.load(str(tmp_path))
    for text in ("[1, 2]", '{"format": "keras_retina.detector/1", "input": null}',
                 json.dumps({**document, "input": {**document["input"], "resize": {
                     "resize": "shorter_side", "image_size": 96, "max_image_size": 1e400}}}),
                 "[" * 100000 + "]" * 100000):
        with pytest.raises(DataError, match="hand.tflite: its keras_retina metadata is not"):
            metadata.parse(text, "hand.tflite")
    other = tmp_path / "model.pb"
    other.write_bytes(b"x")
    with pytest.raises(UsageError, match="give a .tflite or .onnx file"):
        runtime.load(str(other))


VOTING = PostprocessSettings(box_voting_sigma=0.025)  # the random ResNet's files vote: voting is in every file too


def _random_r50(tmp_path):
    """A random ResNet-50 RetinaNet (3 classes; the paper's FPN and heads, narrowed to 64 channels:
    the ResNet's BatchNorm layers are what this model adds to the tiny ones' checks); prior 0.3
    gives it many detections with varied scores. Its SavedModel decodes with score voting (VOTING)."""
    tf.keras.utils.set_random_seed(5)
    model = RetinaNet(num_classes=3, backbone="resnet50", image_size=128, backbone_weights=None,
                      fpn_filters=64, head_filters=64, prior_probability=0.3)
    label_map = [{"id": 1, "name": "a"}, {"id": 5, "name": "b"}, {"id": 7, "name": "c"}]
    path = export.export_saved_model(model, label_map, str(tmp_path / "serving"), postprocess=VOTING)
    return model, label_map, tf.saved_model.load(path)


def test_random_resnet50_files_detect_what_its_saved_model_detects(tmp_path):
    """With score voting fixed in all three (--box_voting_sigma=0.025): the LiteRT and ONNX files detect
    what the SavedModel detects, and their metadata say they vote."""
    model, label_map, saved_model = _random_r50(tmp_path)
    size = (128, 128)
    litert.export_litert(model, label_map, str(tmp_path / "r50.tflite"), size, postprocess=VOTING)
    onnx_export.export_onnx(model, label_map, str(tmp_path / "r50.onnx"), size, postprocess=VOTING)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (*size, 3), dtype=np.uint8) for _ in range(2)]
    serving = saved_model.signatures["serving_image_tensor"]
    for name in ("r50.tflite", "r50.onnx"):
        deployed = runtime.load(str(tmp_path / name))
        assert deployed.metadata["postprocess"]["box_voting_sigma"] == 0.025
        for i, image in enumerate(images):
            _assert_same_detections(deployed.run(image[None]), _saved(serving, image), f"{name} image {i}")


def test_export_predict_evaluate_through_the_cli(demo, tmp_path):
    root = str(demo["root"])
    model_dir = os.path.join(root, "runs/demo")
    result = keras_retina("export", f"--model_dir={model_dir}", "--format=tflite", "--quantize=int8",
                          "--calibration_count=20", f"--export_dir={tmp_path}", cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Calibrating int8 on 20 pictures of" in result.stdout
    assert "all builtin" in result.stdout and "NON_MAX_SUPPRESSION_V5" in result.stdout
    int8_path = os.path.join(str(tmp_path), "retinanet_128x128_int8.tflite")  # the default: a square of L
    assert os.path.isfile(int8_path)
    onnx_path = os.path.join(str(tmp_path), "demo.onnx")
    result = keras_retina("export", f"--model_dir={model_dir}", "--format=onnx", "--input_size=96,128",
                          f"--output={onnx_path}", cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    # predict: the same 4:3 pictures through the ONNX file (letterboxed at scale 1/2, no padding) and
    # through the SavedModel (its resize policy: scale 1/2) give the same detections
    pictures = sorted(os.path.join(root, "demo_data/val", n) for n in os.listdir(os.path.join(root, "demo_data/val")))
    landscape = [p for p in pictures if Image.open(p).size == (256, 192)][:2]
    outputs = []
    for flag in (f"--model={onnx_path}", f"--saved_model={model_dir}/export/demo/1"):
        out = str(tmp_path / ("onnx" if flag.startswith("--model=") else "saved"))
        result = keras_retina("predict", flag, f"--output_dir={out}", *landscape, cwd=root)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs.append(json.load(open(os.path.join(out, "detections.json"))))
        assert sorted(os.listdir(out)) == sorted([os.path.basename(p) for p in landscape] + ["detections.json"])
    from_onnx, from_saved = outputs
    assert from_onnx and from_saved
    # The file is given the picture resized and rounded to uint8 outside its graph; the SavedModel
    # resizes in float inside its own: scores differ by a few 1e-4 (two fresh demo models here: up to
    # 4.3e-4 over 8 pictures, 1.07e-3 over all 33 landscape ones, 99% below 6.3e-4), boxes by
    # hundredths of a pixel. Those differences decide NMS where two boxes of a class overlap at
    # IoU 0.5 itself (a CI run: 0.49977 on one side, 0.5 or more on the other), and what the
    # box kept on one side only suppresses there in turn.
    _assert_same_coco_detections(from_onnx, from_saved, score_tolerance=5e-3)
    result = keras_retina("evaluate", f"--model={int8_path}", f"--model_dir={model_dir}", cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "COCO evaluation of" in result.stdout and "(int8, input 128x128)" in result.stdout
    metrics = json.load(open(int8_path + ".metrics.json"))
    assert metrics["num_images"] == 128 and metrics["AP50"] > 0.5


def _assert_same_coco_detections(ours, theirs, score_tolerance, iou_margin=0.01):
    """Two runs' COCO detections of the same pictures: each detection on one side has a twin on the
    other (same picture and class, score within `score_tolerance`, IoU >= 0.5), or its absence there
    is what NMS does: within `score_tolerance` of the decoder's threshold, or overlapping a better
    box of its class on the other side at IoU >= NMS_IOU_THRESHOLD - `iou_margin` (that box
    suppressed it there)."""
    unmatched = {"ours": list(ours), "theirs": []}
    for b in theirs:
        same = [a for a in unmatched["ours"] if (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
                and abs(a["score"] - b["score"]) < score_tolerance and _coco_iou(a["bbox"], b["bbox"]) >= 0.5]
        if same:
            unmatched["ours"].remove(same[0])
        else:
            unmatched["theirs"].append(b)
    for side, other in (("ours", theirs), ("theirs", ours)):
        for a in unmatched[side]:
            kin = [b for b in other if (b["image_id"], b["category_id"]) == (a["image_id"], a["category_id"])]
            suppressors = [b for b in kin if b["score"] > a["score"] - score_tolerance
                           and _coco_iou(a["bbox"], b["bbox"]) >= NMS_IOU_THRESHOLD - iou_margin]
            assert a["score"] <= SCORE_THRESHOLD + score_tolerance or suppressors, (
                f"{side} only: {a}; the other side's of its class: {[(b['score'], b['bbox']) for b in kin]}")


def _coco_iou(a, b):
    """IoU of two COCO [x, y, width, height] boxes."""
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-12)


@pytest.mark.parametrize("args,message", [
    (["--format=onnx", "--quantize=int8"], "--quantize=int8 is for --format=tflite"),
    (["--format=saved_model", "--input_size=128"], "--input_size=128 is for --format=tflite|onnx"),
    (["--format=tflite", "--input_size=100"], "--input_size=100: give HEIGHT,WIDTH"),
    (["--format=tflite", "--quantize=int8", "--calibration_images=nowhere"], "--calibration_images=nowhere: no such"),
    (["--format=tflite", "--calibration_images=pics"], "--calibration_images is for --format=tflite --quantize=int8"),
    (["--format=tflite", "--output=model.onnx"], "--output=model.onnx: a --format=tflite file ends in .tflite"),
    (["--format=onnx", "--version=3"], "--version=3 numbers SavedModels"),
])
def test_bad_export_flags_are_refused_naming_them(demo, tmp_path, args, message):
    result = keras_retina("export", f"--model_dir={demo['root']}/runs/demo", f"--export_dir={tmp_path}", *args,
                          cwd=str(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr


def test_a_model_with_torchvision_conventions_exports_too(tmp_path):
    """The settings converted torchvision models have (their anchors, GroupNorm heads, symmetric
    P6/P7 padding, mean-colour padding, floored sizes, tight canvases) on a tiny random model."""
    tf.keras.utils.set_random_seed(9)
    model = RetinaNet(**{**TINY, "image_size": 96, "max_image_size": 128, "head_filters": 32}, num_classes=3,
                      prior_probability=0.3,
                      anchor_geometry="torchvision", head_norm="group_norm", fpn_extra_padding="symmetric",
                      pad_color=(123.675, 116.28, 103.53), resize_rounding="floor", canvas="tight")
    label_map = [{"id": 2, "name": "x"}, {"id": 3, "name": "y"}, {"id": 8, "name": "z"}]
    serving = tf.saved_model.load(export.export_saved_model(model, label_map, str(tmp_path / "serving"))
                                  ).signatures["serving_image_tensor"]
    assert fixed_size_detector.default_input_size(model.resize_policy) == (128, 128)
    size = (96, 128)  # the SavedModel's canvas for a 96 x 128 picture: the same input for all three
    litert.export_litert(model, label_map, str(tmp_path / "tv.tflite"), size)
    onnx_export.export_onnx(model, label_map, str(tmp_path / "tv.onnx"), size)
    image = np.random.default_rng(3).integers(0, 255, (*size, 3), dtype=np.uint8)
    for name in ("tv.tflite", "tv.onnx"):
        deployed = runtime.load(str(tmp_path / name))
        assert deployed.metadata["input"]["pad_color"] == [123.675, 116.28, 103.53]
        assert deployed.metadata["input"]["resize_rounding"] == "floor"
        _assert_same_detections(deployed.run(image[None]), _saved(serving, image), name)


def test_train_checks_its_export_flags_before_training(tmp_path):
    result = keras_retina("train", "--flagfile=configs/demo.flags", "--format=onnx", "--quantize=int8",
                          cwd=str(tmp_path))
    assert result.returncode == 2 and "--quantize=int8 is for --format=tflite" in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_train_refuses_to_write_over_an_existing_file_before_training(tiny_coco, tmp_path):
    (tmp_path / "out").mkdir()
    # TINY: S 64, L round(5/3 S) = 107, up to 32: 128
    (tmp_path / "out" / "retinanet_128x128.onnx").write_bytes(b"a user's file")
    result = keras_retina("train", *TINY_FLAGS, "--train_steps=2", f"--train_annotations={tiny_coco['train'][0]}",
                          f"--train_images={tiny_coco['train'][1]}", "--model_dir=run", "--export_dir=out",
                          "--format=onnx", cwd=str(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "retinanet_128x128.onnx exists already" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training
    assert (tmp_path / "out" / "retinanet_128x128.onnx").read_bytes() == b"a user's file"


def test_a_file_cannot_be_written_where_a_folder_is_needed(demo, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    result = keras_retina("export", f"--model_dir={demo['root']}/runs/demo", "--format=onnx",
                          f"--output={tmp_path}/taken/model.onnx", cwd=str(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"cannot make {tmp_path}/taken for {tmp_path}/taken/model.onnx" in result.stderr
    assert "Traceback" not in result.stderr


def test_predict_with_a_file_refuses_postprocessing_flags(demo_files, tmp_path):
    result = keras_retina("predict", f"--model={demo_files['none']}", "--max_detections=5", "photo.jpg",
                          cwd=str(tmp_path))
    assert result.returncode == 2
    assert "--max_detections: a LiteRT / ONNX file's postprocessing was fixed when it was exported" in result.stderr


def test_score_voting_moves_boxes_only():
    """The decoder with --box_voting_sigma against the model's own: the same detections, scores and
    classes, most boxes moved (the files run it: test_random_resnet50_files_detect_what_its_saved_model_detects)."""
    tf.keras.utils.set_random_seed(4)
    model = RetinaNet(**TINY, num_classes=2, prior_probability=0.3)
    image = np.random.default_rng(1).integers(0, 255, (1, 64, 64, 3)).astype(np.float32)
    outputs = model(image)
    plain = {k: np.asarray(v) for k, v in model.decoder(outputs, input_size=(64, 64)).items()}
    voted = {k: np.asarray(v) for k, v in VOTING.apply(model.decoder)(outputs, input_size=(64, 64)).items()}
    n = int(plain["num_detections"][0])
    assert n > 5 and int(voted["num_detections"][0]) == n
    for key in ("scores", "classes"):
        np.testing.assert_array_equal(voted[key], plain[key])
    moved = np.abs(voted["boxes"][0, :n] - plain["boxes"][0, :n]).max(axis=-1)
    assert (moved > 0.064).sum() >= n // 2  # most boxes moved by more than a tenth of a pixel
