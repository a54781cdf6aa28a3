"""The report's figures as PNG bytes, drawn with matplotlib (its Agg backend: no display needed).

- `pr_curves_png(curves, classes)`: precision against recall over all classes at IoU 0.5 and
  0.75 and per object size at 0.5 (left), and per class at 0.5 (right; with many classes the
  legend names the weakest);
- `confusion_png(matrix, labels, report_threshold)`: the confusion matrix, each row divided by
  its count (the share of a true class detected as each class or missed), counts written in
  the cells when there are few classes;
- `errors_png(errors)`: the AP each kind of error would add if fixed, with its count.
"""

import io
import warnings

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, no display
import matplotlib.pyplot as plt  # noqa: E402

LEGEND_CLASSES = 12


def _png(figure):
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # a class name in a script the font lacks draws as boxes, not a warning
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def pr_curves_png(curves, classes):
    figure, (overall, per_class) = plt.subplots(1, 2, figsize=(12, 5))
    recall = curves["recall"]
    for key, style in (("0.50", "-"), ("0.75", "--")):
        if curves["all"][key] is not None:
            overall.plot(recall, curves["all"][key], style, color="black", lw=2, label=f"all classes, IoU {key}")
    for size, color in zip(("small", "medium", "large"), ("tab:red", "tab:orange", "tab:green")):
        if curves["sizes"][size] is not None:
            overall.plot(recall, curves["sizes"][size], ":", color=color, lw=1.5, label=f"{size} objects, IoU 0.50")
    _axes(overall, "All classes")
    ranked = sorted((c for c in classes if c["AP50"] is not None), key=lambda c: c["AP50"])
    named = {c["name"] for c in ranked[:LEGEND_CLASSES]}
    colors = plt.get_cmap("tab20")
    for n, item in enumerate(ranked):
        curve = curves["classes"][item["name"]]["0.50"]
        label = f"{item['name']} (AP50 {item['AP50']:.2f})" if item["name"] in named else None
        per_class.plot(recall, curve, lw=1.2 if label else 0.6, alpha=1.0 if label else 0.4, color=colors(n % 20),
                       label=label)
    title = "Per class, IoU 0.50" + (f" (the {LEGEND_CLASSES} weakest named)" if len(ranked) > LEGEND_CLASSES else "")
    _axes(per_class, title)
    return _png(figure)


def _axes(axes, title):
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="lower left")


def confusion_png(matrix, labels, report_threshold):
    count = len(labels)
    side = min(max(5.0, 0.35 * count + 2.5), 24.0)
    figure, axes = plt.subplots(figsize=(side + 1.5, side))
    totals = matrix.sum(axis=1, keepdims=True)
    shares = matrix / totals.clip(min=1)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(count), labels, rotation=90, fontsize=8 if count > 20 else 10)
    axes.set_yticks(range(count), labels, fontsize=8 if count > 20 else 10)
    axes.set_xlabel("detected as")
    axes.set_ylabel("true class")
    axes.set_title(f"Confusion matrix (IoU 0.5, score >= {report_threshold:.2f}); shares of each row")
    if count <= 20:
        for i in range(count):
            for j in range(count):
                if matrix[i, j]:
                    axes.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=9,
                              color="white" if shares[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return _png(figure)


def errors_png(errors):
    kinds = list(errors["types"])
    deltas = [errors["types"][k]["delta_ap"] for k in kinds]
    figure, axes = plt.subplots(figsize=(8, 3.6))
    bars = axes.barh(kinds[::-1], deltas[::-1], color="tab:red")
    for bar, kind in zip(bars, kinds[::-1]):
        count = errors["types"][kind]["count"]
        axes.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f"  +{bar.get_width():.3f}  ({count})",
                  va="center", fontsize=9)
    axes.set_xlim(0, max(max(deltas) * 1.35, 0.05))
    axes.set_xlabel("AP50 gained if this kind of error were fixed (count of errors in brackets)")
    axes.set_title(f"Errors (TIDE), AP50 {errors['ap50']:.3f}")
    return _png(figure)
