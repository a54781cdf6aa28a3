"""The benchmarks' synthetic datasets, harder than the demo's (`data.synthetic`), as COCO JSON.

`write_small_data_benchmark(root)`: a few hundred pictures of small objects in clutter, the
validation pictures from another "site" (`make_hard_example`): what the small-data recipe is
measured on (benchmarks/small_data_recipe.py). `write_soft_extent_benchmark(root)`: objects without
edges, Gaussian blobs whose box is a convention (`make_soft_example`; benchmarks/
localisation_yardstick.py; each box at its own 1.5-2.5 sigma, as people who disagree where a soft
edge is would draw it). `write_labelling_pool(root)`: a pool of pictures whose classes are
long-tailed, for the labelling-rounds benchmark (which pictures to label next; its splits are
"pool" and "val"). Each returns {split: (json, dir)} and is written once.
Boxes are yxyx pixels; `make_*` give (image uint8 [H, W, 3], boxes float32 [n, 4], classes int32 [n]).
"""

import os

import numpy as np

from keras_retina.data.synthetic import CLASS_NAMES, CLASSES, draw, most_overlap, write_split

HARD_SHAPES = ("square", "disc", "triangle")


def _texture(rng, height, width, kind):
    """A cluttered background: "stripes" (diagonal bands over noise) or "blobs" (smooth patches)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        base = 110 + 35 * np.sin((yy * np.cos(angle) + xx * np.sin(angle)) / rng.uniform(4, 9))
    else:
        coarse = rng.normal(0, 1, (height // 32 + 2, width // 32 + 2))
        up = np.kron(coarse, np.ones((32, 32)))[:height, :width]
        base = 120 + 30 * up
    rgb = base[..., None] + rng.normal(0, 18, (height, width, 3)) + rng.normal(0, 10, 3)
    return rgb


def _draw_turned(image, box, shape, colour, quarter_turns):
    """A class shape; a triangle's apex points up turned by `quarter_turns` (0: up)."""
    if shape != "triangle" or quarter_turns == 0:
        draw(image, box, shape, colour)
        return
    y0, x0, y1, x1 = box
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]] + 0.5
    inside = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
    h, w = y1 - y0, x1 - x0
    if quarter_turns == 1:  # apex left
        inside &= np.abs(yy - (y0 + y1) / 2) <= (xx - x0) / w * h / 2
    elif quarter_turns == 2:  # apex down
        inside &= np.abs(xx - (x0 + x1) / 2) <= (y1 - yy) / h * w / 2
    else:  # apex right
        inside &= np.abs(yy - (y0 + y1) / 2) <= (x1 - xx) / w * h / 2
    image[inside] = colour


def make_hard_example(rng, size=256, num_classes=6, objects=(5, 15), sides=(10, 28), distractors=(4, 10),
                      *, shifted=False, class_shares=None):
    """One picture of the small-data benchmark: `objects` class shapes of `sides` pixels, `distractors`
    shapes of other colours, on a textured background. `shifted` (the validation pictures): another
    background, other lighting, and triangles pointing any way (they point up in training), as a
    user's new site differs from the one they labelled. `class_shares`: each class's probability
    (default: all equal)."""
    height, width = (size, size) if np.isscalar(size) else size
    image = _texture(rng, height, width, "blobs" if shifted else "stripes")
    kinds = ["object"] * int(rng.integers(objects[0], objects[1] + 1))
    kinds += ["distractor"] * int(rng.integers(distractors[0], distractors[1] + 1))
    placed, boxes, classes = [], [], []
    for kind in rng.permutation(kinds):
        for _attempt in range(30):
            side = rng.uniform(*sides, 2)
            y0, x0 = rng.uniform(0, height - side[0]), rng.uniform(0, width - side[1])
            box = np.array([y0, x0, y0 + side[0], x0 + side[1]], np.float32)
            if most_overlap(box, placed) <= 0.05:
                break
        else:
            continue
        placed.append(box)
        if kind == "object":
            cls = int(rng.choice(num_classes, p=class_shares) if class_shares else rng.integers(0, num_classes))
            shape, colour = CLASSES[cls]
            _draw_turned(image, box, shape, colour, int(rng.integers(0, 4)) if shifted else 0)
            boxes.append(box)
            classes.append(cls)
        else:  # a distractor: a class shape in a colour no class has
            colour = tuple(int(c) for c in rng.integers(60, 200, 3))
            draw(image, box, HARD_SHAPES[int(rng.integers(0, 3))], colour)
    if shifted:  # other lighting: darker or brighter, less contrast
        image = (image - 128.0) * rng.uniform(0.6, 0.8) + 128.0 + rng.uniform(-40, 40)
    return (image.clip(0, 255).astype(np.uint8), np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(classes, np.int32))


def write_small_data_benchmark(root, num_train=132, num_val=64, size=256, seed=0):
    """The small-data benchmark as COCO JSON: `root/{train,val}.json` and pictures, validation
    pictures shifted (`make_hard_example`). Written once; returns {"train": (json, dir), "val": (...)}."""
    categories = [{"id": k + 1, "name": CLASS_NAMES[k]} for k in range(len(CLASSES))]
    return _write_benchmark(root, {"train": num_train, "val": num_val}, categories, seed,
                            lambda rng, split: make_hard_example(rng, size, shifted=split == "val"))


# Classes as a user's labels have them: a few common, the rest rare (the labelling-rounds benchmark).
LONG_TAIL = (0.4, 0.25, 0.15, 0.1, 0.06, 0.04)


