"""Image files and bytes: decoding, EXIF orientation, verification and format/size limits.

The one owner of how a picture becomes pixels, for every reader, the training pipeline,
`predict` and the serving graph:

- `decode_image(encoded)`: JPEG / PNG / BMP / WebP / GIF (first frame) bytes -> uint8
  `[H, W, 3]` RGB (grayscale, RGBA, palette and 16-bit converted), in TensorFlow, so it runs
  inside `tf.data` and inside the exported SavedModel.
- `apply_orientation(image, orientation)`: EXIF orientation 1-8 applied as viewers (and PIL's
  `exif_transpose`) show the picture.
- `read_picture(path)`: a file as a viewer shows it (decoded, orientation applied).
- `image_header(path)` / `verify_image(path)` / `verify_images(paths)`: the checks run on
  files users hand us (missing, empty, unidentifiable, larger than `MAX_PIXELS`, a format
  TensorFlow cannot decode, truncated); they raise or return `BadImage`, whose `kind` is a
  `data.cleaning.KINDS` name. PIL only reads headers and pixels: no image content is executed.
- `read_by_windows()`: a context in which the readers also take TIFFs of any size (their header
  read by `ops.large_picture`, see `data.readers.picture_source.check_picture`), for the tools
  that read pictures window by window (tiling a dataset); training itself never sees them.
"""

import contextlib
import contextvars
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import tensorflow as tf

TF_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP"}  # what tf.io.decode_image reads
MAX_PIXELS = 250_000_000  # ~16k x 16k; larger files are refused (memory), not half-read
EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")  # the files a folder of pictures is read for


_WINDOWED = contextvars.ContextVar("read_by_windows", default=False)


@contextlib.contextmanager
def read_by_windows():
    token = _WINDOWED.set(True)
    try:
        yield
    finally:
        _WINDOWED.reset(token)


def windowed():
    """Whether pictures are read window by window here (`read_by_windows`)."""
    return _WINDOWED.get()


TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")


def picture_extensions():
    """The suffixes a folder of pictures is read for: EXTENSIONS, and TIFF's in `read_by_windows`."""
    return EXTENSIONS + (TIFF_SUFFIXES if windowed() else ())


class BadImage(Exception):
    """An image file that cannot be used; `kind` names the problem (`data.cleaning.KINDS`)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


# What reading a picture raises for a file that is not a readable picture (a counted skip, not a bug).
READ_ERRORS = (OSError, tf.errors.InvalidArgumentError, BadImage)


def unreadable_reason(error):
    """Why a picture could not be read, in one line: the error's first line, else its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def encoded_pixels(encoded):
    """An upper bound of the pixels TensorFlow's decoder allocates for `encoded` (a string
    tensor), read from the file's header without decoding: height x width for JPEG, PNG, BMP and
    still WebP; the logical screen times an upper bound of the frame count for GIF (TensorFlow
    decodes every frame). int64 scalar; -1 for a format TensorFlow does not decode, and for an
    animated WebP (refused)."""
    padded = tf.strings.substr(tf.strings.join([tf.strings.substr(encoded, 0, 32), b"\0" * 32]), 0, 32)
    head = tf.cast(tf.io.decode_raw(padded, tf.uint8), tf.int64)  # the first 32 bytes, zero-padded

    def little(start, count):
        return tf.add_n([head[start + i] * 256**i for i in range(count)])

    def big(start, count):
        return tf.add_n([head[start + i] * 256**(count - 1 - i) for i in range(count)])

    magic = tf.strings.substr(padded, 0, 4)
    riff = tf.strings.substr(padded, 8, 4)
    chunk = tf.strings.substr(padded, 12, 4)

    def gif():  # TensorFlow decodes every frame onto a widest-frame x tallest-frame canvas
        frames, widest, tallest, frame_pixels = _gif_frames(encoded)
        return tf.maximum(frames, 1) * widest * tallest + frame_pixels

    def bmp():
        height = little(22, 4)
        height = tf.where(height >= 2**31, 2**32 - height, height)  # negative: stored top-down
        return little(18, 4) * height

    def webp():
        lossy = (little(26, 2) % 2**14) * (little(28, 2) % 2**14)
        lossless = ((little(21, 2) % 2**14) + 1) * ((little(22, 4) // 2**6 % 2**14) + 1)
        extended = (little(24, 3) + 1) * (little(27, 3) + 1)
        animated = tf.equal(head[20] // 2 % 2, 1)
        return tf.case([(tf.equal(chunk, "VP8 "), lambda: lossy), (tf.equal(chunk, "VP8L"), lambda: lossless),
                        (tf.equal(chunk, "VP8X"), lambda: tf.where(animated, tf.constant(-1, tf.int64), extended))],
                       default=lambda: tf.constant(-1, tf.int64))

    def jpeg():
        shape = tf.cast(tf.io.extract_jpeg_shape(encoded), tf.int64)
        return shape[0] * shape[1]

    return tf.case([
        (tf.equal(tf.strings.substr(padded, 0, 3), b"\xff\xd8\xff"), jpeg),
        (tf.equal(magic, b"\x89PNG"), lambda: big(16, 4) * big(20, 4)),
        (tf.equal(tf.strings.substr(padded, 0, 3), b"GIF"), gif),
        (tf.equal(tf.strings.substr(padded, 0, 2), b"BM"), bmp),
        (tf.logical_and(tf.equal(magic, b"RIFF"), tf.equal(riff, b"WEBP")), webp),
    ], default=lambda: tf.constant(-1, tf.int64))


GIF_MAX_BLOCKS = 10_000  # extensions and frames walked at most; a GIF with more is refused as too large
GIF_MAX_SUB_BLOCKS = 100_000  # 255-byte data sub-blocks of one block (25 MB)


def _gif_frames(encoded):
    """(frame count, widest frame, tallest frame, the frames' pixels summed) of a GIF, by walking
    its blocks: extensions and image data skipped sub-block by sub-block, each image descriptor
    read (GIF89a). A GIF with more than GIF_MAX_BLOCKS blocks gives a count beyond any budget."""
    data = tf.io.decode_raw(tf.strings.join([encoded, b"\x3b" * 16]), tf.uint8)
    end = tf.size(data, out_type=tf.int64) - 16
    huge = tf.constant(2**40, tf.int64)

    def byte(at):
        return tf.cast(data[tf.minimum(tf.cast(at, tf.int64), end)], tf.int64)

    def skip_sub_blocks(at):  # a run of (size, size bytes) sub-blocks ended by a size of 0
        (at,) = tf.while_loop(lambda at: tf.logical_and(at < end, byte(at) > 0), lambda at: (at + 1 + byte(at),),
                              (at,), maximum_iterations=GIF_MAX_SUB_BLOCKS)
        return at + 1

    def step(at, frames, widest, tallest, pixels):
        def extension():
            return skip_sub_blocks(at + 2), frames, widest, tallest, pixels

        def image():
            flags = byte(at + 9)
            local_table = tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), 0)
            width, height = byte(at + 5) + 256 * byte(at + 6), byte(at + 7) + 256 * byte(at + 8)
            return (skip_sub_blocks(at + 10 + local_table + 1), frames + 1, tf.maximum(widest, width),
                    tf.maximum(tallest, height), pixels + width * height)

        return tf.case([(tf.equal(byte(at), 0x21), extension), (tf.equal(byte(at), 0x2C), image)],
                       default=lambda: (end, frames, widest, tallest, pixels))  # the trailer, or not a block

    flags = byte(10)
    start = 13 + tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), 0)  # header, screen, global colours
    zero = tf.constant(0, tf.int64)
    at, frames, widest, tallest, pixels = tf.while_loop(
        lambda at, *_: at < end, step, (start, zero, zero, zero, zero), maximum_iterations=GIF_MAX_BLOCKS)
    return frames, widest, tallest, tf.where(at < end, huge, pixels)  # unfinished walk: refuse


