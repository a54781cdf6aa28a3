"""The published RetinaNet checkpoints we convert: how to recognise each, the model settings that
reproduce it, and which of our variables each of its tensors becomes.

- `normalise_keys(source, state, path)`: the state dict with torchvision's FPN and head keys named as
  its model loads them, without the tensors no model reads (`num_batches_tracked`, detectron2's anchor
  and pixel buffers); DataError for a detectron2 file whose pixel_mean / pixel_std differ from ours.
- `recognise(source, state, path)` -> `Variant`: torchvision `retinanet_resnet50_fpn` (v1) or `_v2`,
  detectron2 model-zoo RetinaNet R50/R101, COCO only (else DataError). Its ModelConfig `settings`
  (`variant_settings`) carry the library's conventions: backbone layout, BatchNorm epsilon (torchvision
  v1: 0), pad colour, anchor geometry, P6/P7 padding, head norm, resizing, inference settings, clipping.
- `load(variant, state, model, path)`: PyTorch kernels [out, in, kh, kw] -> [kh, kw, in, out], box
  deltas (dx, dy, dw, dh) -> (dy, dx, dh, dw), torchvision's 91 logits -> the 80 COCO classes. Every
  tensor is checked before any is assigned: one DataError names the missing, extra, misshapen and
  non-finite ones and variances with variance + epsilon <= 0. Returns the number assigned.
"""

import dataclasses
import re

import numpy as np

from keras_retina.data import coco_categories
from keras_retina.errors import DataError
from keras_retina.modeling.anchors import NUM_SCALES
from keras_retina.modeling.backbone import FREEZE_AT_PRETRAINED, FoldedConvBatchNorm
from keras_retina.modeling.pytorch_resnet import BLOCKS, BN_EPSILON, LAYOUTS, mean_color

SOURCES = ("torchvision", "detectron2")
_BOX_ORDER = [1, 0, 3, 2]  # (dx, dy, dw, dh) -> (dy, dx, dh, dw)
_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}
_IGNORED = re.compile(r"(^|\.)num_batches_tracked$")  # BatchNorm2d writes it; FrozenBatchNorm2d drops it
# Buffers some detectron2 files carry beside the weights: not weights, and detectron2 does not read them
# (pixel_mean / pixel_std are non-persistent: its config's values apply; normalise_keys checks them).
_D2_BUFFERS = re.compile(r"^(pixel_mean|pixel_std|anchor_generator\.cell_anchors\.\d+)$")
_D2_NORM = re.compile(r"^(backbone\.bottom_up\..*\.norm)\.weight$")
# torchvision's retinanet_resnet50_fpn builder calls overwrite_eps(model, 0.0) after loading the
# COCO_V1 file: that model is evaluated with FrozenBatchNorm2d's epsilon 0.
V1_BN_EPSILON = 0.0


@dataclasses.dataclass(frozen=True)
class Variant:
    """One published checkpoint kind: `source`, `name` (for people), `depth` (50/101), `settings`
    (ModelConfig fields), `class_rows` (the source logit of each of our classes)."""

    source: str
    name: str
    depth: int
    settings: dict
    class_rows: tuple


def _torchvision_key(key):
    """A torchvision key as torchvision's model names it when loading (its `_load_from_state_dict`):
    FPN `inner_blocks.0.weight` -> `inner_blocks.0.0.weight`, head `conv.2.weight` -> `conv.1.0.weight`."""
    key = key[len("module."):] if key.startswith("module.") else key
    key = re.sub(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d)\.(weight|bias)$", r"\1.0.\2", key)
    return re.sub(r"^(head\.(?:classification|regression)_head\.conv)\.(\d)\.(weight|bias)$",
                  lambda m: f"{m.group(1)}.{int(m.group(2)) // 2}.0.{m.group(3)}", key)


