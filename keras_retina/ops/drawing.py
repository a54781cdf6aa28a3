"""Draws detections on a picture (Pillow only, no TensorFlow).

Boxes are `[ymin, xmin, ymax, xmax]` normalised to the image (the exported
model's `detection_boxes`). Line width and font size follow the image size so
labels stay readable on a 200 px thumbnail and on a 4000 px photo; each class
keeps one colour; labels ("name 0.93") sit on a filled tag above the box (inside
it when the box touches the top edge), in black or white, whichever reads
better on the tag's colour. Lower-scoring boxes are drawn first, so the best
ones stay on top.
"""

import colorsys
import hashlib

from PIL import Image, ImageDraw, ImageFont

from keras_retina import renamed

DRAW_THRESHOLD = 0.3  # what `predict`, the client and TensorBoard pictures show


def class_colour(key):
    """A stable, saturated RGB colour for a class id (or a name).

    Ids step around the hue circle by the golden ratio, so neighbouring ids get clearly
    different colours; names are hashed to a number first.
    """
    if not isinstance(key, (int, float)):
        key = int(hashlib.md5(str(key).encode()).hexdigest()[:8], 16)
    hue = (int(key) * 0.6180339887) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image, boxes, scores, names, draw_threshold=None, class_ids=None, **renamed_arguments):
    """Returns a copy of `image` (PIL or uint8 array) with the detections scoring at least
    `draw_threshold` (default DRAW_THRESHOLD).

    Args:
      boxes: `[D, 4]` normalised yxyx; scores `[D]`; names `[D]` class names (str or bytes);
      class_ids: `[D]` category ids, which pick the colours (default: the names do).
    """
    draw_threshold = renamed.argument(renamed_arguments, "score_threshold", "draw_threshold", draw_threshold,
                                      "draw_detections")
    renamed.no_others(renamed_arguments, "draw_detections")
    draw_threshold = DRAW_THRESHOLD if draw_threshold is None else draw_threshold
    image = (image if isinstance(image, Image.Image) else Image.fromarray(image)).convert("RGB").copy()
    width, height = image.size
    side = min(width, height)
    line = max(2, round(side / 250))
    font = ImageFont.load_default(size=max(11, round(side / 38)))
    draw = ImageDraw.Draw(image)
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    for i in order:
        if scores[i] < draw_threshold:
            continue
        name = names[i].decode() if isinstance(names[i], bytes) else str(names[i])
        ymin, xmin, ymax, xmax = boxes[i]
        x0, y0, x1, y1 = xmin * width, ymin * height, xmax * width, ymax * height
        colour = class_colour(name if class_ids is None else int(class_ids[i]))
        box_with_tag(draw, (x0, y0, x1, y1), f"{name} {scores[i]:.2f}", colour, font, line)
    return image


def box_with_tag(draw, corners, text, colour, font, line, *, dashed=False):
    """A box (`corners` x0, y0, x1, y1 in pixels) in `colour`, solid or dashed, and `text` (None:
    no tag) on a filled tag above it (inside it at the picture's top edge)."""
    x0, y0, x1, y1 = corners
    if dashed:
        _dashed_rectangle(draw, corners, colour, line)
    else:
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=line)
    if text is None:
        return
    width = draw.im.size[0]
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    tag_w, tag_h = right - left + 2 * line, bottom - top + 2 * line
    tag_y = y0 - tag_h if y0 - tag_h >= 0 else y0
    tag_x = min(max(x0, 0), max(width - tag_w, 0))
    draw.rectangle([tag_x, tag_y, tag_x + tag_w, tag_y + tag_h], fill=colour)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    draw.text((tag_x + line - left, tag_y + line - top), text, font=font,
              fill=(0, 0, 0) if luminance > 140 else (255, 255, 255))


def _dashed_rectangle(draw, corners, colour, line, dash=8):
    x0, y0, x1, y1 = corners
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for n in range(0, steps, 2):
            t0, t1 = n / steps, min(n + 1, steps) / steps
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=colour, width=line)
