"""Starting a new training run from another model_dir's weights (`train --init_from=DIR`): a
COCO model converted from torchvision or detectron2 (`pretrained.convert`), or any trained run.

- `settings_from(model_config, DIR)`: the settings that decide what the weights are (`ARCHITECTURE`:
  backbone and its BatchNorm epsilon, anchor geometry, pyramid and head layout, box coder, padding
  colour) are DIR's, the others the run's own; an unset `freeze_backbone_at` becomes 2 for ResNets
  (as Detectron, detectron2 and torchvision fine-tune). DataError when DIR has no config.json.
- `initialise(model, DIR, label_map)`: every weight is copied but the classification output conv's;
  a new class whose name matches one of DIR's (`coco_categories.canonical`: case, '_' and '-',
  aliases such as motorbike = motorcycle) gets that class's kernel columns and biases for each of
  the A anchors, the others keep the paper's initialisation (section 4.1). Returns a report dict;
  UsageError / DataError when the two models are not built alike (checked before any copy).
A run that resumes from its own checkpoint does not initialise again; it keeps DIR's architecture.
"""

import dataclasses

import numpy as np

from keras_retina.data import coco_categories
from keras_retina.errors import DataError, UsageError
from keras_retina.model_dir import ModelDir
from keras_retina.modeling.backbone import FREEZABLE, FREEZE_AT_PRETRAINED

ARCHITECTURE = ("backbone", "backbone_bn_epsilon", "anchor_geometry", "num_scales", "aspect_ratios", "anchor_size",
                "fpn_filters", "p6_input", "fpn_extra_padding", "head_filters", "head_convs", "head_norm",
                "box_coder_weights", "pad_color")


def settings_from(model_config, init_dir, model_dir=None):
    """`model_config` with DIR's architecture (module docstring); a run that has already started
    in `model_dir` keeps the architecture it wrote (DIR may be gone by then). Backbone weights
    are not loaded (DIR's weights replace them)."""
    run = ModelDir(model_dir) if model_dir and ModelDir(model_dir).has_config() else ModelDir(init_dir)
    if not run.has_config():
        raise DataError(f"--init_from={init_dir}: no config.json there; give a model_dir written by keras_retina "
                        f"train or convert.")
    source = run.model_config()
    config = dataclasses.replace(model_config, backbone_weights=None,
                                 **{name: getattr(source, name) for name in ARCHITECTURE})
    if config.freeze_backbone_at is None:
        config = dataclasses.replace(
            config, freeze_backbone_at=FREEZE_AT_PRETRAINED if config.backbone in FREEZABLE else 0)
    return config


def class_matches(label_map, source_label_map):
    """[(new class index, source class index)] for classes whose canonical names match."""
    by_name = {}
    for index, entry in enumerate(source_label_map):
        by_name.setdefault(coco_categories.canonical(entry["name"]), index)
    return [(i, by_name[coco_categories.canonical(e["name"])]) for i, e in enumerate(label_map)
            if coco_categories.canonical(e["name"]) in by_name]


def initialise(model, init_dir, label_map):
    """Copies DIR's weights into `model` (built with `settings_from`'s config and `label_map`'s
    classes); returns a report dict: from, checkpoint, weights copied, carried [[new, source]]
    class names, new class names."""
    source, source_label_map, _, checkpoint = ModelDir(init_dir).load_model()
    head_kernel = model.classification_head.output_conv.kernel
    head_bias = model.classification_head.output_conv.bias
    ours, theirs = model.weights, source.weights
    if len(ours) != len(theirs):
        raise UsageError(f"--init_from={init_dir}: its model has {len(theirs)} weights, this one {len(ours)}.")
    matches = class_matches(label_map, source_label_map)
    anchors = model.anchor_generator.anchors_per_location
    pairs = [(mine, other) for mine, other in zip(ours, theirs) if mine is not head_kernel and mine is not head_bias]
    for mine, other in pairs:  # every weight checked before any is copied
        if mine.path != other.path or tuple(mine.shape) != tuple(other.shape):
            raise DataError(f"--init_from={init_dir}: weight {other.path} {tuple(other.shape)} there is "
                            f"{mine.path} {tuple(mine.shape)} here; the two models are not built alike.")
    for mine, other in pairs:
        mine.assign(other)
    copied = len(pairs)
    source_classes = len(source_label_map)
    for variable, source_variable in ((head_kernel, source.classification_head.output_conv.kernel),
                                      (head_bias, source.classification_head.output_conv.bias)) if matches else ():
        value = np.array(variable.numpy())
        new_value = value.reshape(value.shape[:-1] + (anchors, -1))
        source_value = np.asarray(source_variable.numpy()).reshape(value.shape[:-1] + (anchors, source_classes))
        for new, old in matches:
            new_value[..., new] = source_value[..., old]
        variable.assign(new_value.reshape(value.shape))
        copied += 1
    carried = {new for new, _ in matches}
    return {"from": init_dir, "checkpoint": checkpoint, "weights_copied": copied,
            "carried": [[label_map[new]["name"], source_label_map[old]["name"]] for new, old in matches],
            "new": [e["name"] for i, e in enumerate(label_map) if i not in carried]}


def format_report(report):
    carried = ", ".join(n if n == o else f"{n} (= {o})" for n, o in report["carried"]) or "none"
    return (f"Initialised from {report['checkpoint']}: {report['weights_copied']} weights copied; classifier "
            f"rows carried over for {len(report['carried'])} class(es): {carried}; new: "
            f"{', '.join(report['new']) or 'none'}.")