def normalise_keys(source, state, path):
    """The state dict with the key names `load` reads and without the tensors no model reads
    (module docstring); DataError for a detectron2 file that normalises its input otherwise."""
    if source == "torchvision":
        return {_torchvision_key(k): v for k, v in state.items() if not _IGNORED.search(k)}
    _, _, mean, std, _ = LAYOUTS["detectron2"]
    for key, expected in (("pixel_mean", mean), ("pixel_std", std)):
        if key in state and not np.allclose(np.ravel(state[key]), expected, atol=1e-3):
            raise DataError(f"{path}: its {key} is {np.ravel(state[key]).tolist()}; detectron2 RetinaNets here "
                            f"normalise with {list(expected)} (BGR), so its weights would see other inputs.")
    state = {k: v for k, v in state.items() if not _IGNORED.search(k) and not _D2_BUFFERS.match(k)}
    for key in [k for k in state if _D2_NORM.match(k)]:  # FrozenBatchNorm2d._load_from_state_dict's defaults
        prefix, channels = key[:-len("weight")], np.shape(state[key])
        state.setdefault(prefix + "running_mean", np.zeros(channels, np.float32))
        state.setdefault(prefix + "running_var", np.ones(channels, np.float32))
    return state


def variant_settings(source, depth, v2=False, p6_input=None):
    """The ModelConfig settings that reproduce a published model of `source` with a ResNet-`depth`
    (torchvision: v1, or v2 when `v2`); `p6_input` defaults to the variant's (v1: P5, else C5)."""
    torchvision = source == "torchvision"
    settings = dict(image_size=800, max_image_size=1333, resize="shorter_side", canvas="tight",
                    resize_rounding="floor" if torchvision else "round",
                    resize_method="bilinear" if torchvision else "pil_bilinear",
                    clip_boxes="before_nms" if torchvision else "after_nms", drop_empty_boxes=not torchvision,
                    freeze_backbone_at=FREEZE_AT_PRETRAINED, pad_color=mean_color(source),
                    fpn_extra_padding="symmetric", aspect_ratios=(2.0, 1.0, 0.5),
                    p6_input=p6_input or ("C5" if v2 or not torchvision else "P5"),
                    score_threshold=0.05, pre_nms_top_k=1000, nms_iou_threshold=0.5)
    if torchvision:
        settings.update(backbone=f"torchvision_resnet{depth}", anchor_geometry="torchvision",
                        head_norm="group_norm" if v2 else "none", max_detections=300,
                        backbone_bn_epsilon=BN_EPSILON if v2 else V1_BN_EPSILON)
    else:
        settings.update(backbone=f"detectron2_resnet{depth}", anchor_geometry="detectron2", head_norm="none",
                        max_detections=100, backbone_bn_epsilon=BN_EPSILON)
    return settings


def recognise(source, state, path):
    """The `Variant` of a state dict (keys as `normalise_keys` gives them); DataError when it is
    not a RetinaNet checkpoint of `source`."""
    if source not in SOURCES:
        raise DataError(f"--source={source!r}: choose one of {', '.join(SOURCES)}.")
    if source == "torchvision":
        cls_key, body, p6_key = "head.classification_head.cls_logits.weight", "backbone.body.layer3", \
            "backbone.fpn.extra_blocks.p6.weight"
    else:
        cls_key, body, p6_key = "head.cls_score.weight", "backbone.bottom_up.res4", "backbone.top_block.p6.weight"
    if cls_key not in state or p6_key not in state:
        prefixes = sorted({".".join(k.split(".")[:2]) for k in state})[:8]
        raise DataError(f"{path}: not a {source} RetinaNet checkpoint (no {cls_key} or {p6_key}); its tensors "
                        f"start with {', '.join(prefixes)}" + (" (a two-stage detector such as Faster R-CNN?)"
                                                             if any("roi_heads" in p or "rpn" in p for p in prefixes)
                                                             else "") + ".")
    blocks = len({k.split(".")[len(body.split("."))] for k in state if k.startswith(body + ".")})
    depth = next((d for d, counts in BLOCKS.items() if counts[2] == blocks), None)
    if depth is None:
        raise DataError(f"{path}: its ResNet has {blocks} blocks in {body}; ResNet-50 has 6, ResNet-101 23.")
    logits = state[cls_key].shape[0]
    v2 = source == "torchvision" and "head.classification_head.conv.0.1.weight" in state
    settings = variant_settings(source, depth, v2, p6_input="C5" if state[p6_key].shape[1] == 2048 else "P5")
    if source == "torchvision":
        expected = coco_categories.TORCHVISION_LOGITS
        name = f"torchvision retinanet_resnet{depth}_fpn{'_v2' if v2 else ''} (COCO)"
        rows = coco_categories.CATEGORY_IDS
    else:
        expected = len(coco_categories.LABEL_MAP)
        name = f"detectron2 RetinaNet R{depth}-FPN (COCO)"
        rows = tuple(range(expected))
    anchors = NUM_SCALES * len(settings["aspect_ratios"])  # 9, in both libraries
    if logits != anchors * expected:
        raise DataError(f"{path}: {cls_key} has {logits} output channels; a COCO {source} RetinaNet has "
                        f"{anchors} anchors x {expected} classes = {anchors * expected}. Only COCO checkpoints "
                        f"convert (their 80 category names are known).")
    return Variant(source, name, depth, settings, tuple(rows))


