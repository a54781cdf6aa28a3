"""The exported SavedModel, loaded back the way TF Serving loads it."""

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_retina.deploy import saved_model as export
from keras_retina.errors import UsageError
from keras_retina.modeling import transform
from keras_retina.modeling.detection_decoder import PostprocessSettings

from command_line import keras_retina
from conftest import PETS, REPO, assert_close, make_pets_model_dir
from picture_files import gif, huge_png, png, random_pictures

LABEL_MAP = PETS


@pytest.fixture(scope="module")
def exported(pets_saved_model):
    return pets_saved_model


def _expected(model, array):
    """model.detect on the model's resize/pad (boxes clipped to the picture), mapped back and normalised as
    the export does."""
    image, scale = transform.to_model_input(tf.constant(array), model.resize_policy)
    h, w = array.shape[:2]
    picture = transform.resized_size(h, w, scale)  # boxes clipped to the picture, not its canvas
    out = {k: v.numpy() for k, v in model.detect(image[None], picture_sizes=picture[None]).items()}
    n = int(out["num_detections"][0])
    ratio = np.tile(picture.numpy() / [h, w], 2)  # the resize's own ratio per axis
    boxes = np.clip(out["boxes"][0, :n] / ratio / [h, w, h, w], 0, 1)
    ids = np.array([e["id"] for e in LABEL_MAP], np.float32)[out["classes"][0, :n]]
    return n, boxes, out["scores"][0, :n], ids


def test_layout_signatures_and_asset(exported):
    _, path = exported
    assert path.endswith(os.path.join("retinanet", "1"))
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert json.load(open(os.path.join(path, "assets", "label_map.json"))) == LABEL_MAP
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "serving_image_tensor"}
    spec = loaded.signatures["serving_default"].structured_input_signature[1]
    assert spec == {"inputs": tf.TensorSpec([None], tf.string, name="inputs")}
    outputs = loaded.signatures["serving_default"].structured_outputs
    assert set(outputs) == {"detection_boxes", "detection_scores", "detection_classes",
                            "detection_class_names", "num_detections"}


def test_mixed_size_batch_matches_model_predict(exported):
    model, path = exported
    serve = tf.saved_model.load(path).signatures["serving_default"]
    arrays = random_pictures()
    out = serve(inputs=tf.constant([png(a) for a in arrays]))
    assert out["detection_boxes"].shape == (3, 100, 4)
    for i, array in enumerate(arrays):
        n, boxes, scores, ids = _expected(model, array)
        assert n > 10 and int(out["num_detections"][i]) == n
        assert_close(out["detection_scores"][i, :n], scores, atol=1e-5)
        assert_close(out["detection_classes"][i, :n], ids, atol=0)
        assert_close(out["detection_boxes"][i, :n], boxes, atol=1e-4)
        names = [b.decode() for b in out["detection_class_names"][i, :n].numpy()]
        assert names == [next(e["name"] for e in LABEL_MAP if e["id"] == c) for c in ids]
        assert np.all(out["detection_classes"][i, n:].numpy() == 0)


def test_an_images_detections_do_not_depend_on_its_batch(exported):
    """TF Serving's batching puts different clients' pictures into one batch: each picture's
    answer is bit-identical alone and in any mix of sizes and orientations."""
    _, path = exported
    serve = tf.saved_model.load(path).signatures["serving_default"]
    encoded = [png(a) for a in random_pictures()] + [png(np.full((90, 250, 3), 120, np.uint8))]
    alone = [serve(inputs=tf.constant([e])) for e in encoded]
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 2, 1]):
        together = serve(inputs=tf.constant([encoded[i] for i in order]))
        for row, i in enumerate(order):
            for key in alone[i]:
                assert np.array_equal(together[key].numpy()[row], alone[i][key].numpy()[0]), (order, key)


