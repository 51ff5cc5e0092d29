"""The binary PLY header, parsed without trusting it.

Shared by the INRIA reader (``ply.py``) and the PlayCanvas compressed reader (``compressed_ply.py``).
The header is read from at most ``MAX_HEADER_BYTES`` of the file; every element's byte size is
computed from the header with Python integers and compared with the file size before any array is
allocated, so a lying vertex count costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import FormatError
from ...magic import is_ply

MAX_HEADER_BYTES = 1 << 16  # a splat PLY header is a few KB; anything longer is not one

# PLY scalar type names (both spellings) -> little-endian numpy dtype
PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1",
    "uchar": "u1", "uint8": "u1",
    "short": "<i2", "int16": "<i2",
    "ushort": "<u2", "uint16": "<u2",
    "int": "<i4", "int32": "<i4",
    "uint": "<u4", "uint32": "<u4",
    "float": "<f4", "float32": "<f4",
    "double": "<f8", "float64": "<f8",
}  # fmt: skip


@dataclass(frozen=True)
class PlyElement:
    name: str
    count: int
    properties: tuple[tuple[str, str], ...]  # (name, numpy dtype string), in file order

    @property
    def dtype(self) -> np.dtype:
        return np.dtype([(n, t) for n, t in self.properties])

    @property
    def nbytes(self) -> int:  # Python int: never overflows, never allocates
        return self.count * self.dtype.itemsize

    def names(self) -> list[str]:
        return [n for n, _ in self.properties]


@dataclass(frozen=True)
class PlyHeader:
    format: str  # "binary_little_endian" (the only one we read)
    elements: tuple[PlyElement, ...]
    comments: tuple[str, ...]
    header_len: int  # bytes up to and including the end_header line
    file_size: int

    def element(self, name: str) -> PlyElement | None:
        for e in self.elements:
            if e.name == name:
                return e
        return None

    def offset_of(self, name: str) -> int:
        off = self.header_len
        for e in self.elements:
            if e.name == name:
                return off
            off += e.nbytes
        raise KeyError(name)


def parse_header(path: str | os.PathLike[str]) -> PlyHeader:
    """Parse and validate a binary little-endian PLY header; raises ``FormatError``.

    Checks: magic, format line, element and property syntax, no list properties, no duplicate
    names, and that the bytes the elements claim fit in the file.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise FormatError(path, "the file is empty")
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER_BYTES)
    if not is_ply(head):
        raise FormatError(path, "not a PLY file (it does not start with 'ply')")
    end = -1
    for marker in (b"end_header\n", b"end_header\r\n"):
        i = head.find(marker)
        if i >= 0:
            end = i + len(marker)
            break
    if end < 0:
        raise FormatError(path, f"no 'end_header' line in the first {MAX_HEADER_BYTES} bytes (truncated header?)")
    try:
        text = head[:end].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(path, "the PLY header is not ASCII text") from None

    fmt = ""
    comments: list[str] = []
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for lineno, raw in enumerate(text.splitlines()[1:], start=2):
        parts = raw.split()
        if not parts or parts[0] in ("end_header",):
            continue
        key = parts[0]
        if key in ("comment", "obj_info"):
            comments.append(raw[len(key) :].strip())
        elif key == "format":
            if len(parts) != 3:
                raise FormatError(path, f"header line {lineno}: malformed format line {raw!r}")
            fmt = parts[1]
        elif key == "element":
            if len(parts) != 3 or not parts[2].isdigit():
                raise FormatError(path, f"header line {lineno}: malformed element line {raw!r}")
            elements.append((parts[1], int(parts[2]), []))
        elif key == "property":
            if not elements:
                raise FormatError(path, f"header line {lineno}: property before any element")
            if len(parts) >= 2 and parts[1] == "list":
                raise FormatError(
                    path,
                    f"element '{elements[-1][0]}' has a list property ({raw.strip()!r}); "
                    "a Gaussian splat PLY has only scalar properties",
                )
            if len(parts) != 3 or parts[1] not in PLY_TYPES:
                raise FormatError(path, f"header line {lineno}: unsupported property line {raw!r}")
            props = elements[-1][2]
            if any(n == parts[2] for n, _ in props):
                raise FormatError(path, f"element '{elements[-1][0]}' declares property '{parts[2]}' twice")
            props.append((parts[2], PLY_TYPES[parts[1]]))
        else:
            raise FormatError(path, f"header line {lineno}: unknown keyword {key!r}")

    if fmt == "ascii":
        raise FormatError(path, "ASCII PLY is not supported; convert it to binary_little_endian (e.g. with plyfile)")
    if fmt == "binary_big_endian":
        raise FormatError(path, "big-endian PLY is not supported; convert it to binary_little_endian")
    if fmt != "binary_little_endian":
        raise FormatError(path, f"unknown or missing PLY format {fmt!r} (expected binary_little_endian)")
    if not elements:
        raise FormatError(path, "the PLY header declares no element")

    els = tuple(PlyElement(n, c, tuple(p)) for n, c, p in elements)
    for e in els:
        if not e.properties and e.count:
            raise FormatError(path, f"element '{e.name}' has {e.count} rows but no properties")
    hdr = PlyHeader(fmt, els, tuple(comments), end, size)
    claimed = sum(e.nbytes for e in els)
    body = size - end
    if claimed > body:
        detail = ", ".join(f"{e.name}: {e.count:,} x {e.dtype.itemsize} B" for e in els)
        raise FormatError(
            path,
            f"the header claims {claimed:,} bytes of data ({detail}) but the file holds only {body:,} "
            "after the header: the file is truncated or its element counts are wrong",
        )
    if claimed < body:
        raise FormatError(
            path,
            f"{body - claimed:,} bytes after the {claimed:,} bytes of data the header declares: its element "
            "counts are wrong or the file has trailing garbage",
        )
    return hdr


def read_element(path: str | os.PathLike[str], hdr: PlyHeader, name: str) -> np.ndarray:
    """The rows of one element as a structured array (sizes were checked by ``parse_header``)."""
    e = hdr.element(name)
    assert e is not None, name
    arr = np.fromfile(path, dtype=e.dtype, count=e.count, offset=hdr.offset_of(name))
    if arr.shape[0] != e.count:  # the file changed under us
        raise FormatError(path, f"element '{name}': expected {e.count} rows, read {arr.shape[0]}")
    return arr
