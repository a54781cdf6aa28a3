"""ONNX export: the whole detector with any batch size, standard ONNX ops only, through tf2onnx.

`export_onnx(model, label_map, path, input_size, postprocess=PostprocessSettings())` converts
`deploy.fixed_size_detector.detection_function` with `batch=None` (input `images` uint8
`[B, H, W, 3]`, B free) at OPSET. Class-wise NMS is ONNX's `NonMaxSuppression` inside a `Loop`
over the batch's images (each image's detections are its own, as in the SavedModel). Every node,
also inside the loop's body, is in the default ONNX domain (checked on the result, `op_types`):
no custom or contrib op, so onnxruntime, TensorRT's ONNX parser and OpenVINO read it.
The `deploy.metadata` document (class names, input size, pad colour) is the model's metadata_props entry.
"""

import os

from keras_retina.deploy import fixed_size_detector, metadata
from keras_retina.errors import UsageError
from keras_retina.modeling import detection_decoder

OPSET = 17  # onnxruntime >= 1.13, TensorRT >= 8.6


def export_onnx(model, label_map, path, input_size, *, postprocess=None, **renamed_keywords):
    """Writes the .onnx file at `path` (refused when it exists); returns a summary dict
    (path, bytes, ops, opset, input_size). `postprocess`: PostprocessSettings fixed in the file."""
    postprocess = detection_decoder.postprocess_settings(postprocess, renamed_keywords, "export_onnx")
    require_converter()
    import onnx
    import tf2onnx

    if os.path.exists(path):
        raise UsageError(f"{path} exists already; remove it or export elsewhere.")
    decoder = postprocess.apply(model.decoder)
    detect = fixed_size_detector.detection_function(model, label_map, input_size, batch=None, decoder=decoder)
    proto, _ = tf2onnx.convert.from_function(detect, input_signature=detect.input_signature, opset=OPSET)
    document = metadata.describe(label_map, input_size, None, model.resize_policy, decoder, "none")
    entry = proto.metadata_props.add()
    entry.key, entry.value = metadata.KEY, metadata.dumps(document)
    ops = op_types(proto.graph)
    outside = sorted(f"{domain}:{op}" for domain, op in ops if domain not in ("", "ai.onnx"))
    if outside:  # tf2onnx falls back to contrib ops for some TensorFlow ops; this graph must not need them
        raise RuntimeError(f"the ONNX graph needs non-standard ops {outside}")
    onnx.checker.check_model(proto)
    partial = path + ".partial"
    onnx.save(proto, partial)
    os.replace(partial, path)
    return {"path": path, "bytes": os.path.getsize(path), "ops": sorted(op for _, op in ops), "opset": OPSET,
            "input_size": list(input_size)}


def require_converter():
    """UsageError with the install line when tf2onnx or onnx is missing."""
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        raise UsageError('ONNX export needs tf2onnx and onnx: pip install "keras-retina[onnx]".') from None


def op_types(graph):
    """{(domain, op_type)} of a GraphProto's nodes, the bodies of Loop / If / Scan included."""
    found = set()
    for node in graph.node:
        found.add((node.domain, node.op_type))
        for attribute in node.attribute:
            if attribute.HasField("g"):
                found |= op_types(attribute.g)
            for subgraph in attribute.graphs:
                found |= op_types(subgraph)
    return found