def test_image_tensor_signature_equals_encoded_signature(exported):
    _, path = exported
    loaded = tf.saved_model.load(path)
    array = random_pictures()[0]
    from_bytes = loaded.signatures["serving_default"](inputs=tf.constant([png(array)]))
    from_pixels = loaded.signatures["serving_image_tensor"](inputs=tf.constant(array[None]))
    assert int(from_bytes["num_detections"][0]) > 0
    for key in from_bytes:
        if key == "detection_class_names":
            assert np.array_equal(from_pixels[key].numpy(), from_bytes[key].numpy())
        else:
            assert_close(from_pixels[key], from_bytes[key], atol=1e-6)
    # JPEG, BMP and GIF decode too.
    for fmt in ("JPEG", "BMP", "GIF"):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, fmt)
        out = loaded.signatures["serving_default"](inputs=tf.constant([buffer.getvalue()]))
        assert int(out["num_detections"][0]) > 0, fmt


def test_graph_has_only_core_tensorflow_ops(exported):
    from tensorflow.core.protobuf import saved_model_pb2

    _, path = exported
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    ops = set()
    for graph in proto.meta_graphs:
        ops.update(node.op for node in graph.graph_def.node)
        for function in graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    # Ops of the called functions appear by function name; everything else must be a core op.
    functions = {f.signature.name for g in proto.meta_graphs for f in g.graph_def.library.function}
    non_core = sorted(op for op in ops - functions if not hasattr(tf.raw_ops, op))
    assert not non_core, non_core
    assert {"DecodeImage", "NonMaxSuppressionV5", "Conv2D", "TopKV2"} <= ops


def test_saved_model_cli_gives_the_same_answer(exported, tmp_path):
    """An independent loader: TensorFlow's saved_model_cli, as a separate process."""
    _, path = exported
    array = random_pictures()[1][None]
    np.save(tmp_path / "x.npy", array)
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "saved_model_cli"), "run", "--dir", path,
         "--tag_set", "serve", "--signature_def", "serving_image_tensor",
         "--inputs", f"inputs={tmp_path / 'x.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    direct = tf.saved_model.load(path).signatures["serving_image_tensor"](inputs=tf.constant(array))
    for key in ("detection_boxes", "detection_scores", "detection_classes", "num_detections"):
        assert_close(np.load(tmp_path / "out" / f"{key}.npy"), direct[key].numpy(), atol=1e-5)


def test_exporting_twice_gives_the_same_answers_and_new_versions(exported, tmp_path):
    model, first = exported
    base = os.path.dirname(first)
    second = export.export_saved_model(model, LABEL_MAP, base)
    assert second.endswith(os.path.join("retinanet", "2"))
    inputs = tf.constant([png(a) for a in random_pictures()])
    a = tf.saved_model.load(first).signatures["serving_default"](inputs=inputs)
    b = tf.saved_model.load(second).signatures["serving_default"](inputs=inputs)
    for key in a:
        assert np.array_equal(a[key].numpy(), b[key].numpy()), key
    with pytest.raises(UsageError, match="immutable"):
        export.export_saved_model(model, LABEL_MAP, base, version=2)


def test_exports_take_turns_and_leftovers_are_replaced(exported, tmp_path):
    """The base is locked while a version is chosen and written: two exports at once give two
    whole versions; a partial version left by an export that died is replaced, never reused."""
    model, _ = exported
    base = tmp_path / "base"
    (base / "1.partial").mkdir(parents=True)
    (base / "1.partial" / "junk").write_text("from a killed export")
    path = export.export_saved_model(model, LABEL_MAP, str(base))
    assert path == str(base / "1") and not (base / "1.partial").exists()
    assert (base / "1" / "saved_model.pb").is_file() and not (base / "1" / "junk").exists()
    make_pets_model_dir(str(tmp_path / "model"))
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "keras_retina.cli", "export", "--model_dir=model", "--export_dir=base"]
    both = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    assert sorted(os.listdir(base)) == [".lock", "1", "2", "3"]
    for version in ("2", "3"):
        assert tf.saved_model.load(str(base / version)).signatures["serving_default"] is not None