def decode_image(encoded):
    """Encoded bytes (a string tensor) -> uint8 `[H, W, 3]` RGB."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def apply_orientation(image, orientation):
    """Rotates/flips `[H, W, C]` as EXIF orientation 1-8 says; other values leave it as stored."""
    branches = [
        lambda: image,  # 1 (and unknown values)
        lambda: tf.image.flip_left_right(image),  # 2
        lambda: tf.image.rot90(image, 2),  # 3
        lambda: tf.image.flip_up_down(image),  # 4
        lambda: tf.transpose(image, [1, 0, 2]),  # 5: transpose
        lambda: tf.image.rot90(image, 3),  # 6: 90 degrees clockwise
        lambda: tf.image.rot90(tf.transpose(image, [1, 0, 2]), 2),  # 7: transverse
        lambda: tf.image.rot90(image, 1),  # 8: 90 degrees counter-clockwise
    ]
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation - 1, 0)
    rotated = tf.switch_case(tf.cast(index, tf.int32), branches)
    rotated.set_shape([None, None, image.shape[-1]])
    return rotated


def read_picture(path):
    """A file -> uint8 `[H, W, 3]` RGB tensor as viewers show it (EXIF orientation applied).

    Raises BadImage for a file that is missing or not a usable image, and
    tf.errors.InvalidArgumentError for one that fails while decoding."""
    orientation = image_header(path)[2]
    with open(path, "rb") as f:
        encoded = tf.constant(f.read())
    return apply_orientation(decode_image(encoded), tf.constant(orientation if orientation in range(1, 9) else 1))


def _open(data):
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with warnings.catch_warnings():  # PIL warns between 1x and 2x its limit; our own check refuses those
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(data)


def image_header(path):
    """(height, width as stored, EXIF orientation 1-8, mode) from the file's header.

    Raises BadImage for a missing, empty, unidentifiable, too large or unsupported file."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise BadImage("missing_file", f"{path}: no such file")
    try:
        with _open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1) if hasattr(image, "getexif") else 1
            mode, image_format = image.mode, image.format
    except Image.DecompressionBombError as error:
        raise _too_large(path, error) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadImage("unreadable_image", f"{path}: {error}") from None
    if width * height > MAX_PIXELS:
        raise BadImage("too_large", f"{path}: {width}x{height} pixels, above our limit of {MAX_PIXELS:,}")
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
        raise _too_large(path, error) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadImage("unreadable_image", f"{path}: {error}") from None


def _too_large(path, error):
    """Our limit's words for PIL's refusal (which quotes its own, twice ours)."""
    size = re.search(r"\((\d+) pixels\)", str(error))
    shown = f"{int(size.group(1)):,} pixels" if size else "its size"
    return BadImage("too_large", f"{path}: {shown}, above our limit of {MAX_PIXELS:,}")


def verify_images(paths, threads=None):
    """{path: BadImage} for the files in `paths` that do not fully decode (threads: PIL
    decodes without holding the GIL)."""

    def check(path):
        try:
            verify_image(path)
        except BadImage as error:
            return path, error
        return path, None

    with ThreadPoolExecutor(threads or 2 * (os.cpu_count() or 1)) as pool:
        return {path: error for path, error in pool.map(check, paths) if error is not None}
