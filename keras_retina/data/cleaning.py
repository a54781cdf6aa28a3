"""Dirty data: what happens to each kind of bad image or annotation, counted.

Real datasets hold odd images and broken annotations. Every case below has one
defined outcome; none is a silent drop, a crash inside TensorFlow or a NaN loss.

    case                                   outcome
    grayscale, RGBA, palette, CMYK, 16-bit converted to 8-bit RGB (alpha dropped)
    EXIF-rotated JPEG                      rotated as a viewer shows it when the
                                           JSON's width/height are the rotated
                                           ones (what labelling tools annotate),
                                           and when they cannot tell (flips, 180
                                           degrees, square images)
    1x1 or very large image                used (resized like every image; PIL's
                                           decompression-bomb limit is lifted up to
                                           MAX_PIXELS)
    box partly outside the image           clipped to the image
    image without annotations              used as a negative
    crowd annotation                       kept for evaluation, never a positive
    missing / empty / corrupt / truncated  error naming the file; with
      image, image larger than MAX_PIXELS,   --skip_bad_examples the image is
      JSON size differs from the file,       skipped and counted
      format TensorFlow cannot decode
    box with zero/negative size, NaN or    error naming the annotation; with
      inf coordinate, fully outside the     --skip_bad_examples the annotation
      image, unknown category id,           is dropped (the image is kept) and
      unknown image id, duplicate           counted
      annotation id
    duplicate image id                     error; skip: every entry with that id
                                           skipped (its annotations are ambiguous)

`DataReport` holds the counts and the first few offenders of each kind; the
training start-up summary, `keras_retina check-data` and the end-of-training
summary print it. `image_header` and `verify_image` are the checks the COCO JSON
reader runs on each file (the header always; the full decode under
--skip_bad_examples and in check-data).
"""

import collections
import threading

import numpy as np

TF_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP"}  # what tf.io.decode_image reads
MAX_PIXELS = 250_000_000  # ~16k x 16k; larger files are refused (memory), not half-read
SHOW = 5  # offenders listed per kind

# kind -> (severity, what happens). "fixed": handled, reported for information;
# "bad_image" / "bad_annotation": an error unless --skip_bad_examples, then skipped/dropped.
KINDS = {
    "converted_mode": ("fixed", "converted to RGB"),
    "exif_rotated": ("fixed", "rotated as its EXIF orientation says"),
    "clipped_box": ("fixed", "box clipped to the image"),
    "negative_image": ("fixed", "no annotations: used as a negative"),
    "crowd": ("fixed", "crowd annotation: kept for evaluation, never a positive"),
    "tiny_image": ("fixed", "smaller than 8x8 pixels: used"),
    "missing_file": ("bad_image", "image file missing"),
    "unreadable_image": ("bad_image", "cannot be decoded (empty, corrupt or truncated)"),
    "unsupported_format": ("bad_image", "a format TensorFlow cannot decode (use JPEG, PNG, GIF, BMP or WebP)"),
    "too_large": ("bad_image", f"more than {MAX_PIXELS:,} pixels"),
    "size_mismatch": ("bad_image", "width/height in the JSON differ from the file"),
    "duplicate_image_id": ("bad_image", "duplicate image id"),
    "bad_box": ("bad_annotation", "box with zero/negative size or NaN/inf coordinates"),
    "outside_box": ("bad_annotation", "box entirely outside the image"),
    "unknown_category": ("bad_annotation", "category id not in 'categories'"),
    "unknown_image": ("bad_annotation", "image id not in 'images'"),
    "duplicate_annotation_id": ("bad_annotation", "duplicate annotation id"),
}


