"""Synthetic detection data: coloured shapes on a noisy background, with exact boxes.

Used by the tests (does the model learn?) and by the demo dataset. Every image
gets 1..`max_objects` shapes; class k is a fixed (shape, colour) pair, so a
detector has to tell both apart. Shapes may touch but never overlap by more
than `max_overlap` IoU, so every box stays a fair target.

`make_example(rng, size, ...)` -> (image uint8 `[size, size, 3]` RGB,
boxes float32 `[n, 4]` yxyx pixels, classes int32 `[n]`).
"""

import numpy as np

from keras_retina import boxes as box_lib

# class id -> (shape, RGB colour)
CLASSES = (
    ("square", (230, 40, 40)),
    ("disc", (40, 200, 60)),
    ("triangle", (50, 90, 230)),
    ("square", (240, 200, 30)),
    ("disc", (200, 60, 220)),
    ("triangle", (30, 210, 210)),
)
CLASS_NAMES = tuple(f"{colour_name}_{shape}" for (shape, _), colour_name in zip(
    CLASSES, ("red", "green", "blue", "yellow", "magenta", "cyan")))


def make_example(rng, size, num_classes=3, max_objects=3, min_side=0.2, max_side=0.5,
                 max_overlap=0.1):
    """One image with 1..max_objects shapes of the first `num_classes` classes.

    Object sides are drawn uniformly in [min_side, max_side] * size.
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise ValueError(f"num_classes must be in 1..{len(CLASSES)}, got {num_classes}.")
    image = rng.normal(110.0, 20.0, (size, size, 3)).clip(0, 255)
    boxes, classes = [], []
    for _ in range(rng.integers(1, max_objects + 1)):
        for _attempt in range(20):
            h, w = rng.uniform(min_side, max_side, 2) * size
            y0, x0 = rng.uniform(0, size - h), rng.uniform(0, size - w)
            box = np.array([y0, x0, y0 + h, x0 + w], np.float32)
            if not boxes or np.asarray(
                    box_lib.pairwise_iou(box[None], np.stack(boxes))).max() <= max_overlap:
                break
        else:
            continue
        cls = int(rng.integers(0, num_classes))
        _draw(image, box, *CLASSES[cls])
        boxes.append(box)
        classes.append(cls)
    return (image.astype(np.uint8), np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(classes, np.int32))


def _draw(image, box, shape, colour):
    y0, x0, y1, x1 = box
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
    inside = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
    if shape == "disc":
        cy, cx, ry, rx = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
        inside &= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    elif shape == "triangle":  # apex at top centre, base at the bottom
        half_width = (yy - y0) / (y1 - y0) * (x1 - x0) / 2
        inside &= np.abs(xx - (x0 + x1) / 2) <= half_width
    image[inside] = colour


def make_dataset(num_images, size, seed=0, **kwargs):
    """`num_images` examples as padded numpy arrays.

    Returns:
      images uint8 `[n, size, size, 3]`, boxes float32 `[n, M, 4]` yxyx pixels,
      classes int32 `[n, M]` with -1 padding.
    """
    rng = np.random.default_rng(seed)
    examples = [make_example(rng, size, **kwargs) for _ in range(num_images)]
    most = max(len(c) for _, _, c in examples)
    images = np.stack([e[0] for e in examples])
    boxes = np.zeros((num_images, most, 4), np.float32)
    classes = np.full((num_images, most), -1, np.int32)
    for i, (_, b, c) in enumerate(examples):
        boxes[i, :len(c)] = b
        classes[i, :len(c)] = c
    return images, boxes, classes
