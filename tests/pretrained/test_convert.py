"""Converting published RetinaNets: our network given their weights computes what their library computes.

torchvision's v1 and v2 models are built with random weights (`weights=None,
weights_backbone=None`: nothing downloads), their BatchNorm statistics, GroupNorm parameters
and biases randomised so nothing is trivially zero, saved with torch.save, converted by our
reader, and run on the same input tensor (skimage's astronaut) by both: raw classification
logits and box deltas per anchor, then the final detections.

detectron2 cannot be installed here. Its RetinaNet R50 is built from torchvision parts as a
stand-in (`_detectron2_stand_in`): torchvision's ResNet-50 with each stage's stride moved to the
first 1x1 conv (detectron2's STRIDE_IN_1X1), torchvision's FPN with P6/P7 from C5, an 80-class
torchvision head; its state dict is renamed to detectron2's keys and pickled as the model zoo
does. Its anchors, box decoding and inference are checked against detectron2's formulas,
written out below from detectron2's source (DefaultAnchorGenerator, Box2BoxTransform,
RetinaNet.inference), not against detectron2 itself.

Needs the optional `torch` extra (torch, torchvision, scikit-image); CI installs it.
"""

import pickle
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

# triton (torch's GPU compiler, which torchvision's ops import when present) crashes the process
# when it loads after TensorFlow (conflicting LLVM symbols); CPU-only torch does not need it, and
# torch treats a failed `import triton` as "not installed".
sys.modules.setdefault("triton", None)
torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
skimage_data = pytest.importorskip("skimage.data")

from torch_weights import trained_like  # noqa: E402
from torchvision.models.detection import retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2  # noqa: E402

from keras_retina.data import coco_categories  # noqa: E402
from keras_retina.errors import DataError, UsageError  # noqa: E402
from keras_retina.modeling.builder import anchor_generator  # noqa: E402
from keras_retina.modeling.model_config import ModelConfig  # noqa: E402
from keras_retina.modeling.torchvision_anchors import TorchvisionAnchorGenerator  # noqa: E402
from keras_retina.pretrained.convert import build_converted, convert  # noqa: E402

from command_line import keras_retina  # noqa: E402
from conftest import assert_same_detections  # noqa: E402

TOLERANCE = 1e-3  # raw outputs, float32 (the bound; measured values are printed)
_TO_OURS = [1, 0, 3, 2]  # (dx, dy, dw, dh) -> (dy, dx, dh, dw)


def _frozen_batchnorm(model, eps):
    """`model` with every BatchNorm2d replaced by torchvision's FrozenBatchNorm2d of epsilon `eps`,
    what the published detectors hold (a model built with `weights=None` has trainable BatchNorm)."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                frozen = torchvision.ops.FrozenBatchNorm2d(child.num_features, eps=eps)
                setattr(module, name, frozen)
    return model


def _randomise(model, seed=1, placeholder_rows=None):
    """`torch_weights.trained_like`: a trained network's statistics, detections to compare."""
    return trained_like(model, seed, placeholder_rows=placeholder_rows)


def _assert_same_detections(ours, theirs, box_tolerance=1e-2, score_tolerance=1e-4):
    """(boxes yxyx in pixels, scores, labels) of both sides: `conftest.assert_same_detections`."""
    largest = assert_same_detections(ours, theirs, box_tolerance, score_tolerance)
    print(f"{len(ours[1])} detections matched; max box difference {largest:.1e} px")


def _astronaut(height=512, width=512):
    return skimage_data.astronaut()[:height, :width][None]  # [1, H, W, 3] uint8 RGB


def _to_old_torchvision_names(state):
    """Today's keys -> those of the published v1 file (before torchvision renamed FPN and head keys)."""
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("backbone.fpn.") and parts[2] in ("inner_blocks", "layer_blocks"):
            key = ".".join(parts[:4] + parts[5:])
        elif key.startswith("head.") and parts[2] == "conv":
            key = ".".join(parts[:3] + [str(2 * int(parts[3]))] + parts[5:])
        renamed[key] = value
    return renamed


PLACEHOLDERS = [i for i in range(coco_categories.TORCHVISION_LOGITS) if i not in coco_categories.CATEGORY_IDS]


