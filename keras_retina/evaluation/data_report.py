"""`check-data --report_dir`: one offline HTML page to look at the data before training.

`write_data_report(folder, sources, document, policy, generator)`: `sources` {split: source},
`document` check-data's numbers (`data.check.check_data`: counts, label checks, leakage),
`policy` the model's resize policy (box sizes are shown in the model's input pixels: what the
anchors see; picture sources only, others in their own pixels), `generator` its anchor
generator. Writes `folder/index.html` (CSS inline, figures and pictures as data URIs, like the
evaluation report; `report_page`'s style) and returns its path. Sections: the counts per split;
boxes per class; box sizes with the anchors' sizes and the sizes no anchor matches; box shapes
with the anchors' ratios; boxes per picture; sample pictures of each class with its boxes; the
labels to look at (duplicate boxes, size and shape outliers) and the copies and overlapping views
of one scene, each with the picture and the box at fault; the pictures with the most and the
smallest boxes. Thumbnails are capped (MAX_THUMBNAILS a section) and the page says how many it
left out. Every text from the data (class and file names) is escaped.
"""

import base64
import io
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from keras_retina.data.label_statistics import annotations
from keras_retina.evaluation import data_report_figures as figures
from keras_retina.evaluation.report_page import SCRIPT, STYLE, _e
from keras_retina.evaluation.report_pictures import load_pictures
from keras_retina.files import make_folder, replace_atomically
from keras_retina.ops import drawing

SAMPLES_PER_CLASS = 4
MAX_THUMBNAILS = 12
THUMBNAIL_SIDE = 360
MARK, OTHER = (230, 30, 30), (255, 255, 255)


def _uri(png_or_jpeg, kind="png"):
    return f"data:image/{kind};base64,{base64.b64encode(png_or_jpeg).decode()}"


def _rows(source, policy):
    """Per picture: (image id, classes, boxes yxyx pixels, scale to the model's input) of trainable boxes."""
    hw = {int(e["id"]): e["hw"] for e in getattr(source, "images", None) or []}
    out = []
    for classes, is_crowd, boxes, image_id in annotations(source, with_ids=True):
        keep = (classes >= 0) & ~is_crowd
        scale = policy.scale(*hw[image_id]) if image_id in hw else 1.0
        out.append((image_id, classes[keep], boxes[keep], float(scale)))
    return out


def _thumbnail(pixels, marked=(), others=(), label=None):
    """JPEG bytes of a picture at THUMBNAIL_SIDE (its longer side), `marked` boxes red (with `label`),
    `others` thin white and dashed."""
    image = Image.fromarray(pixels).convert("RGB")
    scale = THUMBNAIL_SIDE / max(image.size)  # small pictures grow too: the tags keep their size on the page
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    for box in others:
        y0, x0, y1, x1 = np.asarray(box, np.float64) * scale
        drawing.box_with_tag(draw, (x0, y0, x1, y1), None, OTHER, font, 1, dashed=True)
    for box in marked:
        y0, x0, y1, x1 = np.asarray(box, np.float64) * scale
        drawing.box_with_tag(draw, (x0, y0, x1, y1), label, MARK, font, 2)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _gallery(items, total, what):
    """HTML of thumbnail `items` [(jpeg, caption)], saying how many of `total` it left out."""
    if not total:
        return [f"<p>No {what}.</p>"]
    out = ["<div class='pictures'>"]
    out += [f"<figure><img src='{_uri(jpeg, 'jpeg')}' alt='{_e(caption)}'><figcaption>{_e(caption)}</figcaption>"
            f"</figure>" for jpeg, caption in items]
    out.append("</div>")
    if total > len(items):
        out.append(f"<p>{len(items)} of {total} shown; check-data's --output file lists them all.</p>")
    return out