def test_postprocessing_set_at_export_time(exported, tmp_path):
    model, _ = exported
    postprocess = PostprocessSettings(score_threshold=0.3, max_detections=10, nms_iou_threshold=0.3)
    path = export.export_saved_model(model, LABEL_MAP, str(tmp_path / "strict"), postprocess=postprocess)
    out = tf.saved_model.load(path).signatures["serving_default"](inputs=tf.constant([png(random_pictures()[0])]))
    n = int(out["num_detections"][0])
    assert out["detection_boxes"].shape == (1, 10, 4) and 0 < n <= 10
    assert np.all(out["detection_scores"][0, :n].numpy() > 0.3)


def test_postprocessing_keywords_of_before_postprocess_settings_still_work_with_a_warning(exported):
    model, _ = exported
    with pytest.warns(DeprecationWarning, match="score_threshold= are now postprocess=PostprocessSettings"):
        old = export.DetectionServer(model, LABEL_MAP, max_detections=7, score_threshold=0.2)
    new = export.DetectionServer(model, LABEL_MAP, postprocess=PostprocessSettings(max_detections=7,
                                                                                  score_threshold=0.2))
    assert old.postprocess_config == new.postprocess_config == {
        "score_threshold": 0.2, "pre_nms_top_k": model.decoder.pre_nms_top_k,
        "nms_iou_threshold": model.decoder.nms_iou_threshold, "max_detections": 7, "box_voting_sigma": 0.0}
    with pytest.raises(TypeError, match="not also"):
        export.DetectionServer(model, LABEL_MAP, postprocess=PostprocessSettings(), max_detections=7)
    with pytest.raises(TypeError, match="unexpected keyword"):
        export.DetectionServer(model, LABEL_MAP, max_detection=7)


