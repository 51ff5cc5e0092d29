"""Gaussian splat scene files: detect, read, repair on load, write.

Formats (the name each has in ``fmt``):

- ``"ply"``            INRIA 3DGS PLY, binary little-endian float32 (read and write, lossless)
- ``"compressed_ply"`` PlayCanvas / SuperSplat compressed PLY (read)
- ``"splat"``          antimatter15 ``.splat``, 32 B per splat (read and write; drops SH rest)
- ``"spz"``            Niantic ``.spz`` v2/v3 gzip and v4 zstd (read), v2 (write)
- ``"npz"``            ``np.savez`` of the six arrays, as inline gRPC tensors are stored (read and write)

Readers treat every file as untrusted: sizes claimed by a header are checked against the file
before anything is allocated, and every problem is a ``FormatError`` naming the file. Readers
return values as stored, non-finite ones included; ``load_scene`` applies the repair policy of
``GaussianSplats.repair_non_finite``. Each module's docstring states its layout and what
writing it loses.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

import torch

from ...errors import FormatError, VqpressInputError
from ..model import GaussianSplats, RepairReport
from ._plyheader import is_ply, parse_header
from .compressed_ply import is_compressed_header, read_compressed_ply
from .npz import encode_npz, read_npz
from .ply import encode_ply, read_ply
from .splat import encode_splat, read_splat
from .spz import encode_spz, read_spz

Format = Literal["ply", "compressed_ply", "splat", "spz", "npz"]
FORMATS: tuple[str, ...] = get_args(Format)
WRITABLE: tuple[str, ...] = ("ply", "splat", "spz", "npz")

_READERS: dict[str, Callable[[Path], GaussianSplats]] = {
    "ply": read_ply,
    "compressed_ply": read_compressed_ply,
    "splat": read_splat,
    "spz": read_spz,
    "npz": read_npz,
}
_ENCODERS: dict[str, Callable[[GaussianSplats], bytes]] = {
    "ply": encode_ply,
    "splat": encode_splat,
    "spz": encode_spz,
    "npz": encode_npz,
}


def _format_from_name(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".compressed.ply"):
        return "compressed_ply"
    return {".ply": "ply", ".splat": "splat", ".spz": "spz", ".npz": "npz"}.get(path.suffix.lower())


def detect_format(path: str | os.PathLike[str]) -> Format:
    """The format of a scene file, from its content (magic bytes, PLY header); the extension only
    decides for ``.splat``, which has no magic. Raises ``FormatError`` when it is none of ours."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(1 << 16)  # enough for a gzip stream's first deflate block header
    except OSError as e:
        raise FormatError(path, f"cannot read the file: {e.strerror or e}") from None
    if size == 0:
        if _format_from_name(path) == "splat":
            return "splat"  # a .splat has no header: zero bytes is a valid scene of zero splats
        raise FormatError(path, "the file is empty")
    if is_ply(head):
        return "compressed_ply" if is_compressed_header(parse_header(path)) else "ply"
    if head.startswith(b"NGSP"):
        return "spz"
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(head, 4)
        except zlib.error:
            inner = b""
        if inner == b"NGSP":
            return "spz"
        raise FormatError(path, "a gzip file that is not an spz scene")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if _format_from_name(path) == "splat":
        if size % 32:
            raise FormatError(path, f"size {size:,} B is not a multiple of 32 B: not a valid .splat file")
        return "splat"
    raise FormatError(path, "unrecognized scene format (expected .ply, .compressed.ply, .splat, .spz or .npz content)")


def read_splats(path: str | os.PathLike[str], fmt: Format | None = None) -> GaussianSplats:
    """Read a scene file into float32 CPU ``GaussianSplats`` without repairing anything.

    ``fmt`` forces a format; by default it is detected from the content (``detect_format``).
    """
    path = Path(path)
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in _READERS:
        raise FormatError(path, f"unknown format {fmt!r}; expected one of {list(FORMATS)}")
    try:
        return _READERS[fmt](path)
    except FileNotFoundError:
        raise FormatError(path, "no such file") from None
    except MemoryError:
        raise FormatError(path, "not enough memory to read this scene") from None


def load_scene(path: str | os.PathLike[str], *, strict: bool = False) -> tuple[GaussianSplats, RepairReport]:
    """Read a scene (format detected) and apply the non-finite repair policy.

    With ``strict=True`` a non-finite value raises ``NonFiniteError`` instead of being repaired.
    """
    splats = read_splats(path)
    return splats.repair_non_finite(strict=strict)


def write_splats(splats: GaussianSplats, path: str | os.PathLike[str], fmt: Format | None = None) -> int:
    """Write ``splats`` as ``fmt`` (default: from the extension) and return the bytes written.

    Writable: ply (lossless float32), splat and spz (lossy: see their modules), npz. The file is
    written to a temporary name and renamed, so a failed write leaves no partial file. A scene
    with non-finite values is refused (repair it first, e.g. with ``load_scene``).
    """
    path = Path(path)
    if fmt is None:
        fmt = _format_from_name(path)  # type: ignore[assignment]
        if fmt is None:
            raise VqpressInputError(
                f"{path}: cannot tell the format from the extension; pass fmt= one of {list(WRITABLE)}"
            )
    if fmt not in _ENCODERS:
        raise VqpressInputError(f"{path}: cannot write format {fmt!r}; writable formats are {list(WRITABLE)}")
    for k, v in splats.tensors().items():
        if v.numel() and not bool(torch.isfinite(v).all()):
            raise VqpressInputError(
                f"{path}: the scene has non-finite values in '{k}'; repair them first "
                "(load_scene or GaussianSplats.repair_non_finite)"
            )
    data = _ENCODERS[fmt](splats)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(data)


__all__ = [
    "FORMATS",
    "WRITABLE",
    "Format",
    "detect_format",
    "load_scene",
    "read_splats",
    "write_splats",
]
