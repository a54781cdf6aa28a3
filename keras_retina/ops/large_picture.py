"""Pictures read window by window: aerial and satellite scans, slides, anything too big to decode whole.

`open_large_picture(path)` -> a picture with `height`, `width`, `path` and `read(window)` (uint8
RGB `[y1 - y0, x1 - x0, 3]` of the window `(y0, x0, y1, x1)`, ends exclusive):

- a TIFF (BigTIFF included) stored in tiles or strips, any compression tifffile and
  imagecodecs decode (none, deflate, LZW, JPEG, ZSTD ...): only the tiles or strips a window
  touches are read and decoded, so memory follows the window, not the picture (a 20000 x 20000
  scan needs a few hundred MB at most, never its 1.2 GB); 8-bit samples, grey, RGB or RGBA (the
  alpha is dropped), chunky or planar;
- any other picture (JPEG, PNG, ...): decoded whole, as `predict` reads pictures (EXIF
  orientation applied), within the readers' pixel limit (`images.MAX_PIXELS`); above it, a
  `BadImage` saying to store the picture as a tiled TIFF.

A file is untrusted: its header's sizes are checked against the file before anything is
allocated, and a tile that does not decode is a `BadImage` naming the file and the tile.
"""

import os
from typing import Protocol

import numpy as np

from keras_retina.ops import images as image_lib

MAX_SIDE = 1 << 20  # a TIFF side beyond this is a broken header, not a picture


class LargePicture(Protocol):
    """What every picture `open_large_picture` gives has (module docstring)."""

    height: int
    width: int
    path: str

    def read(self, window: tuple[int, int, int, int]) -> np.ndarray: ...

    def close(self) -> None: ...


class ArrayPicture:
    """A decoded picture (uint8 [H, W, 3]) with the large-picture interface."""

    def __init__(self, pixels, path="picture"):
        self.pixels, self.path = pixels, path
        self.height, self.width = pixels.shape[:2]

    def read(self, window):
        y0, x0, y1, x1 = window
        return self.pixels[y0:y1, x0:x1]

    def close(self):
        pass


class TiffPicture:
    """The first page of a TIFF, read segment by segment (tiles or strips)."""

    def __init__(self, path):
        import tifffile

        self.path = path
        try:
            self._file = tifffile.TiffFile(path)
            page = self._file.pages.first
        except Exception as error:  # noqa: BLE001 - tifffile raises many kinds for a broken file
            raise _bad(f"{path}: not a TIFF tifffile can read ({type(error).__name__}: {error}).") from None
        self._page = page
        self.height, self.width = int(page.imagelength), int(page.imagewidth)
        if not (0 < self.height <= MAX_SIDE and 0 < self.width <= MAX_SIDE) or page.imagedepth > 1:
            self.close()
            raise _bad(f"{path}: a {self.width} x {self.height} TIFF page; not a picture we read.")
        if page.dtype != np.uint8:
            self.close()
            raise _bad(f"{path}: {page.dtype} samples; convert it to 8-bit (e.g. gdal_translate -ot Byte -scale) "
                       f"to detect on it.", "unsupported_format")
        self._samples = int(page.samplesperpixel)
        self._planar = page.planarconfig == 2 and self._samples > 1
        if page.is_tiled:
            self._segment_h, self._segment_w = int(page.tilelength), int(page.tilewidth)
        else:
            self._segment_h, self._segment_w = int(page.rowsperstrip or self.height), self.width
        self._rows = -(-self.height // self._segment_h)
        self._cols = -(-self.width // self._segment_w)
        per_plane = self._rows * self._cols
        if len(page.dataoffsets) != per_plane * (self._samples if self._planar else 1):
            self.close()
            raise _bad(f"{path}: its tile table does not match its size; the file is damaged.")
        self._per_plane = per_plane
        self._size = os.path.getsize(path)

    def read(self, window):
        y0, x0, y1, x1 = window
        out = np.zeros((y1 - y0, x1 - x0, self._samples), np.uint8)
        rows = range(y0 // self._segment_h, -(-y1 // self._segment_h))
        cols = range(x0 // self._segment_w, -(-x1 // self._segment_w))
        for plane in range(self._samples if self._planar else 1):
            for r in rows:
                for c in cols:
                    index = plane * self._per_plane + r * self._cols + c
                    segment = self._segment(index)
                    top, left = r * self._segment_h, c * self._segment_w
                    sy0, sx0 = max(y0, top) - top, max(x0, left) - left
                    sy1 = min(y1, top + self._segment_h, self.height) - top
                    sx1 = min(x1, left + self._segment_w, self.width) - left
                    part = segment[sy0:sy1, sx0:sx1]
                    target = out[top + sy0 - y0:top + sy1 - y0, left + sx0 - x0:left + sx1 - x0]
                    if self._planar:
                        target[..., plane] = part[..., 0]
                    else:
                        target[...] = part[..., :self._samples]
        return _rgb(out)

    def _segment(self, index):
        """Segment `index` decoded, [segment height, segment width, samples] (zeros when absent)."""
        page = self._page
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        samples = 1 if self._planar else self._samples
        if count == 0:
            return np.zeros((self._segment_h, self._segment_w, samples), np.uint8)
        if offset + count > self._size:
            raise _bad(f"{self.path}: tile {index} lies past the end of the file (truncated?).")
        handle = self._file.filehandle
        handle.seek(offset)
        data = handle.read(count)
        try:
            segment, _, shape = page.decode(data, index, jpegtables=page.jpegtables)
        except Exception as error:  # noqa: BLE001 - the codecs raise their own kinds
            raise _bad(f"{self.path}: tile {index} does not decode ({type(error).__name__}: {error}).") from None
        if segment is None:
            raise _bad(f"{self.path}: tile {index} does not decode.")
        return np.asarray(segment).reshape(shape[-3], shape[-2], shape[-1])  # (depth 1,) length, width, samples

    def close(self):
        self._file.close()


def _bad(message, kind="unreadable_image"):
    return image_lib.BadImage(kind, message)


def _rgb(pixels):
    if pixels.shape[-1] == 1:
        return np.repeat(pixels, 3, axis=-1)
    if pixels.shape[-1] == 2:  # grey and alpha
        return np.repeat(pixels[..., :1], 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3])


def open_large_picture(path: str) -> LargePicture:
    """The picture at `path`, read window by window where its format allows it (module docstring)."""
    if path.lower().endswith(image_lib.TIFF_SUFFIXES):
        return TiffPicture(path)
    try:
        image_lib.image_header(path)
    except image_lib.BadImage as error:
        if error.kind != "too_large":
            raise
        raise image_lib.BadImage("too_large", f"{error}: more than the {image_lib.MAX_PIXELS / 1e6:.0f} megapixels "
                                 f"decoded whole; store it as a tiled TIFF (e.g. `gdal_translate -co TILED=YES` or "
                                 f"`vips tiffsave --tile`) and it is read window by window.") from None
    return ArrayPicture(image_lib.read_picture(path).numpy(), path)
