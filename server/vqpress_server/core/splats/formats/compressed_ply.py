"""The PlayCanvas / SuperSplat compressed PLY (read only).

Layout (binary little-endian PLY):

- ``chunk`` element, one row per 256 consecutive splats: float32 ``min_x min_y min_z max_x max_y max_z``,
  ``min_scale_x .. max_scale_z`` (log scales) and, in newer files, ``min_r min_g min_b max_r max_g max_b``
  (colour bounds; without them colours span [0, 1]).
- ``vertex`` element, four uint32 per splat:
  ``packed_position`` 11-10-11 bits (x in the top 11), each a fraction of the chunk's [min, max];
  ``packed_rotation`` 2 + 10-10-10 "smallest three": the top 2 bits name the largest component of the
  (w, x, y, z) quaternion, the other three follow in order, each ``(v/1023 - 0.5) * sqrt(2)``, and the
  largest is ``sqrt(1 - sum of squares)``;
  ``packed_scale`` 11-10-11 like positions, in log space;
  ``packed_color`` 8-8-8-8 RGBA: colour as a fraction of the chunk's colour range, alpha as opacity.
- optional ``sh`` element: uint8 ``f_rest_*`` (channel-major as in the INRIA PLY), ``(v/256 - 0.5) * 8``.

Decoded to the INRIA parameterization: ``f_dc = (rgb - 0.5) / SH_C0`` and ``opacity = logit(a / 255)``.
An alpha of 255 (or 0) decodes to +inf (or -inf), as in the reference decoder; ``load_scene``
clamps those (see ``GaussianSplats.repair_non_finite``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import FormatError
from ..model import SH_C0, GaussianSplats, num_sh_rest
from ._plyheader import PlyHeader, parse_header, read_element

CHUNK = 256  # splats per chunk
PACKED = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]
CHUNK_BOUNDS = [f"{m}_{a}" for m in ("min", "max") for a in "xyz"] + [
    f"{m}_scale_{a}" for m in ("min", "max") for a in "xyz"
]
CHUNK_COLOR = [f"{m}_{c}" for m in ("min", "max") for c in "rgb"]
_VALID_REST = {3 * num_sh_rest(d): d for d in range(4)}


def is_compressed_header(hdr: PlyHeader) -> bool:
    v = hdr.element("vertex")
    return v is not None and "packed_position" in v.names()


def _unorm(v: np.ndarray, shift: int, bits: int) -> np.ndarray:
    return ((v >> np.uint32(shift)) & np.uint32((1 << bits) - 1)).astype(np.float32) / np.float32((1 << bits) - 1)


def _unpack_111011(v: np.ndarray) -> np.ndarray:  # [N] uint32 -> [N, 3] in [0, 1]
    return np.stack([_unorm(v, 21, 11), _unorm(v, 11, 10), _unorm(v, 0, 11)], axis=1)


def _lerp(lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    return lo * (1 - t) + hi * t


def read_compressed_ply(path: str | os.PathLike[str]) -> GaussianSplats:
    """Decode a PlayCanvas compressed PLY to float ``GaussianSplats`` (no repair)."""
    path = Path(path)
    hdr = parse_header(path)
    vert, chunk = hdr.element("vertex"), hdr.element("chunk")
    if vert is None or chunk is None:
        raise FormatError(path, "a compressed PLY needs both a 'chunk' and a 'vertex' element")
    for el, need in ((vert, PACKED), (chunk, CHUNK_BOUNDS)):
        missing = [n for n in need if n not in el.names()]
        if missing:
            raise FormatError(path, f"element '{el.name}' lacks {missing}")
    bad = [n for n, t in vert.properties if n in PACKED and t != "<u4"]
    if bad:
        raise FormatError(path, f"packed properties {bad} must be uint32")
    N = vert.count
    if chunk.count < -(-N // CHUNK):
        raise FormatError(path, f"{N} splats need {-(-N // CHUNK)} chunks of {CHUNK}, but the file has {chunk.count}")
    sh_el = hdr.element("sh")
    rest: list[str] = []
    if sh_el is not None:
        rest = [n for n in sh_el.names() if n.startswith("f_rest_")]
        if len(rest) not in _VALID_REST:
            raise FormatError(path, f"the 'sh' element has {len(rest)} f_rest properties, which is no SH layout")
        if sorted(rest) != sorted(f"f_rest_{i}" for i in range(len(rest))):
            raise FormatError(path, f"the 'sh' element's f_rest properties are not numbered 0..{len(rest) - 1}")
        if sh_el.count != N:
            raise FormatError(path, f"the 'sh' element has {sh_el.count} rows for {N} splats")

    v = read_element(path, hdr, "vertex")
    c = read_element(path, hdr, "chunk")
    ci = np.arange(N) // CHUNK

    def bounds(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        arr = np.stack([c[n].astype(np.float32) for n in names], axis=1)[ci]  # [N, 6]
        return arr[:, :3], arr[:, 3:]

    lo, hi = bounds(CHUNK_BOUNDS[:6])
    means = _lerp(lo, hi, _unpack_111011(v["packed_position"]))
    lo, hi = bounds(CHUNK_BOUNDS[6:])
    scales = _lerp(lo, hi, _unpack_111011(v["packed_scale"]))

    col = v["packed_color"]
    rgb = np.stack([_unorm(col, 24, 8), _unorm(col, 16, 8), _unorm(col, 8, 8)], axis=1)
    if all(n in chunk.names() for n in CHUNK_COLOR):
        lo, hi = bounds(CHUNK_COLOR)
        rgb = _lerp(lo, hi, rgb)
    alpha = _unorm(col, 0, 8).astype(np.float64)
    with np.errstate(divide="ignore"):
        opacities = (np.log(alpha) - np.log1p(-alpha)).astype(np.float32)  # 0 -> -inf, 1 -> +inf

    rot = v["packed_rotation"]
    norm = np.float32(np.sqrt(2.0))
    abc = np.stack([_unorm(rot, 20, 10), _unorm(rot, 10, 10), _unorm(rot, 0, 10)], axis=1)
    abc = (abc - 0.5) * norm
    m = np.sqrt(np.maximum(0.0, 1.0 - (abc**2).sum(axis=1)))
    largest = (rot >> np.uint32(30)).astype(np.int64)
    quats = np.empty((N, 4), np.float32)
    slot = np.arange(4)[None, :]
    # the three stored components fill the slots other than `largest`, in order
    src = slot - (slot > largest[:, None])
    quats[:] = np.take_along_axis(abc, np.clip(src, 0, 2), axis=1)
    quats[np.arange(N), largest] = m

    shN = np.zeros((N, 0, 3), np.float32)
    if rest:
        s = read_element(path, hdr, "sh")
        K = len(rest) // 3
        flat = np.stack([s[f"f_rest_{i}"] for i in range(len(rest))], axis=1).astype(np.float32)
        shN = ((flat / 256.0 - 0.5) * 8.0).reshape(N, 3, K).transpose(0, 2, 1)

    return GaussianSplats.from_numpy(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        sh0=((rgb - 0.5) / SH_C0).reshape(N, 1, 3),
        shN=shN,
        meta={"source_format": "compressed_ply", "source_file": path.name},
    )
