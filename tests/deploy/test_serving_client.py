"""export/client.py against the exported signature, with TF Serving's request -> tensor mapping."""

import base64
import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, assert_close
from picture_files import png, random_pictures


def _client():
    spec = importlib.util.spec_from_file_location("client", os.path.join(REPO, "export", "client.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def signature(pets_saved_model):
    return tf.saved_model.load(pets_saved_model[1]).signatures["serving_default"]


def _rest_server(signature, body):
    """What TF Serving's REST API does with a row-format request: decode {"b64"} inputs, batch
    them into the named input, run the signature, answer one row per instance (strings UTF-8)."""
    body = json.loads(json.dumps(body))  # over the wire
    inputs = [base64.b64decode(instance["inputs"]["b64"]) for instance in body["instances"]]
    outputs = signature(inputs=tf.constant(inputs))
    rows = []
    for i in range(len(inputs)):
        row = {}
        for key, value in outputs.items():
            value = value[i].numpy()
            row[key] = [v.decode() for v in value] if value.dtype == object else value.tolist()
        rows.append(row)
    return json.loads(json.dumps({"predictions": rows}))


def _direct(signature, images):
    out = signature(inputs=tf.constant(images))
    return [{"n": int(out["num_detections"][i]), "boxes": out["detection_boxes"][i].numpy(),
             "scores": out["detection_scores"][i].numpy(), "classes": out["detection_classes"][i].numpy()}
            for i in range(len(images))]


def test_rest_request_and_response(signature):
    client = _client()
    images = [png(a) for a in random_pictures()]
    body = client.build_rest_request(images)
    assert body["signature_name"] == "serving_default" and len(body["instances"]) == 3
    answers = client.parse_rest_response(_rest_server(signature, body))
    for answer, direct in zip(answers, _direct(signature, images)):
        n = direct["n"]
        assert n > 0 and len(answer["boxes"]) == n
        assert_close(answer["boxes"], direct["boxes"][:n], atol=1e-6)
        assert_close(answer["scores"], direct["scores"][:n], atol=1e-6)
        assert answer["classes"] == [int(c) for c in direct["classes"][:n]]
        assert set(answer["names"]) <= {"cat", "dog", "bird"}
    with pytest.raises(RuntimeError, match="TF Serving error: bad"):
        client.parse_rest_response({"error": "bad"})


def test_grpc_request_and_response(signature):
    pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    from tensorflow_serving.apis import predict_pb2

    client = _client()
    images = [png(a) for a in random_pictures()[:2]]
    request = client.build_grpc_request(images, "retinanet", version=3)
    assert request.model_spec.name == "retinanet" and request.model_spec.version.value == 3
    # TF Serving turns the TensorProto into the signature's input tensor and back.
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    outputs = signature(inputs=tf.constant(tf.make_ndarray(request.inputs["inputs"])))
    response = predict_pb2.PredictResponse()
    for key, value in outputs.items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    answers = client.parse_grpc_response(predict_pb2.PredictResponse.FromString(response.SerializeToString()))
    for answer, direct in zip(answers, _direct(signature, images)):
        n = direct["n"]
        assert_close(answer["boxes"], direct["boxes"][:n], atol=0)
        assert answer["classes"] == [int(c) for c in direct["classes"][:n]]


def test_client_draws_pictures(signature, tmp_path, monkeypatch):
    client = _client()
    from PIL import Image

    Image.fromarray(random_pictures()[0]).save(tmp_path / "photo.png")
    monkeypatch.setattr(client, "send_rest", lambda server, model, body, version=None: _rest_server(signature, body))
    assert client.main([str(tmp_path / "photo.png"), "--draw_threshold=0.0"]) == 0
    drawn = np.asarray(Image.open(tmp_path / "photo.detections.png"))
    assert drawn.shape == random_pictures()[0].shape and not np.array_equal(drawn, random_pictures()[0])


def _local_server(status, payload):
    """A one-thread HTTP server on loopback answering every POST with `status` and `payload`."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_rest_errors_keep_tf_servings_reason_and_big_answers_are_refused(monkeypatch, tmp_path):
    client = _client()
    server = _local_server(400, b'{"error": "Invalid argument: Unknown image file format"}')
    try:
        with pytest.raises(RuntimeError, match=r"HTTP 400\): Invalid argument: Unknown image file format"):
            client.send_rest(f"127.0.0.1:{server.server_port}", "retinanet", {"instances": []}, timeout=10)
    finally:
        server.shutdown()
    server = _local_server(200, b'{"predictions": [' + b"0," * 500 + b"0]}")
    monkeypatch.setattr(client, "MAX_RESPONSE_BYTES", 100)
    try:
        with pytest.raises(RuntimeError, match="larger than 100 bytes"):
            client.send_rest(f"127.0.0.1:{server.server_port}", "retinanet", {"instances": []}, timeout=10)
    finally:
        server.shutdown()
    # An answer with fewer rows than images is an error, not pictures silently left out.
    from PIL import Image

    for name in ("a.png", "b.png"):
        Image.fromarray(random_pictures()[0]).save(tmp_path / name)
    one_row = {"predictions": [{"detection_boxes": [], "detection_scores": [], "detection_classes": [],
                                "detection_class_names": [], "num_detections": 0}]}
    monkeypatch.setattr(client, "send_rest", lambda server, model, body, version=None: one_row)
    with pytest.raises(RuntimeError, match="answered for 1 of 2 images"):
        client.main([str(tmp_path / "a.png"), str(tmp_path / "b.png")])


def test_long_lists_are_split_into_requests_within_the_servers_limits(tmp_path):
    from PIL import Image

    client = _client()
    paths = []
    for i, side in enumerate([10] * 40 + [9000, 9000]):
        Image.new("L", (side, side)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    groups = client.requests(paths)
    assert [len(g) for g in groups] == [32, 9, 1] and sum(groups, []) == paths  # 81 MP each: two don't fit