def _conv_and_bn(backbone, name):
    layer = backbone.get_layer(f"{name}_conv")
    if isinstance(layer, FoldedConvBatchNorm):
        return layer.conv, layer.bn
    return layer, backbone.get_layer(f"{name}_bn")


def _backbone_targets(variant, backbone):
    """source key -> (variable, kind) for the ResNet."""
    targets = {}

    def conv_bn(source_conv, source_bn, name):
        conv, bn = _conv_and_bn(backbone, name)
        targets[f"{source_conv}.weight"] = (conv.kernel, "kernel")
        for theirs, ours in _BN.items():
            targets[f"{source_bn}.{theirs}"] = (getattr(bn, ours), "vector")

    tv = variant.source == "torchvision"
    conv_bn(*(("backbone.body.conv1", "backbone.body.bn1") if tv else
              ("backbone.bottom_up.stem.conv1", "backbone.bottom_up.stem.conv1.norm")), "conv1")
    for stage, blocks in enumerate(BLOCKS[variant.depth], start=2):
        for block in range(blocks):
            ours = f"conv{stage}_block{block + 1}"
            theirs = f"backbone.body.layer{stage - 1}.{block}" if tv else f"backbone.bottom_up.res{stage}.{block}"
            for i in (1, 2, 3):
                conv_bn(f"{theirs}.conv{i}", f"{theirs}.bn{i}" if tv else f"{theirs}.conv{i}.norm", f"{ours}_{i}")
            if block == 0:
                conv_bn(*((f"{theirs}.downsample.0", f"{theirs}.downsample.1") if tv else
                          (f"{theirs}.shortcut", f"{theirs}.shortcut.norm")), f"{ours}_0")
    return targets


def _conv(targets, key, conv, kind="kernel"):
    targets[f"{key}.weight"] = (conv.kernel, kind)
    if conv.use_bias:
        targets[f"{key}.bias"] = (conv.bias, "vector" if kind == "kernel" else f"{kind}_bias")


def _pyramid_and_head_targets(variant, model):
    targets = {}
    fpn = model.fpn
    for i, level in enumerate((3, 4, 5)):
        lateral, output = fpn.lateral[f"C{level}"], fpn.output_convs[f"P{level}"]
        if variant.source == "torchvision":
            _conv(targets, f"backbone.fpn.inner_blocks.{i}.0", lateral)
            _conv(targets, f"backbone.fpn.layer_blocks.{i}.0", output)
        else:
            _conv(targets, f"backbone.fpn_lateral{level}", lateral)
            _conv(targets, f"backbone.fpn_output{level}", output)
    for level in (6, 7):
        prefix = "backbone.fpn.extra_blocks" if variant.source == "torchvision" else "backbone.top_block"
        _conv(targets, f"{prefix}.p{level}", fpn.extra[f"P{level}"])
    for head, kind in ((model.classification_head, "classes"), (model.box_head, "boxes")):
        if variant.source == "torchvision":
            prefix = "head.classification_head" if kind == "classes" else "head.regression_head"
            for i, (conv, norm) in enumerate(zip(head.hidden, head.norms)):
                _conv(targets, f"{prefix}.conv.{i}.0", conv)
                if norm is not None:
                    targets[f"{prefix}.conv.{i}.1.weight"] = (norm.gamma, "vector")
                    targets[f"{prefix}.conv.{i}.1.bias"] = (norm.beta, "vector")
            _conv(targets, f"{prefix}.{'cls_logits' if kind == 'classes' else 'bbox_reg'}", head.output_conv, kind)
        else:
            prefix = "head.cls_subnet" if kind == "classes" else "head.bbox_subnet"
            for i, conv in enumerate(head.hidden):
                _conv(targets, f"{prefix}.{2 * i}", conv)
            _conv(targets, "head.cls_score" if kind == "classes" else "head.bbox_pred", head.output_conv, kind)
    return targets


