"""PNG decoding for rendered images: zlib and numpy only, so the client does not need Pillow.

``decode_png`` uses Pillow's C decoder when Pillow happens to be installed (about 50x faster on a
400x400 render: the Paeth and Average filters are sequential along a row, which numpy cannot
vectorize) and ``decode_png_numpy`` otherwise; both return the same array. Supported: 8-bit
grayscale, gray+alpha, RGB and RGBA, non-interlaced, all five row filters. Anything else raises
VqpressError (INVALID_ARGUMENT) saying what was found.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from types import ModuleType

import numpy as np

from .errors import invalid

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # color type -> samples per pixel
MAX_PIXELS = 1 << 28  # refuse images larger than this before inflating them


def _paeth_row(raw: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the Paeth filter on one row (sequential along the row, so in plain Python on lists)."""
    out = raw.tolist()
    up = prev.tolist()
    for i in range(len(out)):
        b = up[i]
        if i >= bpp:
            a = out[i - bpp]
            c = up[i - bpp]
        else:
            a = c = 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
        out[i] = (out[i] + pred) & 0xFF
    return np.array(out, dtype=np.uint8)


def _avg_row(raw: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    out = raw.tolist()
    up = prev.tolist()
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        out[i] = (out[i] + ((a + up[i]) >> 1)) & 0xFF
    return np.array(out, dtype=np.uint8)


@functools.cache
def _pillow() -> ModuleType | None:
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


_PIL_CHANNELS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to a uint8 array [H, W, C] with C = 1, 2, 3 or 4 as stored."""
    Image = _pillow()
    if Image is None or not data.startswith(SIGNATURE):
        return decode_png_numpy(data)
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
            if im.mode not in _PIL_CHANNELS or im.info.get("interlace") or im.width * im.height > MAX_PIXELS:
                return decode_png_numpy(data)  # the reference decoder says what is unsupported
            im.load()
            a = np.asarray(im, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, zlib.error):
        return decode_png_numpy(data)  # corrupt: let the reference decoder name the problem
    return a.reshape(a.shape[0], a.shape[1], _PIL_CHANNELS[im.mode])


def decode_png_numpy(data: bytes) -> np.ndarray:
    """Decode PNG bytes to a uint8 array [H, W, C] with zlib and numpy only (the reference decoder)."""
    if not data.startswith(SIGNATURE):
        raise invalid("not a PNG image (bad signature)")
    pos = len(SIGNATURE)
    header = None
    idat = []
    ended = False
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise invalid("truncated PNG chunk")
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(ctype + body) != crc:
            raise invalid(f"PNG chunk {ctype!r} has a bad CRC")
        pos += 12 + length
        if ctype == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            ended = True
            break
    if not ended:
        raise invalid("truncated PNG: the data ends before the IEND chunk")
    if header is None:
        raise invalid("PNG has no IHDR chunk")
    width, height, depth, color, _comp, _filt, interlace = header
    if depth != 8 or color not in _CHANNELS or interlace != 0:
        raise invalid(
            f"unsupported PNG: bit depth {depth}, color type {color}, interlace {interlace} "
            "(supported: 8-bit gray/gray+alpha/RGB/RGBA, not interlaced)"
        )
    if not (0 < width and 0 < height and width * height <= MAX_PIXELS):
        raise invalid(f"PNG size {width}x{height} is out of range")
    bpp = _CHANNELS[color]
    stride = width * bpp
    expected = height * (stride + 1)
    d = zlib.decompressobj()
    try:
        raw = d.decompress(b"".join(idat), expected)
    except zlib.error as e:
        raise invalid(f"PNG image data is corrupt: {e}") from None
    if len(raw) != expected:
        raise invalid(f"PNG image data has {len(raw)} bytes, expected {expected}")
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        kind = int(rows[y, 0])
        line = rows[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # Sub: running sum per channel, mod 256
            cur = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:  # Up
            cur = line + prev
        elif kind == 3:
            cur = _avg_row(line, prev, bpp)
        elif kind == 4:
            cur = _paeth_row(line, prev, bpp)
        else:
            raise invalid(f"PNG row {y} has unknown filter type {kind}")
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)


def to_rgb(img: np.ndarray) -> np.ndarray:
    """A decoded PNG [H, W, C] as RGB [H, W, 3] uint8 (gray is replicated, alpha dropped)."""
    c = img.shape[2]
    if c in (1, 2):
        return np.repeat(img[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])
