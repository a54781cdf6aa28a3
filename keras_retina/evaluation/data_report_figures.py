"""The data report's figures as PNG bytes (matplotlib, Agg backend), from check-data's numbers.

- `class_counts_png(per_split)`: boxes per class, a bar per split side by side;
- `box_sizes_png(sizes, anchor_sizes, hard_below)`: the boxes' sizes (square root of the area, in
  the model's input pixels) as a histogram on a log axis, the anchors' sizes drawn over it as
  lines and the sizes no anchor can match at IoU 0.5 shaded;
- `aspects_png(aspects, anchor_ratios)`: log2 of height / width per box, the anchors' ratios drawn
  over it;
- `boxes_per_picture_png(per_split)`: how many boxes the pictures hold.
"""

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_retina.evaluation.report_figures import _png  # noqa: E402

SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange"}


def class_counts_png(per_split):
    """`per_split` {split: {class: boxes}}."""
    classes = list(next(iter(per_split.values())))
    figure, axes = plt.subplots(figsize=(min(14, 3 + 0.5 * len(classes)), 4))
    width = 0.8 / len(per_split)
    for k, (split, counts) in enumerate(per_split.items()):
        axes.bar(np.arange(len(classes)) + k * width, [counts[c] for c in classes], width,
                 label=split, color=SPLIT_COLOURS.get(split))
    crowded = len(classes) > 4 or max(len(c) for c in classes) > 10
    axes.set_xticks(np.arange(len(classes)) + width * (len(per_split) - 1) / 2, classes,
                    rotation=30 if crowded else 0, ha="right" if crowded else "center")
    axes.set_ylabel("boxes")
    axes.legend()
    axes.set_title("Boxes per class")
    return _png(figure)


def box_sizes_png(sizes, anchor_sizes, hard_below):
    """`sizes` {split: [n] box sizes in model-input pixels}; `anchor_sizes` [sizes of the anchors];
    `hard_below`: the size under which no anchor reaches IoU 0.5 with a box."""
    figure, axes = plt.subplots(figsize=(10, 4))
    values = np.concatenate([v for v in sizes.values() if len(v)] or [np.ones(1)])
    low, high = max(1.0, values.min() * 0.8), max(values.max() * 1.25, max(anchor_sizes) * 1.1)
    bins = np.geomspace(low, high, 40)
    for split, v in sizes.items():
        axes.hist(v, bins=bins, alpha=0.6, label=f"{split} boxes", color=SPLIT_COLOURS.get(split))
    for k, size in enumerate(anchor_sizes):
        axes.axvline(size, color="black", lw=1, ls="--", label="anchor sizes" if k == 0 else None)
    axes.axvspan(low, max(low, hard_below), color="tab:red", alpha=0.12,
                 label=f"below {hard_below:.0f} px: no anchor reaches IoU 0.5")
    axes.set_xscale("log")
    axes.set_xlabel("box size: square root of the area, in the model's input pixels")
    axes.set_ylabel("boxes")
    axes.legend(fontsize=9)
    axes.set_title("Box sizes and the anchors'")
    return _png(figure)


def aspects_png(aspects, anchor_ratios):
    """`aspects` {split: [n] log2(height / width)}; `anchor_ratios` [height / width of the anchors]."""
    figure, axes = plt.subplots(figsize=(10, 3.5))
    bins = np.linspace(-4, 4, 41)
    for split, v in aspects.items():
        axes.hist(np.clip(v, -4, 4), bins=bins, alpha=0.6, label=f"{split} boxes", color=SPLIT_COLOURS.get(split))
    for k, ratio in enumerate(anchor_ratios):
        axes.axvline(np.log2(ratio), color="black", lw=1, ls="--", label="anchor ratios" if k == 0 else None)
    axes.set_xlabel("log2(height / width): 0 square, +1 twice as tall, -1 twice as wide")
    axes.set_ylabel("boxes")
    axes.legend(fontsize=9)
    axes.set_title("Box shapes and the anchors'")
    return _png(figure)


def boxes_per_picture_png(per_split):
    """`per_split` {split: [boxes of each picture]}."""
    figure, axes = plt.subplots(figsize=(10, 3.5))
    top = max([max(v) for v in per_split.values() if len(v)] + [1])
    bins = np.arange(0, top + 2) - 0.5 if top < 60 else 40
    for split, v in per_split.items():
        axes.hist(v, bins=bins, alpha=0.6, label=split, color=SPLIT_COLOURS.get(split))
    axes.set_xlabel("boxes in a picture")
    axes.set_ylabel("pictures")
    axes.legend()
    axes.set_title("Boxes per picture")
    return _png(figure)