def write_data_report(folder, sources, document, policy, generator):
    make_folder(folder, "--report_dir")
    label_map = next(iter(sources.values())).label_map
    names = [e["name"] for e in label_map]
    rows = {split: _rows(source, policy) for split, source in sources.items()}
    boxes_of = {split: [(i, c, b, s) for i, cs, bs, s in r for c, b in zip(cs, bs)] for split, r in rows.items()}
    sizes = {split: np.array([np.sqrt(max(b[2] - b[0], 0) * max(b[3] - b[1], 0)) * s for _, _, b, s in found])
             for split, found in boxes_of.items()}
    aspects = {split: np.array([np.log2(max(b[2] - b[0], 1e-3) / max(b[3] - b[1], 1e-3)) for _, _, b, _ in found])
               for split, found in boxes_of.items()}
    anchor_sizes = sorted(generator.anchor_size * 2.0 ** level * 2.0 ** (k / generator.num_scales)
                          for level in range(generator.min_level, generator.max_level + 1)
                          for k in range(generator.num_scales))
    figs = {
        "classes": figures.class_counts_png({split: {n: v["boxes"] for n, v in document["splits"][split]["per_class"]
                                                     .items()} for split in sources}),
        "sizes": figures.box_sizes_png(sizes, anchor_sizes, anchor_sizes[0] / np.sqrt(2)),
        "aspects": figures.aspects_png(aspects, [1 / r for r in generator.aspect_ratios]),
        "per_picture": figures.boxes_per_picture_png({split: [len(row[1]) for row in r] for split, r in rows.items()}),
    }
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Data report</title>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style></head><body>",
             "<h1>Data report</h1>",
             f"<p class='about'>{'; '.join(f'{_e(s)}: {_e(_shown(src.name))}' for s, src in sources.items())}</p>"]
    parts.append("<div class='numbers'>" + "".join(
        f"<div class='number'><b>{document['splits'][s][key]}</b><span>{s} {label}</span></div>"
        for s in sources for key, label in (("pictures", "pictures"), ("boxes", "boxes"),
                                            ("pictures_without_boxes", "without boxes"))) + "</div>")
    parts.append("<h2>Classes</h2>")
    parts.append(f"<figure><img src='{_uri(figs['classes'])}' alt='boxes per class'></figure>")
    parts.append("<h2>Box sizes</h2><p>The square root of each box's area in the model's input pixels (after "
                 f"its resize: --image_size={_e(policy.image_size)}), with the anchors' sizes as dashed lines. A box "
                 "smaller than the shaded limit can match no anchor at IoU 0.5 and trains through its single "
                 "best anchor only: a larger --image_size or a smaller --anchor_size helps (check-data names one "
                 "when coverage is low).</p>")
    parts.append(f"<figure><img src='{_uri(figs['sizes'])}' alt='box sizes'></figure>")
    parts.append("<h2>Box shapes</h2><p>Boxes much taller or wider than every anchor ratio are matched poorly: "
                 "--aspect_ratios adds shapes.</p>")
    parts.append(f"<figure><img src='{_uri(figs['aspects'])}' alt='box shapes'></figure>")
    parts.append("<h2>Boxes per picture</h2>")
    parts.append(f"<figure><img src='{_uri(figs['per_picture'])}' alt='boxes per picture'></figure>")
    parts += _samples(sources, rows, names)
    parts += _label_checks(sources, document, rows)
    parts += _leakage(sources, document)
    parts += _extremes(sources, rows, sizes)
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    path = os.path.join(folder, "index.html")

    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as f:
            f.write("\n".join(parts))

    replace_atomically(path, write)
    return path


def _shown(name):
    """A source's name without the folders above it (a report shared beyond this machine shows no one's)."""
    return os.path.join(os.path.basename(os.path.dirname(name)), os.path.basename(name)) if os.sep in name else name


def _pictures(source, image_ids):
    return load_pictures(source, sorted({int(i) for i in image_ids}))


def _samples(sources, rows, names):
    out = ["<h2>Samples of each class</h2><p>Up to four pictures a class, its boxes red, the others dashed.</p>"]
    split = "train" if "train" in sources else next(iter(sources))
    chosen = []
    for k in range(len(names)):
        holding = [r for r in rows[split] if (r[1] == k).any()]
        chosen += [(k, r) for r in holding[:SAMPLES_PER_CLASS]]
    pictures = _pictures(sources[split], [r[0] for _, r in chosen])
    items = []
    for k, (image_id, classes, boxes, _) in chosen:
        if image_id in pictures:
            pixels, file = pictures[image_id]
            items.append((_thumbnail(pixels, boxes[classes == k], boxes[classes != k], names[k]),
                          f"{names[k]}: {file}"))
    return out + _gallery(items, len(chosen), "pictures")