def test_export_and_predict_commands(tmp_path):
    make_pets_model_dir(str(tmp_path / "model"))
    result = keras_retina("export", "--model_dir=model", "--export_dir=serving/pets", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--model_name=pets" in result.stdout and (tmp_path / "serving" / "pets" / "1").is_dir()
    for name, array in zip(("a.jpg", "b.png"), random_pictures()):
        Image.fromarray(array).save(tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    result = keras_retina("predict", "--saved_model=serving/pets/1", "--output_dir=out", "--draw_threshold=0.3",
                          "a.jpg", "broken.jpg", "b.png", "--save_annotations=voc", cwd=tmp_path)
    assert result.returncode == 1  # one image failed, the others were done
    assert sorted(os.listdir(tmp_path / "out" / "prelabels_voc")) == ["a.xml", "b.xml"]
    assert "Pre-labels (voc) of 2 picture(s)" in result.stdout and "0.3 for every class (no evaluation" in result.stdout
    assert "broken.jpg: cannot read this image" in result.stderr
    assert (tmp_path / "out" / "a.jpg").is_file() and (tmp_path / "out" / "b.png").is_file()
    drawn = np.asarray(Image.open(tmp_path / "out" / "b.png"))
    assert drawn.shape == (128, 128, 3) and not np.array_equal(drawn, random_pictures()[1])  # boxes drawn
    detections = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert detections and {d["category_id"] for d in detections} <= {4, 9, 17}
    assert {"image_id", "bbox", "score", "category_id"} <= set(detections[0])
    # --model_dir works too, without an export. Output folder = the input folder, and two inputs of
    # one name: every original stays byte-identical, each picture gets its own drawn copy.
    (tmp_path / "more").mkdir()
    Image.fromarray(random_pictures()[0]).save(tmp_path / "more" / "b.png")
    originals = {name: (tmp_path / name).read_bytes() for name in ("b.png", "more/b.png")}
    result = keras_retina("predict", "--model_dir=model", "--output_dir=.", "b.png", "more/b.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {name: (tmp_path / name).read_bytes() for name in originals} == originals
    assert (tmp_path / "b-2.png").is_file() and (tmp_path / "b-3.png").is_file()
    assert {d["file_name"] for d in json.loads((tmp_path / "detections.json").read_text())} <= {"b.png"}
    result = keras_retina("predict", "--model_dir=model", "--saved_model=serving/pets/1", "b.png", cwd=tmp_path)
    assert result.returncode == 2 and "both name a model" in result.stderr
    # a folder stands for its pictures (the JSON beside them and sub-folders are not read)
    (tmp_path / "more" / "notes.json").write_text("{}")
    (tmp_path / "more" / "sub").mkdir()
    Image.fromarray(random_pictures()[1]).save(tmp_path / "more" / "a.jpg")
    result = keras_retina("predict", "--saved_model=serving/pets/1", "--output_dir=folder", "more", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / "folder")) == ["a.jpg", "b.png", "detections.json"]
    result = keras_retina("predict", "--saved_model=serving/pets/1", "more/sub", cwd=tmp_path)
    assert result.returncode == 2 and "more/sub: a folder without pictures or videos" in result.stderr
    # --mixed_precision=auto times this model's network in both precisions once, says what it
    # chose, and reads the figures back the next time
    for run in ("measured", "cached"):
        result = keras_retina("predict", "--model_dir=model", "--mixed_precision=auto", "--output_dir=auto", "b.png",
                              cwd=tmp_path, env={"KERAS_RETINA_HOME": str(tmp_path / "home")})
        assert result.returncode == 0, result.stderr[-2000:]
        said = re.search(r"--mixed_precision=auto: (bfloat16|float32) for inference \(bfloat16 measured "
                         r"[0-9.]+x (faster|slower) than float32 on .*: [0-9]+ ms against [0-9]+ ms a call; cached(.)",
                         result.stdout)
        assert said and said.group(3) == (" " if run == "measured" else ")"), result.stdout
        assert ("timing this model's network" in result.stdout) == (run == "measured")
    assert len(os.listdir(tmp_path / "home" / "precision")) == 1
    # A bfloat16 export of the same float32 checkpoint: its convolutions run in bfloat16 and
    # its answers agree with the float32 export to bfloat16's precision.
    result = keras_retina("export", "--model_dir=model", "--export_dir=serving/pets", "--version=2",
                          "--mixed_precision=bfloat16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(mixed_bfloat16)" in result.stdout
    encoded = tf.constant([(tmp_path / "a.jpg").read_bytes()])
    answers = [tf.saved_model.load(str(tmp_path / "serving" / "pets" / v)).signatures["serving_default"](
        inputs=encoded) for v in ("1", "2")]
    assert_close(answers[1]["detection_scores"][0, :5], answers[0]["detection_scores"][0, :5], atol=0.02)
    # every conv in bfloat16 but the pyramid's stride-2 P6 and P7 (float32 under bfloat16: fpn.py)
    bfloat16_convs = _conv_dtypes(tmp_path / "serving" / "pets" / "2")
    assert set(bfloat16_convs) == {"DT_BFLOAT16", "DT_FLOAT"}, bfloat16_convs.keys()
    assert {re.search("conv_p[67]", name) is not None for name in bfloat16_convs["DT_FLOAT"]} == {True}, (
        bfloat16_convs["DT_FLOAT"])
    assert set(_conv_dtypes(tmp_path / "serving" / "pets" / "1")) == {"DT_FLOAT"}
    info = [json.loads((tmp_path / "serving" / "pets" / v / "assets" / "model_info.json").read_text()) for v in "12"]
    assert [i["compute_precision"] for i in info] == ["float32", "bfloat16"] and "note" in info[1]
    # TF Serving versions are immutable: re-exporting an existing version is a clear error.
    result = keras_retina("export", "--model_dir=model", "--export_dir=serving/pets", "--version=2", cwd=tmp_path)
    assert result.returncode == 2 and "exists already" in result.stderr


CRASH_IN_THE_MIDDLE = """
import sys
from keras_retina.cli import main
from keras_retina.inference import pictures

calls = []
draw = pictures.drawing.draw_detections

def draw_then_crash(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        raise MemoryError("the second picture")
    return draw(*args, **kwargs)

pictures.drawing.draw_detections = draw_then_crash
sys.argv = ["keras_retina", "predict", "--model_dir=model", "--output_dir=out", "a.jpg", "b.png", "c.jpg"]
main.run()
"""


def test_a_crash_in_the_middle_of_predict_keeps_what_was_done(tmp_path):
    make_pets_model_dir(str(tmp_path / "model"))
    for name, array in zip(("a.jpg", "b.png", "c.jpg"), random_pictures()):
        Image.fromarray(array).save(tmp_path / name)
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", CRASH_IN_THE_MIDDLE], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode != 0 and "MemoryError: the second picture" in result.stderr
    done = json.loads((tmp_path / "out" / "detections.json").read_text())  # whole, valid JSON
    assert done and {d["file_name"] for d in done} == {"a.jpg"}


def _conv_dtypes(path):
    """{dtype: the names of the Conv2D nodes computing in it} in a SavedModel's functions."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    found = {}
    for graph in proto.meta_graphs:
        for function in graph.graph_def.library.function:
            for node in function.node_def:
                if node.op == "Conv2D":
                    found.setdefault(types_pb2.DataType.Name(node.attr["T"].type), set()).add(node.name)
    return found


SERVE_UNDER_A_MEMORY_LIMIT = """
import resource, sys
import numpy as np
import tensorflow as tf
sys.path.insert(0, sys.argv[2])
from picture_files import gif, png, huge_png
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
good = tf.constant([png(np.full((60, 80, 3), 90, np.uint8))])
expected = serve(inputs=good)["detection_scores"].numpy()
hostile = [huge_png(), gif((20, 20), [(1, 1), (20000, 20000)]), gif((1, 1), [(65535, 1), (1, 65535)])]
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmPeak")).split()[1]) * 1024
limit = peak + (1 << 30)  # 1 GiB above what loading and one answer took; one hostile image needs 1.6-9.7 GB
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
for request in [hostile[0:1], hostile[1:2], hostile[2:3], [png(np.zeros((1, 1, 3), np.uint8))] * 5000]:
    try:
        serve(inputs=tf.constant(request))
    except tf.errors.InvalidArgumentError as error:
        print("refused:", error.message.split("assertion failed: [")[-1].split("]")[0], flush=True)
    else:
        raise SystemExit("a hostile request was answered")
assert np.array_equal(serve(inputs=good)["detection_scores"].numpy(), expected)
print("still answering", flush=True)
"""


def test_hostile_requests_are_refused_under_a_memory_limit(exported):
    """The 23000x23000 zero PNG, a GIF with a small first frame and a huge second one, a GIF whose
    widest and tallest frames differ (TensorFlow's canvas: 65535 x 65535), 5,000 one-pixel PNGs:
    each InvalidArgument under an address space limit 1 GiB above the served model's, and the
    model answers a good request afterwards."""
    _, path = exported
    tests = os.path.join(REPO, "tests")  # picture_files
    result = subprocess.run([sys.executable, "-c", SERVE_UNDER_A_MEMORY_LIMIT, path, tests], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.count("refused:") == 4 and "still answering" in result.stdout, result.stdout


def test_hostile_serving_input(exported):
    """Each bad request gets a clear InvalidArgument error or a correct answer, and the loaded
    model keeps answering good requests afterwards (as TF Serving would call it)."""
    _, path = exported
    serve = tf.saved_model.load(path).signatures["serving_default"]
    good = png(random_pictures()[0])
    expected = serve(inputs=tf.constant([good]))
    jpeg = io.BytesIO()
    Image.fromarray(random_pictures()[0]).save(jpeg, "JPEG")
    not_an_image = "an input is not a JPEG, PNG, GIF, BMP or still WebP image"
    for bad, message in ((b"", not_an_image), (np.random.default_rng(0).bytes(300), not_an_image),
                         (jpeg.getvalue()[:200], "Invalid JPEG data, size 200"),  # TensorFlow's words: one line
                         (huge_png(), "an image has more than 50,000,000 pixels"),
                         (gif((20, 20), [(1, 1), (20000, 20000)]), "more than 50,000,000 pixels"),
                         (gif((1, 1), [(65535, 1), (1, 65535)]), "more than 50,000,000 pixels")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            serve(inputs=tf.constant([good, bad]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="a request holds more than 64 images"):
        serve(inputs=tf.constant([png(np.zeros((1, 1, 3), np.uint8))] * 65))
    with pytest.raises(tf.errors.InvalidArgumentError, match="together"):
        serve(inputs=tf.constant([png(np.zeros((1, 1, 3), np.uint8)), huge_png(7000, 7000)] * 5))
    odd = [png(np.zeros((1, 1, 3), np.uint8)), png(np.zeros((20, 30), np.uint8)),
           png(np.zeros((20, 30, 4), np.uint8)), png(np.zeros((3000, 4000, 3), np.uint8)),
           png(np.full((1, 4000, 3), 200, np.uint8)), png(np.full((4000, 1, 3), 200, np.uint8))]
    out = serve(inputs=tf.constant(odd))
    assert out["detection_boxes"].shape == (6, 100, 4)
    assert np.all((out["detection_boxes"].numpy() >= 0) & (out["detection_boxes"].numpy() <= 1))
    empty = serve(inputs=tf.constant([], tf.string))
    assert empty["detection_boxes"].shape == (0, 100, 4) and empty["num_detections"].shape == (0,)
    again = serve(inputs=tf.constant([good]))
    for key in expected:
        assert np.array_equal(again[key].numpy(), expected[key].numpy()), key


def test_image_tensor_signature_on_empty_and_pixel_less_inputs(exported):
    _, path = exported
    serve = tf.saved_model.load(path).signatures["serving_image_tensor"]
    empty = serve(inputs=tf.zeros([0, 0, 0, 3], tf.uint8))
    assert empty["detection_boxes"].shape == (0, 100, 4) and empty["num_detections"].shape == (0,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="an image has no pixels"):
        serve(inputs=tf.zeros([1, 0, 5, 3], tf.uint8))
    assert serve(inputs=tf.zeros([1, 1, 4000, 3], tf.uint8))["detection_boxes"].shape == (1, 100, 4)


def test_checkpoint_missing_weights_is_an_error_not_a_random_network(tmp_path):
    """A checkpoint that does not cover the model (older version, edited config.json) must not
    be exported or evaluated with silently random layers."""
    make_pets_model_dir(str(tmp_path / "model"))
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["model"]["head_convs"] = 3  # one more conv per subnet than the checkpoint holds
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    result = keras_retina("export", "--model_dir=model", "--export_dir=serving/pets", cwd=tmp_path)
    assert result.returncode == 2
    assert "does not hold every weight of the model" in result.stderr
    assert not (tmp_path / "serving").exists()


def test_export_settings_are_one_checked_object():
    """Options that travel together: keyword-only, frozen, refused when made, naming the flag."""
    import dataclasses

    from keras_retina import ExportSettings

    settings = ExportSettings(export_dir="serving", format="tflite", quantize="int8")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.format = "onnx"
    with pytest.raises(TypeError):
        ExportSettings("serving")  # keyword-only
    for kwargs, message in ((dict(export_dir="s", quantize="int8"), "--quantize=int8 is for --format=tflite"),
                            (dict(export_dir="s", input_size="96,128"), "--input_size=96,128 is for --format=tflite"),
                            (dict(export_dir="s", format="tflite", version=3), "--version=3 numbers SavedModels"),
                            (dict(format="tflite"), "export needs --model_dir")):
        with pytest.raises(UsageError, match=message):
            ExportSettings(**kwargs)