def write_labelling_pool(root, num_pool=480, num_val=200, size=128, seed=0):
    """The labelling-rounds benchmark (benchmarks/labelling_rounds.py) as COCO JSON: `root/pool.json`
    (all labelled; the benchmark reveals the labels of the pictures it picks) and `root/val.json`,
    pictures like `make_hard_example`'s at `size` px with 1-4 objects of LONG_TAIL's classes each,
    so which pictures are labelled decides how much of the rare classes a model sees."""
    categories = [{"id": k + 1, "name": CLASS_NAMES[k]} for k in range(len(CLASSES))]
    return _write_benchmark(root, {"pool": num_pool, "val": num_val}, categories, seed,
                            lambda rng, split: make_hard_example(rng, size, objects=(1, 4), sides=(12, 36),
                                                                 distractors=(0, 3), class_shares=LONG_TAIL))


# ---------------------------------------------------------------- objects whose extent is a matter of judgement
SOFT_CLASSES = (("bright", (235, 225, 150)), ("dark", (40, 45, 70)))
SOFT_EXTENT = 2.0  # a blob's box reaches this many standard deviations from its centre
AMBIGUOUS_EXTENTS = (1.5, 2.5)  # the benchmark's: each box at its own multiple (annotators disagree)


def make_soft_example(rng, size=256, objects=(6, 16), sigmas=(2.5, 7.0), *, shifted=False,
                      extents=(SOFT_EXTENT, SOFT_EXTENT)):
    """One picture of the soft-extent benchmark: `objects` blobs whose intensity falls off as a
    Gaussian (standard deviations `sigmas` px per axis, drawn apart: elongated ones too) on a
    smooth mottled background (`_smooth_texture`), at amplitudes 0.6-0.95; the class is the blob's
    colour (SOFT_CLASSES). The box is the centre +- SOFT_EXTENT standard deviations (10-28 px
    wide), clipped to the picture: the object has no edge, only a convention, as a tree crown, a
    cell or a star on a photograph. Blobs may touch (their boxes overlap by up to IoU 0.2).
    `shifted` (validation): other lighting, as in `make_hard_example`. `extents` (low, high): each
    blob's box is drawn at its own multiple of sigma in that range, as annotators who disagree
    where a soft edge is would draw it (the model cannot see which: the error it leaves is
    localisation); the default is one convention, SOFT_EXTENT."""
    height, width = (size, size) if np.isscalar(size) else size
    image = _smooth_texture(rng, height, width)
    yy, xx = np.mgrid[0:height, 0:width] + 0.5
    placed, classes = [], []
    for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
        for _attempt in range(30):
            sigma = rng.uniform(*sigmas, 2)
            centre = rng.uniform([0, 0], [height, width])
            extent = rng.uniform(*extents) if extents[0] != extents[1] else extents[0]
            box = np.concatenate([centre - extent * sigma, centre + extent * sigma]).clip(
                0, [height, width, height, width]).astype(np.float32)
            if min(box[2] - box[0], box[3] - box[1]) >= 6 and most_overlap(box, placed) <= 0.2:
                break
        else:
            continue
        cls = int(rng.integers(0, len(SOFT_CLASSES)))
        weight = rng.uniform(0.6, 0.95) * np.exp(-0.5 * (((yy - centre[0]) / sigma[0]) ** 2
                                                         + ((xx - centre[1]) / sigma[1]) ** 2))
        image = image * (1 - weight[..., None]) + np.asarray(SOFT_CLASSES[cls][1], np.float64) * weight[..., None]
        placed.append(box)
        classes.append(cls)
    if shifted:
        image = (image - 128.0) * rng.uniform(0.6, 0.8) + 128.0 + rng.uniform(-40, 40)
    return (image.clip(0, 255).astype(np.uint8), np.asarray(placed, np.float32).reshape(-1, 4),
            np.asarray(classes, np.int32))


def _smooth_texture(rng, height, width, cell=24):
    """Light and shade varying smoothly over about `cell` px (coarse noise, bilinear), plus pixel noise."""
    from PIL import Image

    coarse = rng.normal(0, 1, (height // cell + 2, width // cell + 2)).astype(np.float32)
    shade = np.asarray(Image.fromarray(coarse).resize((width + 2 * cell, height + 2 * cell), Image.BILINEAR))
    base = 120 + 25 * shade[cell:cell + height, cell:cell + width]
    return base[..., None] + rng.normal(0, 10, (height, width, 3)) + rng.normal(0, 8, 3)


def write_soft_extent_benchmark(root, num_train=160, num_val=64, size=256, seed=0, extents=AMBIGUOUS_EXTENTS):
    """The soft-extent benchmark (`make_soft_example`) as COCO JSON, like `write_small_data_benchmark`;
    each box drawn at `extents` sigmas (AMBIGUOUS_EXTENTS: people disagree about soft edges)."""
    categories = [{"id": k + 1, "name": name} for k, (name, _) in enumerate(SOFT_CLASSES)]
    return _write_benchmark(root, {"train": num_train, "val": num_val}, categories, seed,
                            lambda rng, split: make_soft_example(rng, size, shifted=split == "val",
                                                                 extents=extents))


def _write_benchmark(root, counts, categories, seed, make):
    """`root/{split}.json` and `root/{split}/*.jpg` of `counts[split]` pictures `make(rng, split)`
    (image, boxes yxyx, classes) gives; written once; returns {split: (json, dir)}."""
    paths = {split: (os.path.join(root, f"{split}.json"), os.path.join(root, split)) for split in counts}
    if all(os.path.isfile(json_path) for json_path, _ in paths.values()):
        return paths
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        write_split(root, split, count, categories, lambda: make(rng, split))  # noqa: B023 - called at once
    return paths


