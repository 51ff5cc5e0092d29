"""Gaussian splat scene files: detect, read, repair on load, write.

Formats (the name each has in ``fmt``):

- ``"ply"``            INRIA 3DGS PLY, binary little-endian float32 (read and write, lossless)
- ``"compressed_ply"`` PlayCanvas / SuperSplat compressed PLY (read and write, lossy)
- ``"splat"``          antimatter15 ``.splat``, 32 B per splat (read and write; drops SH rest)
- ``"spz"``            Niantic ``.spz`` v2/v3 gzip and v4 zstd (read), v2 (write); axes: ``ReadOptions``
- ``"sog"``            PlayCanvas SOG v2: bundled ``.sog``, unbundled ``meta.json`` folder, streamed
                       ``lod-meta.json`` (read); bundled and unbundled (write, lossy)
- ``"npz"``            ``np.savez`` of the six arrays, as inline gRPC tensors are stored (read and write)

Readers treat every file as untrusted: sizes claimed by a header are checked against the file
before anything is allocated, and every problem is a ``FormatError`` naming the file. Readers
return values as stored, non-finite ones included; ``load_scene`` applies the repair policy of
``GaussianSplats.repair_non_finite``. Each module's docstring states its layout and what
writing it loses.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import torch

from ...atomic import atomic_write_bytes
from ...errors import FormatError, VqpressInputError
from ...magic import GZIP_MAGIC, HEAD_BYTES, scene_format
from ..model import GaussianSplats, RepairReport
from ._plyheader import parse_header
from .compressed_ply import encode_compressed_ply, is_compressed_header, read_compressed_ply
from .filters import ExportFilter, FilterReport, filter_splats
from .npz import encode_npz, read_npz
from .ply import encode_ply, read_ply
from .sog import SogConfig, encode_sog, encode_sog_files, read_sog, sniff_sog_zip
from .splat import encode_splat, read_splat
from .spz import SPZ_AXES, SpzAxes, check_axes, encode_spz, read_spz

Format = Literal["ply", "compressed_ply", "splat", "spz", "sog", "npz"]
FORMATS: tuple[str, ...] = get_args(Format)
WRITABLE: tuple[str, ...] = ("ply", "compressed_ply", "splat", "spz", "sog", "npz")


@dataclass(frozen=True)
class ReadOptions:
    """Choices a reader cannot make from the file alone."""

    spz_axes: SpzAxes = "ply"  # "ply": a .spz holds the scene's own axes; "rub": convert from RUB (spz.py)
    sog_lod: int = 0  # LOD level read from a streamed SOG (lod-meta.json); 0 = the finest

    def __post_init__(self) -> None:
        check_axes(self.spz_axes)
        if isinstance(self.sog_lod, bool) or not isinstance(self.sog_lod, int) or self.sog_lod < 0:
            raise VqpressInputError(f"sog_lod must be a non-negative integer (0 = finest), got {self.sog_lod!r}")


@dataclass(frozen=True)
class WriteOptions:
    """Choices of the lossy writers."""

    spz_axes: SpzAxes = "ply"  # "ply": store the scene's own axes; "rub": convert to RUB (spz.py)
    sog: SogConfig = field(default_factory=SogConfig)  # SOG codebooks and SH palette

    def __post_init__(self) -> None:
        check_axes(self.spz_axes)


_READERS: dict[str, Callable[[Path, ReadOptions], GaussianSplats]] = {
    "ply": lambda p, o: read_ply(p),  # read_splats calls read_ply itself: it reads straight to a device
    "compressed_ply": lambda p, o: read_compressed_ply(p),
    "splat": lambda p, o: read_splat(p),
    "spz": lambda p, o: read_spz(p, o.spz_axes),
    "sog": lambda p, o: read_sog(p, o.sog_lod),
    "npz": lambda p, o: read_npz(p),
}
_ENCODERS: dict[str, Callable[[GaussianSplats, WriteOptions], bytes]] = {
    "ply": lambda s, o: encode_ply(s),
    "compressed_ply": lambda s, o: encode_compressed_ply(s),
    "splat": lambda s, o: encode_splat(s),
    "spz": lambda s, o: encode_spz(s, o.spz_axes),
    "sog": lambda s, o: encode_sog(s, o.sog),
    "npz": lambda s, o: encode_npz(s),
}


def _format_from_name(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".compressed.ply"):
        return "compressed_ply"
    if name in ("meta.json", "lod-meta.json"):
        return "sog"
    return {".ply": "ply", ".splat": "splat", ".spz": "spz", ".sog": "sog", ".npz": "npz"}.get(path.suffix.lower())


def detect_format(path: str | os.PathLike[str]) -> Format:
    """The format of a scene file, from its content (magic bytes, PLY header); the extension only
    decides for ``.splat``, which has no magic. Raises ``FormatError`` when it is none of ours."""
    path = Path(path)
    if path.is_dir():
        if (path / "meta.json").is_file() or (path / "lod-meta.json").is_file():
            return "sog"
        raise FormatError(path, "a folder is a scene only as an unbundled SOG (with meta.json or lod-meta.json)")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except OSError as e:
        raise FormatError(path, f"cannot read the file: {e.strerror or e}") from None
    if size == 0:
        if _format_from_name(path) == "splat":
            return "splat"  # a .splat has no header: zero bytes is a valid scene of zero splats
        raise FormatError(path, "the file is empty")
    found = scene_format(head)
    if found == "ply":
        return "compressed_ply" if is_compressed_header(parse_header(path)) else "ply"
    if found == "spz":
        return "spz"
    if found == "npz":  # a zip: a bundled SOG or an .npz
        return "sog" if sniff_sog_zip(path) else "npz"
    if head.startswith(GZIP_MAGIC):
        raise FormatError(path, "a gzip file that is not an spz scene")
    if head.lstrip()[:1] == b"{" and _format_from_name(path) == "sog":
        return "sog"
    if _format_from_name(path) == "splat":
        if size % 32:
            raise FormatError(path, f"size {size:,} B is not a multiple of 32 B: not a valid .splat file")
        return "splat"
    raise FormatError(
        path,
        "unrecognized scene format (expected .ply, .compressed.ply, .splat, .spz, .sog, meta.json or .npz content)",
    )


def read_splats(
    path: str | os.PathLike[str],
    fmt: Format | None = None,
    *,
    options: ReadOptions = ReadOptions(),
    device: torch.device | str = "cpu",
) -> GaussianSplats:
    """Read a scene file into float32 ``GaussianSplats`` on ``device`` without repairing anything.

    ``fmt`` forces a format; by default it is detected from the content (``detect_format``).
    ``options``: the axes of a .spz and the LOD level of a streamed SOG (``ReadOptions``).
    A .ply is read straight to ``device`` (for CUDA through pinned memory); the other formats are
    decoded on the CPU and then moved.
    """
    path = Path(path)
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in _READERS:
        raise FormatError(path, f"unknown format {fmt!r}; expected one of {list(FORMATS)}")
    try:
        if fmt == "ply":
            return read_ply(path, device)
        return _READERS[fmt](path, options).to(device)
    except FileNotFoundError:
        raise FormatError(path, "no such file") from None
    except MemoryError:
        raise FormatError(path, "not enough memory to read this scene") from None
    except torch.OutOfMemoryError:
        raise FormatError(path, f"not enough {device} memory to read this scene") from None


def load_scene(
    path: str | os.PathLike[str], *, strict: bool = False, options: ReadOptions = ReadOptions()
) -> tuple[GaussianSplats, RepairReport]:
    """Read a scene (format detected) and apply the non-finite repair policy.

    With ``strict=True`` a non-finite value raises ``NonFiniteError`` instead of being repaired.
    """
    splats = read_splats(path, options=options)
    return splats.repair_non_finite(strict=strict)


def write_splats(
    splats: GaussianSplats,
    path: str | os.PathLike[str],
    fmt: Format | None = None,
    *,
    options: WriteOptions = WriteOptions(),
) -> int:
    """Write ``splats`` as ``fmt`` (default: from the extension) and return the bytes written.

    Writable: ply (lossless float32), compressed_ply, splat, spz and sog (lossy: see their
    modules), npz. A ``.sog`` is a bundle; a path named ``meta.json`` gets an unbundled SOG (the
    images beside it). The file is written to a temporary name and renamed, so a failed write
    leaves no partial file. A scene with non-finite values is refused (repair it first, e.g. with
    ``load_scene``, or drop them with ``ExportFilter(drop_non_finite=True)``).
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
    if fmt == "sog" and path.name.lower() == "meta.json":
        files = encode_sog_files(splats, options.sog)
        for name in sorted(files, key=lambda n: n == "meta.json"):  # meta.json last: it names the rest
            atomic_write_bytes(path.with_name(name), files[name])
        return sum(len(b) for b in files.values())
    data = _ENCODERS[fmt](splats, options)
    atomic_write_bytes(path, data)
    return len(data)


def export_splats(
    splats: GaussianSplats,
    path: str | os.PathLike[str],
    fmt: Format | None = None,
    *,
    filters: ExportFilter = ExportFilter(),
    options: WriteOptions = WriteOptions(),
) -> tuple[int, FilterReport]:
    """Filter ``splats`` (``filter_splats``) and write what is kept (``write_splats``): the bytes
    written and what the filters dropped. Every export of a scene to a file goes through here."""
    kept, report = filter_splats(splats, filters)
    return write_splats(kept, path, fmt, options=options), report


__all__ = [
    "FORMATS",
    "SPZ_AXES",
    "WRITABLE",
    "ExportFilter",
    "FilterReport",
    "Format",
    "ReadOptions",
    "SogConfig",
    "SpzAxes",
    "WriteOptions",
    "filter_splats",
    "detect_format",
    "export_splats",
    "load_scene",
    "read_splats",
    "write_splats",
]
