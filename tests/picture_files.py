"""Picture files for tests: encoded bytes built by hand, including hostile ones."""

import io
import struct
import zlib

import numpy as np
from PIL import Image


def png(array):
    """A PNG file's bytes of a uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def random_pictures():
    """Three uint8 RGB pictures of different shapes (landscape, square, portrait)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, shape, dtype=np.uint8) for shape in ((96, 160, 3), (128, 128, 3), (200, 100, 3))]


def huge_png(width=23000, height=23000):
    """A valid all-zero grayscale PNG of width x height pixels, about 0.5 MB (zlib streams the rows)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def gif(screen, frames):
    """A GIF89a of a logical screen and 1-colour frames given as (width, height) descriptors,
    each with one pixel of image data (a decoder allocates the declared size all the same)."""
    data = b"GIF89a" + struct.pack("<HHBBB", *screen, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    data += b"\x21\xf9\x04\x00\x00\x00\x00\x00"  # a graphic control extension, skipped
    for width, height in frames:
        data += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return data + b"\x3b"