def _transform(value, kind, variant, anchors):
    """A source tensor as our variable holds it (module docstring)."""
    if kind in ("classes", "classes_bias", "boxes", "boxes_bias"):
        per_anchor = value.reshape((anchors, -1) + value.shape[1:])
        if kind.startswith("classes"):
            per_anchor = per_anchor[:, list(variant.class_rows)]
        else:
            per_anchor = per_anchor[:, _BOX_ORDER]
        value = per_anchor.reshape((-1,) + value.shape[1:])
    if value.ndim == 4:  # [out, in, kh, kw] -> [kh, kw, in, out]
        value = value.transpose(2, 3, 1, 0)
    return np.ascontiguousarray(value, dtype=np.float32)


def load(variant, state, model, path):
    """Assigns every tensor of `state` (normalised keys) to `model` (built with
    `variant.settings` and 80 classes); DataError naming every missing, extra or misshapen
    tensor before anything is assigned. Returns the number of tensors assigned."""
    targets = {**_backbone_targets(variant, model.backbone), **_pyramid_and_head_targets(variant, model)}
    return _assign(targets, state, variant, path, model.anchor_generator.anchors_per_location)


def load_imagenet_resnet(backbone, state, path, depth):
    """Assigns a torchvision ImageNet ResNet-`depth` state dict (conv1, bn1, layer1..4; the
    classifier `fc` is not used) to a `torchvision_resnet<depth>` backbone, every tensor checked
    first; returns the number assigned."""
    state = {f"backbone.body.{key}": value for key, value in state.items()
             if not key.startswith("fc.") and not _IGNORED.search(key)}
    variant = Variant("torchvision", f"torchvision ResNet-{depth} (ImageNet)", depth,
                      {"backbone_bn_epsilon": BN_EPSILON}, ())
    return _assign(_backbone_targets(variant, backbone), state, variant, path, anchors=None)


def _assign(targets, state, variant, path, anchors):
    epsilon = variant.settings["backbone_bn_epsilon"]
    missing = sorted(set(targets) - set(state))
    extra = sorted(set(state) - set(targets))
    converted, misshapen = {}, []
    for key in sorted(set(targets) & set(state)):
        variable, kind = targets[key]
        value = state[key]
        if value.dtype.kind != "f":
            misshapen.append(f"{key} is {value.dtype}, not floating point")
            continue
        try:
            converted[key] = _transform(value, kind, variant, anchors)
        except (ValueError, IndexError):  # a tensor of the wrong size: reported as misshapen below
            converted[key] = value
        if converted[key].shape != tuple(variable.shape):
            misshapen.append(f"{key} {list(value.shape)} (ours {variable.path} needs {list(variable.shape)})")
        elif not np.all(np.isfinite(converted[key])):
            misshapen.append(f"{key} holds NaN or Inf")
        elif key.endswith("running_var") and not np.all(converted[key] + epsilon > 0):
            misshapen.append(f"{key} has {int(np.sum(converted[key] + epsilon <= 0))} variance(s) with variance + "
                             f"epsilon {epsilon:g} <= 0: its frozen BatchNorm divides by zero ({variant.source} "
                             f"computes Inf/NaN there)")
    problems = []
    for label, keys in (("missing", missing), ("unexpected", extra), ("unusable", misshapen)):
        if keys:
            problems.append(f"{len(keys)} {label}: " + "; ".join(keys[:6]) + (" ..." if len(keys) > 6 else ""))
    if problems:
        raise DataError(f"{path} is not a complete {variant.name} checkpoint ({' | '.join(problems)}); nothing "
                        f"was converted.")
    for key, value in converted.items():
        targets[key][0].assign(value)
    return len(converted)