@pytest.fixture(scope="module", params=["v1_published_names", "v2"])
def torchvision_pair(request, tmp_path_factory):
    """(torchvision model, our converted model, variant, weight file) for v1 (saved with the old key
    names and num_batches_tracked) and v2, each run as torchvision's builder runs the published
    file: frozen BatchNorm, and for v1 `overwrite_eps(model, 0.0)` after loading."""
    from torchvision.models.detection._utils import overwrite_eps

    torch.manual_seed(0)
    v2 = request.param == "v2"
    tv = (retinanet_resnet50_fpn_v2 if v2 else retinanet_resnet50_fpn)(weights=None, weights_backbone=None)
    saved_state = tv.state_dict()  # BatchNorm2d's, with num_batches_tracked as a training run saves them
    tv = _randomise(_frozen_batchnorm(tv, 1e-5), placeholder_rows=PLACEHOLDERS)
    if not v2:
        overwrite_eps(tv, 0.0)
    state = tv.state_dict()
    if not v2:
        state.update({k: v for k, v in saved_state.items() if k.endswith("num_batches_tracked")})
        state = _to_old_torchvision_names(state)
        assert "backbone.fpn.inner_blocks.0.weight" in state and "head.classification_head.conv.2.weight" in state
    path = tmp_path_factory.mktemp("tv") / f"retinanet_{request.param}.pth"
    torch.save(state, path)
    model, variant, count = build_converted("torchvision", str(path))
    assert count == len([k for k in state if not k.endswith("num_batches_tracked")])
    return tv, model, variant, path


def test_label_map_is_torchvision_coco_categories():
    names = torchvision.models.detection.RetinaNet_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    assert len(names) == coco_categories.TORCHVISION_LOGITS
    assert [e["name"] for e in coco_categories.LABEL_MAP] == [names[i] for i in coco_categories.CATEGORY_IDS]
    assert all(names[i] == "N/A" or i == 0 for i in PLACEHOLDERS)
    assert coco_categories.canonical("MotorBike") == "motorcycle" == coco_categories.canonical("motorcycle")
    assert coco_categories.canonical("dining_table") == coco_categories.canonical("diningtable") == "dining table"