def _label_checks(sources, document, rows):
    out = ["<h2>Labels to look at</h2><p>Two boxes of one class on one object, boxes far outside their "
           "class's usual size or shape (more than 4 robust standard deviations), and, with --model_dir, the "
           "trained model's confident detections that no label covers (a label that may be missing): listed, "
           "not changed.</p>"]
    items, total = [], 0
    for split, source in sources.items():
        checks = document["splits"][split]["label_checks"]
        unlabelled = checks.get("unlabelled", {"pictures": [], "detections": 0})
        entries = ([("no label", e, e["boxes"]) for e in unlabelled["pictures"]]
                   + [("duplicate", e, e["boxes"]) for e in checks["duplicates"]]
                   + [("size", e, [e["box"]]) for e in checks["size_outliers"]]
                   + [("shape", e, [e["box"]]) for e in checks["shape_outliers"]])
        total += sum(checks["counts"].values()) + unlabelled.get("pictures_with_some", 0)
        shown = entries[:max(0, MAX_THUMBNAILS - len(items))]
        pictures = _pictures(source, [e["image_id"] for _, e, _ in shown])
        for kind, entry, boxes in shown:
            if entry["image_id"] in pictures:
                pixels, file = pictures[entry["image_id"]]
                items.append((_thumbnail(pixels, boxes, label=f"{kind} {entry['class']}"),
                              f"{split}: {kind} {entry['class']} in {file}"))
    return out + _gallery(items, total, "labels that look wrong")


def _leakage(sources, document):
    out = ["<h2>Copies and overlapping views</h2><p>Pictures of one scene: the same picture, a re-saved, "
           "resized or recompressed copy, a crop or an overlapping tile. A group spanning training and validation "
           "makes the validation metrics overstate the model.</p>"]
    groups = sorted(document["leakage"]["groups"], key=lambda g: -len({m["split"] for m in g["members"]}))
    items, shown_groups = [], 0
    for group in groups:
        if len(items) >= MAX_THUMBNAILS:
            break
        shown_groups += 1
        for member in group["members"][:4]:
            pictures = _pictures(sources[member["split"]], [member["image_id"]])
            if member["image_id"] in pictures:
                pixels, file = pictures[member["image_id"]]
                items.append((_thumbnail(pixels), f"group {shown_groups} ({' / '.join(group['kinds'])}): "
                                                  f"{member['split']} {file}"))
    return out + _gallery(items, sum(len(g["members"]) for g in groups), "copies or overlapping views")


def _extremes(sources, rows, sizes):
    out = ["<h2>The pictures with the most boxes and with the smallest</h2>"]
    split = "train" if "train" in sources else next(iter(sources))
    most = sorted(rows[split], key=lambda r: -len(r[1]))[:4]
    smallest = sorted((r for r in rows[split] if len(r[1])), key=lambda r: _smallest(r))[:4]
    chosen = [("most", r) for r in most] + [("smallest", r) for r in smallest]
    pictures = _pictures(sources[split], [r[0] for _, r in chosen])
    items = []
    for kind, (image_id, classes, boxes, scale) in chosen:
        if image_id in pictures:
            pixels, file = pictures[image_id]
            caption = (f"{len(boxes)} boxes: {file}" if kind == "most"
                       else f"smallest box {_smallest((image_id, classes, boxes, scale)):.0f} px at the model's scale: "
                            f"{file}")
            items.append((_thumbnail(pixels, boxes if kind == "most" else boxes[[_smallest_index(boxes)]],
                                     boxes if kind == "smallest" else ()), caption))
    return out + _gallery(items, len(chosen), "pictures with boxes")


def _smallest_index(boxes):
    return int(np.argmin((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))


def _smallest(row):
    _, _, boxes, scale = row
    b = boxes[_smallest_index(boxes)]
    return float(np.sqrt(max(b[2] - b[0], 0) * max(b[3] - b[1], 0)) * scale)