class BadImage(Exception):
    """An image file that cannot be used; `kind` is one of KINDS."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


class DataReport:
    """Thread-safe counts of each kind of dirty data, with the first offenders by name."""

    def __init__(self, source=""):
        self.source = source
        self.counts = collections.Counter()
        self.offenders = collections.defaultdict(list)
        self._lock = threading.Lock()

    def add(self, kind, where):
        if kind not in KINDS:
            raise KeyError(kind)
        with self._lock:
            self.counts[kind] += 1
            if len(self.offenders[kind]) < SHOW:
                self.offenders[kind].append(str(where))

    def problems(self):
        """(kind, count) of the kinds that are errors unless skipped."""
        return [(k, n) for k, n in sorted(self.counts.items()) if KINDS[k][0] != "fixed"]

    def as_dict(self):
        return {kind: {"count": n, "outcome": KINDS[kind][1], "examples": list(self.offenders[kind])}
                for kind, n in sorted(self.counts.items())}

    def format(self, skipping):
        """Human-readable lines: one per kind, worst first."""
        if not self.counts:
            return f"[data] {self.source}: no problems found."
        lines = [f"[data] {self.source}:"]
        order = {"bad_image": 0, "bad_annotation": 1, "fixed": 2}
        for kind, n in sorted(self.counts.items(), key=lambda item: (order[KINDS[item[0]][0]], item[0])):
            severity, outcome = KINDS[kind]
            if severity == "bad_image":
                action = "skipped" if skipping else "ERROR"
            elif severity == "bad_annotation":
                action = "dropped" if skipping else "ERROR"
            else:
                action = "ok"
            shown = "; ".join(self.offenders[kind][:3]) + (" ..." if n > 3 else "")
            lines.append(f"  {action:7s} {n:6d} x {outcome}: {shown}")
        return "\n".join(lines)

    def raise_if_bad(self, skipping):
        """ValueError naming every kind of problem unless `skipping`."""
        problems = self.problems()
        if problems and not skipping:
            raise ValueError(
                self.format(skipping) + "\nFix these, or pass --skip_bad_examples to skip bad images and "
                "drop bad annotations (each is counted in the training summary).")


def _open(data):
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    return Image.open(data)


def image_header(path):
    """(height, width as stored, EXIF orientation 1-8, mode) from the file's header.

    Raises BadImage for a missing, empty, unidentifiable or too large file."""
    import os

    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise BadImage("missing_file", f"{path}: no such file")
    try:
        with _open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
            mode, image_format = image.mode, image.format
    except Image.DecompressionBombError as error:
        raise BadImage("too_large", f"{path}: {error}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadImage("unreadable_image", f"{path}: {error}") from None
    if width * height > MAX_PIXELS:
        raise BadImage("too_large", f"{path}: {width}x{height} pixels")
    if image_format not in TF_FORMATS:
        raise BadImage("unsupported_format", f"{path}: {image_format}")
    return height, width, orientation, mode


def verify_image(path):
    """Decodes the whole file (JPEGs at 1/8 scale: every byte is still read) so truncated or
    corrupt data shows; raises BadImage naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with _open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (max(1, image.size[0] // 8), max(1, image.size[1] // 8)))
            image.load()
    except FileNotFoundError:
        raise BadImage("missing_file", f"{path}: no such file") from None
    except Image.DecompressionBombError as error:
        raise BadImage("too_large", f"{path}: {error}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadImage("unreadable_image", f"{path}: {error}") from None


def verify_images(paths, threads=None):
    """{path: BadImage} for the files in `paths` that do not fully decode (threads: PIL
    decodes without holding the GIL)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    def check(path):
        try:
            verify_image(path)
        except BadImage as error:
            return path, error
        return path, None

    with ThreadPoolExecutor(threads or 2 * (os.cpu_count() or 1)) as pool:
        return {path: error for path, error in pool.map(check, paths) if error is not None}


def scan_examples(examples, report, num_classes, check_boxes=True, progress_every=1000):
    """Reads every example of a reader's dataset (so every image is decoded) and counts what
    the training pipeline will do with its boxes. Returns the number of images read.

    `check_boxes`: count box problems here (TFRecord, TFDS); the COCO JSON reader already
    counted them while parsing. Boxes are yxyx pixels; classes -1 = not in the label map.
    """
    count = 0
    for example in examples:
        count += 1
        where = f"image id {int(example['image_id'])}"
        if check_boxes:
            boxes = example["boxes"].numpy().reshape(-1, 4)
            classes = example["classes"].numpy()
            height, width = example["image"].shape[:2]
            if len(boxes) == 0:
                report.add("negative_image", where)
            for box, cls, crowd in zip(boxes, classes, example["is_crowd"].numpy()):
                ymin, xmin, ymax, xmax = (float(v) for v in box)
                if not np.all(np.isfinite(box)) or ymax <= ymin or xmax <= xmin:
                    report.add("bad_box", f"{where}: box {box.round(1).tolist()}")
                elif ymax <= 0 or xmax <= 0 or ymin >= height or xmin >= width:
                    report.add("outside_box", f"{where}: box {box.round(1).tolist()} in {width}x{height}")
                elif ymin < 0 or xmin < 0 or ymax > height or xmax > width:
                    report.add("clipped_box", f"{where}: box {box.round(1).tolist()} in {width}x{height}")
                if cls < 0 or cls >= num_classes:
                    report.add("unknown_category", where)
                if crowd:
                    report.add("crowd", where)
        if progress_every and count % progress_every == 0:
            print(f"  ... {count} images checked", flush=True)
    return count
