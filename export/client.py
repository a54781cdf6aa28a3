"""Send images to a RetinaNet served by TF Serving, over REST or gRPC, and draw the answer.

    python export/client.py --server=localhost:8501 --model=retinanet photo.jpg
    python export/client.py --grpc --server=localhost:8500 --model=retinanet photo.jpg --version=2

Each image is sent as its encoded bytes (REST: base64 `{"b64": ...}`; gRPC: a
string tensor) to the `serving_default` signature; the answer (boxes normalised
to the image, scores, category ids and names) is printed and drawn into
`<name>.detections.<ext>` next to the image (or `--output_dir`).

Needs `pip install keras-retina` for the drawing (Pillow only at run time) and,
for gRPC, `pip install "keras-retina[serving]"` (tensorflow-serving-api).
The functions `build_rest_request`, `parse_rest_response`, `build_grpc_request`
and `parse_grpc_response` are what the tests check against the SavedModel.
"""

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request

MAX_RESPONSE_BYTES = 256 << 20  # a detector's answer is small; more is not a TF Serving answer

OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "detection_class_names",
           "num_detections")


def build_rest_request(images, signature="serving_default"):
    """Encoded images (list of bytes) -> the JSON body of TF Serving's REST `:predict`."""
    return {"signature_name": signature,
            "instances": [{"inputs": {"b64": base64.b64encode(image).decode("ascii")}} for image in images]}


def _detections(boxes, scores, classes, names, count):
    count = int(count)
    return {"boxes": [list(map(float, b)) for b in boxes[:count]],
            "scores": [float(s) for s in scores[:count]],
            "classes": [int(c) for c in classes[:count]],
            "names": [n.decode() if isinstance(n, bytes) else str(n) for n in names[:count]]}


def parse_rest_response(body):
    """TF Serving's REST answer (row format) -> one detections dict per image."""
    if "error" in body:
        raise RuntimeError(f"TF Serving error: {body['error']}")
    return [_detections(*(row[key] for key in OUTPUTS)) for row in body["predictions"]]


def send_rest(server, model, body, version=None, timeout=60):
    """POSTs `body` to `:predict`; returns the parsed answer. An HTTP error keeps TF Serving's
    reason (its JSON "error"); an answer over MAX_RESPONSE_BYTES is refused unread."""
    url = f"http://{server}/v1/models/{model}" + (f"/versions/{version}" if version else "") + ":predict"
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(_read_limited(response))
    except urllib.error.HTTPError as error:  # 400 for a bad image, 404 for an unknown model...
        text = _read_limited(error).decode("utf-8", "replace")
        try:
            reason = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            reason = text or error.reason
        raise RuntimeError(f"TF Serving error (HTTP {error.code}): {reason}") from None


def _read_limited(response):
    data = response.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise RuntimeError(f"TF Serving's answer is larger than {MAX_RESPONSE_BYTES} bytes; refused.")
    return data


def requests(paths, max_images=32, max_pixels=150_000_000):
    """Image paths grouped into requests of at most `max_images` images and `max_pixels` pixels
    (sizes from the files' headers), below the exported model's limits (64 images, 200 MP)."""
    from PIL import Image

    groups, pixels = [[]], 0
    for path in paths:
        with Image.open(path) as image:
            size = image.size[0] * image.size[1] * getattr(image, "n_frames", 1)
        if groups[-1] and (len(groups[-1]) >= max_images or pixels + size > max_pixels):
            groups.append([])
            pixels = 0
        groups[-1].append(path)
        pixels += size
    return [group for group in groups if group]


def build_grpc_request(images, model, signature="serving_default", version=None):
    """Encoded images -> a tensorflow_serving PredictRequest."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version:
        request.model_spec.version.value = int(version)
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(list(images), dtype=tf.string, shape=[len(images)]))
    return request


def parse_grpc_response(response):
    """A PredictResponse -> one detections dict per image."""
    import tensorflow as tf

    arrays = {key: tf.make_ndarray(response.outputs[key]) for key in OUTPUTS}
    return [_detections(*(arrays[key][i] for key in OUTPUTS)) for i in range(len(arrays["num_detections"]))]


def send_grpc(server, request, timeout=60):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(server, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, BMP, GIF)")
    parser.add_argument("--server", default="localhost:8501", help="host:port (REST 8501, gRPC 8500)")
    parser.add_argument("--model", default="retinanet", help="the --model_name TF Serving was given")
    parser.add_argument("--version", type=int, default=None, help="a model version (default: latest)")
    parser.add_argument("--grpc", action="store_true", help="use gRPC instead of REST")
    parser.add_argument("--draw_threshold", type=float, default=None,
                        help="draw detections >= this (default: keras_retina's, 0.3)")
    parser.add_argument("--score_threshold", type=float, default=None, dest="old_draw_threshold",
                        help="the old name of --draw_threshold, taken until the next release")
    parser.add_argument("--output_dir", default=None, help="where drawn pictures go (default: beside)")
    args = parser.parse_args(argv)
    if args.old_draw_threshold is not None:
        if args.draw_threshold is not None:
            parser.error("--score_threshold is the old name of --draw_threshold; give --draw_threshold alone")
        print("--score_threshold is now --draw_threshold (the same meaning); the old name goes in the next release.",
              file=sys.stderr)
        args.draw_threshold = args.old_draw_threshold

    answers = []
    for paths in requests(args.images):  # within the exported model's limits per request
        images = []
        for path in paths:
            with open(path, "rb") as f:
                images.append(f.read())
        if args.grpc:
            request = build_grpc_request(images, args.model, version=args.version)
            got = parse_grpc_response(send_grpc(args.server, request))
        else:
            got = parse_rest_response(send_rest(args.server, args.model, build_rest_request(images), args.version))
        if len(got) != len(images):
            raise RuntimeError(f"TF Serving answered for {len(got)} of {len(images)} images.")
        answers += got

    from PIL import Image

    from keras_retina.ops.drawing import DRAW_THRESHOLD, draw_detections

    threshold = DRAW_THRESHOLD if args.draw_threshold is None else args.draw_threshold

    for path, answer in zip(args.images, answers):
        stem, ext = os.path.splitext(os.path.basename(path))
        target = os.path.join(args.output_dir or os.path.dirname(path) or ".", f"{stem}.detections{ext or '.png'}")
        drawn = draw_detections(Image.open(path), answer["boxes"], answer["scores"], answer["names"],
                                threshold, answer["classes"])
        drawn.save(target)
        found = [f"{n} {s:.2f}" for n, s in zip(answer["names"], answer["scores"]) if s >= threshold]
        print(f"{path}: {', '.join(found) or 'nothing'} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