@pytest.mark.parametrize("size", [(800, 1088), (512, 640), (480, 640), (96, 160), (1344, 800)])
def test_torchvision_anchors_equal_torchvision(size):
    from torchvision.models.detection.image_list import ImageList
    from torchvision.models.detection.retinanet import _default_anchorgen

    h, w = size
    features = [torch.zeros(1, 1, -(-h // 2**lv), -(-w // 2**lv)) for lv in range(3, 8)]
    theirs = _default_anchorgen()(ImageList(torch.zeros(1, 3, h, w), [(h, w)]), features)[0].numpy()
    generator = TorchvisionAnchorGenerator(aspect_ratios=(2.0, 1.0, 0.5), name="anchor_generator")
    assert anchor_generator(ModelConfig(anchor_geometry="torchvision", aspect_ratios=(2.0, 1.0, 0.5))
                            ).get_config() == generator.get_config()
    np.testing.assert_array_equal(generator.anchors(size)[:, _TO_OURS], theirs)
    in_graph = tf.function(lambda s: generator.anchors(s), autograph=False,
                           input_signature=[tf.TensorSpec([2], tf.int32)])(tf.constant(size))
    np.testing.assert_array_equal(in_graph.numpy()[:, _TO_OURS], theirs)


def test_torchvision_raw_outputs_equal(torchvision_pair):
    tv, model, variant, _ = torchvision_pair
    image = _astronaut(512, 384)  # not square, sides multiples of 32 (no padding on either side)
    x = torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        head = tv.head(list(tv.backbone(tv.transform.normalize(x[0])[None]).values()))
    theirs_cls = head["cls_logits"][0].numpy()[:, list(variant.class_rows)]
    theirs_box = head["bbox_regression"][0].numpy()[:, _TO_OURS]
    ours = model(image.astype(np.float32), training=False)
    cls_error = np.abs(ours["classification"][0].numpy() - theirs_cls).max()
    box_error = np.abs(ours["box"][0].numpy() - theirs_box).max()
    print(f"{variant.name}: max |logit diff| {cls_error:.2e} (logits up to {np.abs(theirs_cls).max():.2f}), "
          f"max |delta diff| {box_error:.2e} (deltas up to {np.abs(theirs_box).max():.2f})")
    assert np.abs(theirs_cls).max() > 1.0 and theirs_cls.std() > 0.1  # not a constant: the picture matters
    assert cls_error <= TOLERANCE and box_error <= TOLERANCE


def test_the_epsilon_is_each_sources(torchvision_pair):
    """v1 runs its frozen BatchNorm with epsilon 0, v2 with 1e-5 (the conversion records it). The
    statistics here make the epsilon matter: the same v1 weights with 1e-5 (what conversions did
    before) or with the epsilon added outside the square root are far from torchvision."""
    from keras_retina.modeling.retinanet import RetinaNet
    from keras_retina.pretrained import published_weights
    from keras_retina.pretrained.weight_files import read_weights

    tv, model, variant, path = torchvision_pair
    v1 = variant.settings["head_norm"] == "none"
    assert model.config.backbone_bn_epsilon == (0.0 if v1 else 1e-5)
    assert {layer.epsilon for layer in _batchnorms(model)} == {model.config.backbone_bn_epsilon}
    if not v1:
        return
    image = _astronaut(512, 384)
    x = torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        theirs = tv.head(list(tv.backbone(tv.transform.normalize(x[0])[None]).values()))["cls_logits"][0].numpy()
    theirs = theirs[:, list(variant.class_rows)]
    state = published_weights.normalise_keys("torchvision", read_weights(str(path)), str(path))
    wrong = RetinaNet(num_classes=80, **{**variant.settings, "backbone_bn_epsilon": 1e-5})
    published_weights.load(variant, state, wrong, str(path))
    error = np.abs(wrong(image.astype(np.float32), training=False)["classification"][0].numpy() - theirs).max()
    print(f"v1 converted with epsilon 1e-5: max |logit diff| {error:.2e} (bound {TOLERANCE})")
    assert error > 20 * TOLERANCE


def _batchnorms(model):
    import keras

    from keras_retina.modeling.backbone import FoldedConvBatchNorm

    layers = [layer.bn if isinstance(layer, FoldedConvBatchNorm) else layer for layer in model.backbone.layers]
    found = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(found) == 53  # ResNet-50: conv1, 16 blocks x 3, 4 shortcuts
    return found


def test_zero_variances_with_epsilon_zero_are_refused(torchvision_pair, tmp_path):
    """torchvision would divide by zero there (Inf/NaN): the v1 file is refused, naming the tensor;
    v2's epsilon 1e-5 takes a zero variance, not a negative one."""
    from keras_retina.pretrained.weight_files import read_weights

    _, _, variant, path = torchvision_pair
    v1 = variant.settings["head_norm"] == "none"
    state = {k: torch.from_numpy(np.array(v)) for k, v in read_weights(str(path)).items()}
    key = "backbone.body.layer2.0.bn2.running_var"
    state[key][3] = 0.0
    torch.save(state, tmp_path / "zero.pth")
    if v1:
        _expect_refused(tmp_path / "zero.pth", key, "1 variance(s)", "divides by zero", source="torchvision",
                        tmp_path=tmp_path)
    else:
        build_converted("torchvision", str(tmp_path / "zero.pth"))
        state[key][3] = -1e-3
        torch.save(state, tmp_path / "negative.pth")
        _expect_refused(tmp_path / "negative.pth", key, "divides by zero", source="torchvision", tmp_path=tmp_path)


def test_a_v1_model_dir_converted_with_the_old_epsilon_is_refused(torchvision_pair, tmp_path):
    """Model dirs converted from v1 before the epsilon was a setting computed 1e-5: refused with the
    command that converts the file again; a v2 one loads as it was."""
    import json

    from keras_retina.model_dir import ModelDir

    _, _, variant, path = torchvision_pair
    convert("torchvision", str(path), str(tmp_path / "old"))
    config_path = tmp_path / "old" / "config.json"
    config = json.loads(config_path.read_text())
    del config["model"]["backbone_bn_epsilon"]
    config_path.write_text(json.dumps(config))
    if variant.settings["head_norm"] == "none":
        with pytest.raises(DataError, match=re.escape(f"Convert it again: keras_retina convert --source=torchvision "
                                                      f"--weights={path}")):
            ModelDir(str(tmp_path / "old")).load_model()
    else:
        model = ModelDir(str(tmp_path / "old")).load_model()[0]
        assert model.config.backbone_bn_epsilon is None and model.config.drop_empty_boxes is False


def test_torchvision_detections_equal(torchvision_pair):
    """torchvision's own inference (its transform set to leave the 512 x 512 picture as it is)
    and ours: the same 300 detections (boxes, scores, COCO ids), in the same order."""
    tv, model, variant, _ = torchvision_pair
    image = _astronaut()
    tv.transform.min_size, tv.transform.max_size = (512,), 512
    with torch.no_grad():
        theirs = tv([torch.from_numpy(image[0]).permute(2, 0, 1).float() / 255.0])[0]
    ours = model.detect(image.astype(np.float32))
    count = int(ours["num_detections"][0])
    assert count == len(theirs["scores"]) == 300  # torchvision keeps 300, and so does the converted model
    ids = np.asarray(coco_categories.CATEGORY_IDS)[ours["classes"][0, :count].numpy()]
    _assert_same_detections((ours["boxes"][0, :count].numpy(), ours["scores"][0, :count].numpy(), ids),
                            (theirs["boxes"].numpy()[:, _TO_OURS], theirs["scores"].numpy(), theirs["labels"].numpy()))


def test_torchvision_detections_equal_on_a_padded_picture(torchvision_pair):
    """A 400 x 500 picture needs padding to 416 x 512. torchvision pads after normalising (zeros:
    the mean colour); the converted model pads its canvas with the mean colour
    (`ModelConfig.pad_color`), so the network sees the same input; both clip boxes to the picture
    (not the padded input) before NMS, as serving and evaluation do."""
    from keras_retina.modeling.transform import ResizePolicy, to_model_input

    tv, model, variant, _ = torchvision_pair
    image = _astronaut(400, 500)
    tv.transform.min_size, tv.transform.max_size = (400,), 500
    with torch.no_grad():
        theirs = tv([torch.from_numpy(image[0]).permute(2, 0, 1).float() / 255.0])[0]
    policy = ResizePolicy(400, 500, pad_color=model.resize_policy.pad_color)
    padded, scale = to_model_input(tf.constant(image[0]), policy)
    assert padded.shape == (416, 512, 3) and float(scale) == 1.0
    ours = model.detect(padded[None], picture_sizes=[[400, 500]])  # clipped to the picture, as torchvision
    count = int(ours["num_detections"][0])
    ids = np.asarray(coco_categories.CATEGORY_IDS)[ours["classes"][0, :count].numpy()]
    _assert_same_detections((ours["boxes"][0, :count].numpy(), ours["scores"][0, :count].numpy(), ids),
                            (theirs["boxes"].numpy()[:, _TO_OURS], theirs["scores"].numpy(), theirs["labels"].numpy()))


def test_torchvision_inference_on_a_photo_equals_our_serving(torchvision_pair):
    """End to end from pixels, at the published test scale: torchvision's own inference (resize
    to shorter side 800 with floored sides, pad to the next multiple of 32, network, decoding,
    boxes back to the photo) against our SavedModel's serving function in process
    (`DetectionServer`: the converted model's policy floors and pads tight, in the mean colour).
    A 500 x 370 crop becomes 1081 x 800 on a 1088 x 800 canvas in both."""
    from keras_retina.deploy.saved_model import DetectionServer

    tv, model, variant, _ = torchvision_pair
    photo = _astronaut(500, 370)
    tv.transform.min_size, tv.transform.max_size = (800,), 1333
    with torch.no_grad():
        theirs = tv([torch.from_numpy(photo[0]).permute(2, 0, 1).float() / 255.0])[0]
    server = DetectionServer(model, coco_categories.LABEL_MAP)  # its tf.function holds it weakly
    ours = server.serve_image_tensor(tf.constant(photo))
    count = int(ours["num_detections"][0])
    boxes = ours["detection_boxes"][0, :count].numpy() * [500, 370, 500, 370]
    _assert_same_detections((boxes, ours["detection_scores"][0, :count].numpy(),
                             ours["detection_classes"][0, :count].numpy().astype(int)),
                            (theirs["boxes"].numpy()[:, _TO_OURS], theirs["scores"].numpy(), theirs["labels"].numpy()),
                            box_tolerance=0.05, score_tolerance=1e-3)


# --------------------------------------------------------------------------- detectron2 stand-in
_D2_MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)


def _detectron2_stand_in(seed=0):
    """(torch backbone with .body and .fpn, torch RetinaNetHead with 80 classes) laid out as
    detectron2's RetinaNet R50-FPN (module docstring)."""
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.retinanet import RetinaNetHead
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.manual_seed(seed)
    body = _frozen_batchnorm(torchvision.models.resnet50(weights=None), 1e-5)  # detectron2's FrozenBatchNorm2d
    for stage in (body.layer2, body.layer3, body.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)  # STRIDE_IN_1X1
    backbone = _resnet_fpn_extractor(body, 5, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(2048, 256))
    holder = torch.nn.Module()
    holder.backbone, holder.head = backbone, RetinaNetHead(256, 9, 80)
    with torch.no_grad():  # its input is 0-255 minus the mean, not divided by ImageNet's std (~57.6)
        body.conv1.weight.div_(57.6)
    return _randomise(holder, seed)


def _res(match):
    """detectron2's name of torchvision's layer<i>.<block>: backbone.bottom_up.res<i + 1>.<block>."""
    return f"backbone.bottom_up.res{int(match[1]) + 1}.{match[2]}"


def _detectron2_key(key):
    """torchvision-part key -> detectron2's name for the same tensor."""
    import re

    rules = [(r"^backbone\.body\.conv1\.", "backbone.bottom_up.stem.conv1."),
             (r"^backbone\.body\.bn1\.", "backbone.bottom_up.stem.conv1.norm."),
             (r"^backbone\.body\.layer(\d)\.(\d+)\.conv(\d)\.", lambda m: f"{_res(m)}.conv{m[3]}."),
             (r"^backbone\.body\.layer(\d)\.(\d+)\.bn(\d)\.", lambda m: f"{_res(m)}.conv{m[3]}.norm."),
             (r"^backbone\.body\.layer(\d)\.(\d+)\.downsample\.0\.", lambda m: f"{_res(m)}.shortcut."),
             (r"^backbone\.body\.layer(\d)\.(\d+)\.downsample\.1\.", lambda m: f"{_res(m)}.shortcut.norm."),
             (r"^backbone\.fpn\.inner_blocks\.(\d)\.0\.", lambda m: f"backbone.fpn_lateral{int(m[1]) + 3}."),
             (r"^backbone\.fpn\.layer_blocks\.(\d)\.0\.", lambda m: f"backbone.fpn_output{int(m[1]) + 3}."),
             (r"^backbone\.fpn\.extra_blocks\.", "backbone.top_block."),
             (r"^head\.classification_head\.conv\.(\d)\.0\.", lambda m: f"head.cls_subnet.{2 * int(m[1])}."),
             (r"^head\.regression_head\.conv\.(\d)\.0\.", lambda m: f"head.bbox_subnet.{2 * int(m[1])}."),
             (r"^head\.classification_head\.cls_logits\.", "head.cls_score."),
             (r"^head\.regression_head\.bbox_reg\.", "head.bbox_pred.")]
    for pattern, replacement in rules:
        key, count = re.subn(pattern, replacement, key)
        if count:
            return key
    raise AssertionError(f"unmapped {key}")


def _detectron2_state(stand_in):
    """The stand-in's tensors under detectron2's names, with the buffers older detectron2
    versions saved next to them (pixel mean and std, cell anchors)."""
    state = {_detectron2_key(k): v.numpy().copy() for k, v in stand_in.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    state["pixel_mean"] = _D2_MEAN_BGR.reshape(3, 1, 1)
    state["pixel_std"] = np.ones((3, 1, 1), np.float32)
    state.update({f"anchor_generator.cell_anchors.{i}": np.zeros((9, 4), np.float32) for i in range(5)})
    return state


def _write_detectron2_pkl(state, path):
    with open(path, "wb") as f:  # as the model zoo files: {"model": numpy arrays, "__author__": ...}
        pickle.dump({"model": state, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, f, protocol=2)
    return str(path)


@pytest.fixture(scope="module")
def detectron2_pair(tmp_path_factory):
    stand_in = _detectron2_stand_in()
    state = _detectron2_state(stand_in)
    path = _write_detectron2_pkl(state, tmp_path_factory.mktemp("d2") / "model_final_retinanet_R_50_FPN.pkl")
    model, variant, _ = build_converted("detectron2", path)
    return stand_in, model, variant, path, state


def _detectron2_anchors(height, width):
    """detectron2's DefaultAnchorGenerator (sizes 32 * 2^(i/3) per octave, aspect ratios
    h/w 0.5, 1, 2, offset 0), xyxy: generate_cell_anchors, then shifts arange(0, W * s, s)."""
    out = []
    for level in range(3, 8):
        stride = 2**level
        cell = []
        for size in [2**(level + 2) * 2 ** (i / 3) for i in range(3)]:
            for ratio in (0.5, 1.0, 2.0):
                w = np.sqrt(size * size / ratio)
                h = ratio * w
                cell.append([-w / 2, -h / 2, w / 2, h / 2])
        ys = np.arange(0, -(-height // stride) * stride, stride, dtype=np.float64)
        xs = np.arange(0, -(-width // stride) * stride, stride, dtype=np.float64)
        sy, sx = np.meshgrid(ys, xs, indexing="ij")
        shifts = np.stack([sx.ravel(), sy.ravel(), sx.ravel(), sy.ravel()], axis=1)
        out.append((shifts[:, None, :] + np.asarray(cell)[None]).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


_D2_CLAMP = np.log(1000.0 / 16)


def _detectron2_apply_deltas(deltas, anchors, clamp=_D2_CLAMP):
    """detectron2's Box2BoxTransform.apply_deltas, weights (1, 1, 1, 1), xyxy."""
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx, cy = anchors[:, 0] + 0.5 * widths, anchors[:, 1] + 0.5 * heights
    dx, dy, dw, dh = deltas.T
    dw, dh = np.minimum(dw, clamp), np.minimum(dh, clamp)
    px, py, pw, ph = dx * widths + cx, dy * heights + cy, np.exp(dw) * widths, np.exp(dh) * heights
    return np.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], axis=1)


def test_detectron2_anchors_and_decoding_follow_detectron2():
    config = ModelConfig(anchor_geometry="detectron2", aspect_ratios=(2.0, 1.0, 0.5))
    for size in [(800, 1088), (480, 640), (96, 160)]:
        ours = anchor_generator(config).anchors(size)
        np.testing.assert_allclose(ours[:, _TO_OURS], _detectron2_anchors(*size), atol=1e-4)
    from keras_retina.ops import box_coder

    anchors = _detectron2_anchors(96, 160)
    deltas = np.random.default_rng(0).normal(0, 1.5, (len(anchors), 4)).astype(np.float32)  # some past the clamp
    ours = box_coder.decode(deltas[:, _TO_OURS], anchors[:, _TO_OURS]).numpy()
    np.testing.assert_allclose(ours[:, _TO_OURS], _detectron2_apply_deltas(deltas, anchors), rtol=1e-5, atol=1e-3)


def test_detectron2_raw_outputs_and_detections_equal(detectron2_pair):
    stand_in, model, variant, _, _ = detectron2_pair
    assert variant.name == "detectron2 RetinaNet R50-FPN (COCO)"
    image = _astronaut(384, 512)
    bgr = torch.from_numpy((image[0, :, :, ::-1].astype(np.float32) - _D2_MEAN_BGR).copy()).permute(2, 0, 1)[None]
    with torch.no_grad():
        head = stand_in.head(list(stand_in.backbone(bgr).values()))
    theirs_cls = head["cls_logits"][0].numpy()
    theirs_box = head["bbox_regression"][0].numpy()
    ours = model(image.astype(np.float32), training=False)
    cls_error = np.abs(ours["classification"][0].numpy() - theirs_cls).max()
    box_error = np.abs(ours["box"][0].numpy() - theirs_box[:, _TO_OURS]).max()
    print(f"detectron2 stand-in: max |logit diff| {cls_error:.2e}, max |delta diff| {box_error:.2e}")
    assert theirs_cls.std() > 0.1 and cls_error <= TOLERANCE and box_error <= TOLERANCE

    # detectron2's inference (RetinaNet.inference_single_image): per level sigmoid, > 0.05, top 1000,
    # decode; all levels: class-wise NMS 0.5 on the decoded boxes, best 100; then detector_postprocess
    # clips them to the picture and drops the empty ones. The picture here is 200 x 300 in its
    # 384 x 512 input: boxes reaching into the padding are clipped, those wholly in it dropped.
    picture = (200, 300)
    anchors = _detectron2_anchors(384, 512)
    scores_all = 1 / (1 + np.exp(-theirs_cls.astype(np.float64)))
    counts = [-(-384 // 2**lv) * -(-512 // 2**lv) * 9 for lv in range(3, 8)]
    boxes, scores, labels, start = [], [], [], 0
    for count in counts:
        flat = scores_all[start:start + count].ravel()
        keep = np.nonzero(flat > 0.05)[0]
        keep = keep[np.argsort(-flat[keep], kind="stable")[:1000]]
        index = start + keep // 80
        boxes.append(_detectron2_apply_deltas(theirs_box[index], anchors[index]))
        scores.append(flat[keep]), labels.append(keep % 80)
        start += count
    boxes, scores, labels = np.concatenate(boxes), np.concatenate(scores), np.concatenate(labels)
    kept = torchvision.ops.batched_nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(),
                                       torch.from_numpy(labels), 0.5)[:100].numpy()
    clipped = np.clip(boxes[kept], 0, [picture[1], picture[0], picture[1], picture[0]])
    nonempty = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    assert len(kept) == 100 and nonempty.sum() < 100  # some lie wholly in the padding: dropped
    unclipped_order = np.clip(boxes, 0, [512, 384, 512, 384])
    assert not np.array_equal(torchvision.ops.batched_nms(  # clipping first would keep other boxes
        torch.from_numpy(unclipped_order).float(), torch.from_numpy(scores).float(), torch.from_numpy(labels),
        0.5)[:100].numpy(), kept)
    detections = model.detect(image.astype(np.float32), picture_sizes=[picture])
    count = int(detections["num_detections"][0])
    assert count == nonempty.sum()
    _assert_same_detections((detections["boxes"][0, :count].numpy(), detections["scores"][0, :count].numpy(),
                             detections["classes"][0, :count].numpy()),
                            (clipped[nonempty][:, _TO_OURS], scores[kept][nonempty], labels[kept][nonempty]))


def test_detectron2_conventions_and_missing_batchnorm_statistics(detectron2_pair, tmp_path):
    """The conversion takes detectron2's resizing (PIL bilinear, half-up rounding), clipping after
    NMS and epsilon 1e-5; a norm saved without running_mean / running_var gets zeros / ones, as
    detectron2's FrozenBatchNorm2d loads a file without version metadata."""
    _, model, variant, _, state = detectron2_pair
    policy = model.resize_policy
    assert (policy.method, policy.rounding, model.decoder.clip_boxes, model.decoder.drop_empty_boxes) == (
        "pil_bilinear", "round", "after_nms", True)
    assert model.config.backbone_bn_epsilon == 1e-5
    prefix = "backbone.bottom_up.res3.0.conv2.norm."
    partial = {k: v for k, v in state.items() if k not in (prefix + "running_mean", prefix + "running_var")}
    converted, _, _ = build_converted("detectron2", _write_detectron2_pkl(partial, tmp_path / "partial.pkl"))
    bn = next(layer.bn for layer in converted.backbone.layers if layer.name == "conv3_block1_2_conv")
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 0.0)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), 1.0)


# --------------------------------------------------------------------------- bad files
def _expect_refused(path, *fragments, source="detectron2", tmp_path=None):
    target = tmp_path / "out"
    with pytest.raises(DataError) as caught:
        convert(source, str(path), str(target))
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)
    assert not target.exists()  # nothing half-converted, not even a folder
    return str(caught.value)


def test_bad_checkpoints_are_refused_naming_the_tensors(detectron2_pair, tmp_path):
    _, _, _, _, state = detectron2_pair
    key = "backbone.bottom_up.res3.1.conv2.weight"
    cases = {
        "missing": ({k: v for k, v in state.items() if k != key}, ["1 missing", key]),
        "extra": ({**state, "head.cls_subnet.1.weight": np.ones(256, np.float32)}, ["1 unexpected",
                                                                                  "head.cls_subnet.1.weight"]),
        "misshapen": ({**state, key: state[key][:, :64]}, ["1 unusable", key, "[128, 64, 3, 3]"]),
        "nan": ({**state, key: np.full_like(state[key], np.nan)}, ["NaN", key]),
        "rgb_mean": ({**state, "pixel_mean": _D2_MEAN_BGR[::-1].copy()}, ["pixel_mean is [123.675", "(BGR)"]),
        "misshapen_bias": ({**state, "head.cls_score.bias": state["head.cls_score.bias"][:450]},
                           ["1 unusable", "head.cls_score.bias [450]"]),
        "other_classes": ({**state, "head.cls_score.weight": state["head.cls_score.weight"][:9 * 20],
                           "head.cls_score.bias": state["head.cls_score.bias"][:9 * 20]}, ["180 output channels"]),
        "faster_rcnn": ({"backbone.body.conv1.weight": state["backbone.bottom_up.stem.conv1.weight"],
                         "rpn.head.conv.0.0.weight": np.zeros((256, 256, 3, 3), np.float32),
                         "roi_heads.box_predictor.cls_score.weight": np.zeros((91, 1024), np.float32)},
                        ["not a detectron2 RetinaNet checkpoint", "roi_heads", "Faster R-CNN"]),
    }
    for name, (bad_state, fragments) in cases.items():
        path = _write_detectron2_pkl(bad_state, tmp_path / f"{name}.pkl")
        _expect_refused(path, *fragments, tmp_path=tmp_path)
    good = open(detectron2_pair[3], "rb").read()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good[:len(good) // 2])
    _expect_refused(truncated, "truncated.pkl", tmp_path=tmp_path)
    # a detectron2 file given as torchvision's is not taken for one
    _expect_refused(detectron2_pair[3], "not a torchvision RetinaNet checkpoint", source="torchvision",
                    tmp_path=tmp_path)


def test_convert_refuses_an_existing_model_dir(detectron2_pair, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="already holds a model"):
        convert("detectron2", detectron2_pair[3], str(tmp_path / "run"))


# --------------------------------------------------------------------------- the commands
def _cli(*args, cwd):
    return keras_retina(*args, cwd=cwd)


@pytest.mark.parametrize("torchvision_pair", ["v2"], indirect=True)
def test_convert_predict_export_through_the_command_line(torchvision_pair, tmp_path):
    """The README's commands on a converted torchvision v2 model: convert, predict on a photo (COCO
    names drawn and written), export; the SavedModel answers as in-process serving does, with
    COCO category ids and names."""
    import json

    from PIL import Image

    from keras_retina.deploy.saved_model import DetectionServer

    tv, model, variant, path = torchvision_pair
    result = _cli("convert", "--source=torchvision", f"--weights={path}", "--model_dir=coco", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torchvision retinanet_resnet50_fpn_v2 (COCO)" in result.stdout and "Model dir:" in result.stdout
    photo = _astronaut(512, 384)[0]
    Image.fromarray(photo).save(tmp_path / "photo.png")
    result = _cli("predict", "--model_dir=coco", "photo.png", "--output_dir=out", "--draw_threshold=0.3",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert written and {d["category_id"] for d in written} <= set(coco_categories.CATEGORY_IDS)
    assert (tmp_path / "out" / "photo.png").exists()
    result = _cli("export", "--model_dir=coco", "--export_dir=serving", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    served = tf.saved_model.load(str(tmp_path / "serving" / "1")).signatures["serving_image_tensor"](
        tf.constant(photo[None]))
    server = DetectionServer(model, coco_categories.LABEL_MAP)  # its tf.function holds it weakly
    expected = server.serve_image_tensor(tf.constant(photo[None]))
    count = int(expected["num_detections"][0])
    assert count > 0 and int(served["num_detections"][0]) == count
    ids = served["detection_classes"][0, :count].numpy()
    np.testing.assert_array_equal(ids, expected["detection_classes"][0, :count].numpy())
    assert set(ids.astype(int)) <= set(coco_categories.CATEGORY_IDS)
    names = [n.decode() for n in served["detection_class_names"][0, :count].numpy()]
    assert names == [{e["id"]: e["name"] for e in coco_categories.LABEL_MAP}[int(i)] for i in ids]
    np.testing.assert_allclose(served["detection_boxes"][0, :count], expected["detection_boxes"][0, :count],
                               atol=1e-5)
    np.testing.assert_allclose(served["detection_scores"][0, :count], expected["detection_scores"][0, :count],
                               atol=1e-5)
