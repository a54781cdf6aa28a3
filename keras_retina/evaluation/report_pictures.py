"""The report's worst pictures: ground truth and detections drawn in styles told apart at a glance.

On each picture (shrunk to at most `MAX_SIDE` pixels), at the report's score threshold:

- a correct detection: a solid green box (no tag: the mistakes stand out);
- a wrong detection: a solid red box, "name 0.61 Cls" with its error type (`error_breakdown`:
  Cls, Loc, Both, Dupe, Bkg);
- a ground-truth box no detection found: a dashed yellow box, "missed: name";
- every other ground-truth box: a thin dashed white box.

Pictures come from the evaluation data's source: a picture-file source decodes only the
pictures asked for; any other source is read in order until they are all found.
"""

import io
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from keras_retina.evaluation.error_breakdown import SHORT
from keras_retina.ops import drawing

MAX_SIDE = 800
CORRECT, WRONG, MISSED, TRUTH = (40, 200, 60), (230, 30, 30), (255, 215, 0), (255, 255, 255)


def load_pictures(source, image_ids):
    """{image id: (uint8 [H, W, 3] picture, file name relative to the data's folder)} of `image_ids`
    in `source` (a report shared beyond this machine shows no one's folders)."""
    wanted = {int(i) for i in image_ids}
    files = {}
    if hasattr(source, "images") and hasattr(source, "subset"):  # picture files: decode only these
        keep = [n for n, record in enumerate(source.images) if int(record["id"]) in wanted]
        folder = _data_folder([str(record["file"]) for record in source.images])
        files = {int(source.images[n]["id"]): _relative(str(source.images[n]["file"]), folder) for n in keep}
        source = source.subset(keep, f"{source.name} (worst pictures)")
    found = {}
    for example in source.examples():
        image_id = int(example["image_id"].numpy())
        if image_id in wanted:
            found[image_id] = (example["image"].numpy(), files.get(image_id, f"image id {image_id}"))
            if len(found) == len(wanted):
                break
    return found


def _data_folder(files):
    """The deepest folder holding every picture, or None (mixed relative and absolute paths)."""
    try:
        common = os.path.commonpath([os.path.abspath(f) for f in files]) if files else None
    except ValueError:
        return None
    return os.path.dirname(common) if common and len(set(files)) == 1 else common


def _relative(file, folder):
    return os.path.relpath(os.path.abspath(file), folder) if folder else os.path.basename(file)


def draw_worst(matches, breakdown, mistakes, worst, source, names):
    """[{"jpeg": bytes, "file": str}] for the picture indices `worst` (`confusion.picture_mistakes`)."""
    pictures = load_pictures(source, [matches.image_ids[i] for i in worst])
    out = []
    for i in worst:
        image_id = int(matches.image_ids[i])
        if image_id not in pictures:
            out.append({"jpeg": _placeholder(f"image id {image_id}: not in the data source"), "file": "?"})
            continue
        pixels, file = pictures[image_id]
        out.append({"jpeg": _draw(pixels, matches, breakdown, i, mistakes[i], names), "file": file})
    return out


def _draw(pixels, matches, breakdown, index, picture, names):
    image = Image.fromarray(pixels).convert("RGB")
    scale = min(1.0, MAX_SIDE / max(image.size))
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    line = max(2, round(min(image.size) / 250))
    font = ImageFont.load_default(size=max(11, round(min(image.size) / 40)))

    def corners(box):
        x, y, w, h = np.asarray(box, np.float64) * scale
        return x, y, x + w, y + h

    missed = {int(r) for r in picture["missed"]}
    for row in np.flatnonzero((matches.gt_image == index) & ~matches.gt_crowd):
        if int(row) in missed:
            drawing.box_with_tag(draw, corners(matches.gt_box[row]), f"missed: {names[matches.gt_class[row]]}",
                                 MISSED, font, line + 1, dashed=True)
        else:
            drawing.box_with_tag(draw, corners(matches.gt_box[row]), None, TRUTH, font, 1, dashed=True)
    for row in picture["correct"]:
        drawing.box_with_tag(draw, corners(matches.det_box[row]), None, CORRECT, font, line)
    for row in picture["wrong"]:
        kind = SHORT.get(breakdown.det_type[row], "")
        drawing.box_with_tag(draw, corners(matches.det_box[row]),
                             f"{names[matches.det_class[row]]} {matches.det_score[row]:.2f} {kind}", WRONG, font, line)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def _placeholder(text):
    image = Image.new("RGB", (480, 60), (60, 60, 60))
    ImageDraw.Draw(image).text((10, 20), text, fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()
