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
    box with zero width or height          dropped and counted (nothing to learn;
                                           COCO 2017 train has two)
    image without annotations              used as a negative
    crowd annotation                       kept for evaluation, never a positive
    missing / empty / corrupt / truncated  error naming the file; with
      image, image larger than MAX_PIXELS,   --skip_bad_examples the image is
      JSON size differs from the file,       skipped and counted
      format TensorFlow cannot decode
    box with negative size, NaN or inf     error naming the annotation; with
      coordinate, fully outside the         --skip_bad_examples the annotation
      image, unknown category id,           is dropped (the image is kept) and
      unknown image id, duplicate           counted
      annotation id
    duplicate image id                     error; skip: every entry with that id
                                           skipped (its annotations are ambiguous)

`DataReport` holds the counts and the first few offenders of each kind; the
training start-up summary, `keras_retina check-data` and the end-of-training
summary print it. `image_header` and `verify_image` are the checks the COCO JSON
reader runs on each file (the header always; the full decode under
--skip_bad_examples and in check-data). `scan_records` is the same pass for
TFRecord and TFDS sources: their annotations always (without decoding images),
every image's decode under --skip_bad_examples and in check-data.
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
    "empty_box": ("fixed", "box with zero width or height: dropped"),
    "negative_image": ("fixed", "no annotations: used as a negative"),
    "crowd": ("fixed", "crowd annotation: kept for evaluation, never a positive"),
    "tiny_image": ("fixed", "smaller than 8x8 pixels: used"),
    "missing_file": ("bad_image", "image file missing"),
    "unreadable_image": ("bad_image", "cannot be decoded (empty, corrupt or truncated)"),
    "unsupported_format": ("bad_image", "a format TensorFlow cannot decode (use JPEG, PNG, GIF, BMP or WebP)"),
    "too_large": ("bad_image", f"more than {MAX_PIXELS:,} pixels"),
    "size_mismatch": ("bad_image", "width/height in the JSON differ from the file"),
    "duplicate_image_id": ("bad_image", "duplicate image id"),
    "bad_box": ("bad_annotation", "box with negative size or NaN/inf coordinates"),
    "outside_box": ("bad_annotation", "box entirely outside the image"),
    "unknown_category": ("bad_annotation", "category id not in 'categories' / the label map"),
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
        self.total = None  # records read by `scan_records` (TFRecord, TFDS); None for COCO JSON
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


def count_examples(examples, progress_every=1000):
    """Reads every example of a reader's dataset (so every image is decoded); returns how many."""
    count = 0
    for _ in examples:
        count += 1
        if progress_every and count % progress_every == 0:
            print(f"  ... {count} images read", flush=True)
    return count


def check_boxes(where, boxes, classes, is_crowd, num_classes, report, category_ids=None):
    """Counts what the training pipeline will do with one image's annotations.

    `boxes`: [N, 4] yxyx normalised to the image (0..1 inside it); `classes`: 0..K-1, anything
    else = not in the label map; `category_ids`: the dataset's own ids, shown for unknown ones;
    `where` names the image in the offender lists."""
    if len(boxes) == 0:
        report.add("negative_image", where)
    category_ids = classes if category_ids is None else category_ids
    for box, cls, crowd, category in zip(boxes, classes, is_crowd, category_ids):
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        shown = f"{where}: box {np.round(box.astype(np.float64), 3).tolist()}"
        if not np.all(np.isfinite(box)) or ymax < ymin or xmax < xmin:
            report.add("bad_box", shown)
        elif ymax == ymin or xmax == xmin:
            report.add("empty_box", shown)
        elif ymax <= 0 or xmax <= 0 or ymin >= 1 or xmin >= 1:
            report.add("outside_box", shown)
        elif ymin < 0 or xmin < 0 or ymax > 1 or xmax > 1:
            report.add("clipped_box", shown)
        if not 0 <= cls < num_classes:
            report.add("unknown_category", f"{where}: category {int(category)}")
        if crowd:
            report.add("crowd", where)


def _name(where):
    """A record's name tensor -> str that encodes back to the same bytes (`records.kept_records`)."""
    return where.numpy().decode("utf-8", "surrogateescape")


def _shown(name):
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def scan_records(records, report, num_classes, decode=False, progress_every=10000):
    """The dirty-data pass over a TFRecord or TFDS source; returns (number of records, names
    of the records to leave out: images that did not decode, images sharing an id).

    `records`: a `tf.data.Dataset` of dicts, one per image, without decoded pixels:
    "where" (string naming the file and record), "image_id", "boxes" ([N, 4] yxyx
    normalised), "classes" (int, 0..K-1 or -1 = not in the label map), "category_ids" (the
    dataset's ids), "is_crowd" (bool [N]) and "encoded" (the image file's bytes). Every
    annotation is checked (`check_boxes`); records sharing an image id are all counted as
    "duplicate_image_id" (whose boxes would evaluation match?); with `decode`, every image is
    decoded too (in parallel, in TensorFlow, as training decodes it) and each record that
    fails is counted as "unreadable_image" by name.
    """
    import tensorflow as tf

    from keras_retina.data.coco_json import decode_image

    count = 0
    names = []
    by_id = collections.defaultdict(list)
    annotations = records.map(lambda r: {k: v for k, v in r.items() if k != "encoded"},
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for record in annotations.prefetch(tf.data.AUTOTUNE):
        count += 1
        where = _name(record["where"])
        by_id[int(record["image_id"])].append(where)
        if decode:
            names.append(where)
        check_boxes(_shown(where), record["boxes"].numpy().reshape(-1, 4), record["classes"].numpy(),
                    record["is_crowd"].numpy(), num_classes, report, record["category_ids"].numpy())
        if progress_every and count % progress_every == 0:
            print(f"  ... {count} records checked", flush=True)
    excluded = [where for shared in by_id.values() if len(shared) > 1 for where in shared]
    for where in excluded:
        report.add("duplicate_image_id", _shown(where))
    if decode:
        decoded = records.map(lambda r: (r["where"], tf.shape(decode_image(r["encoded"]))),
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        good = {_name(where) for where, _ in decoded.ignore_errors()}
        unreadable = [where for where in names if where not in good]
        for where in unreadable:
            report.add("unreadable_image", _shown(where))
        shared = set(excluded)
        excluded += [where for where in unreadable if where not in shared]
    return count, excluded
