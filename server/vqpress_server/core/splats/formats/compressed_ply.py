"""The PlayCanvas / SuperSplat compressed PLY (read and write).

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
- optional ``sh`` element: uint8 ``f_rest_*`` (channel-major as in the INRIA PLY), ``(t - 0.5) * 8`` with
  ``t = (v + 0.5) / 256``, except that 0 and 255 decode to t = 0 and 1.

Decoded to the INRIA parameterization: ``f_dc = (rgb - 0.5) / SH_C0`` and ``opacity = logit(a / 255)``.
An alpha of 255 (or 0) decodes to +inf (or -inf), as in the reference decoder; ``load_scene``
clamps those (see ``GaussianSplats.repair_non_finite``).

The writer orders the Gaussians along a Morton curve (``morton_order`` of the positions), as
SuperSplat and splat-transform do, so that each chunk of 256 covers a small box. What writing
loses: positions and log-scales keep 11-10-11 bits of their chunk's range (log-scale bounds are
clamped to [-20, 20]); colours 8 bits of the chunk's colour range; opacity 8 bits; rotations 10 bits
for each of the three smallest components; SH rest 8 bits of [-4, 4).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...errors import FormatError, VqpressInputError
from ..model import SH_C0, GaussianSplats, num_sh_rest
from ..morton import morton_order
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
        # the middle of each byte's bin, the end bytes at the range's ends (as PlayCanvas decodes it)
        nrm = np.where(flat == 0, 0.0, np.where(flat == 255, 1.0, (flat + 0.5) / 256.0))
        shN = ((nrm - 0.5) * 8.0).astype(np.float32).reshape(N, 3, K).transpose(0, 2, 1)

    return GaussianSplats.from_numpy(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        sh0=((rgb - 0.5) / SH_C0).reshape(N, 1, 3),
        shN=shN,
        meta={"source_format": "compressed_ply", "source_file": path.name},
    )


def _pack_unorm(t: np.ndarray, bits: int) -> np.ndarray:  # values in [0, 1] -> uint32 with `bits` bits
    top = (1 << bits) - 1
    return np.clip(np.floor(t * top + 0.5), 0, top).astype(np.uint32)


def _chunk_fraction(v: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    span = hi - lo
    t = np.where(span > 1e-5, (v - lo) / np.where(span > 1e-5, span, 1.0), 0.0)
    return np.clip(t, 0.0, 1.0)


def _pack_111011(t: np.ndarray) -> np.ndarray:  # [N, 3] in [0, 1] -> [N] uint32
    return (
        (_pack_unorm(t[:, 0], 11) << np.uint32(21))
        | (_pack_unorm(t[:, 1], 10) << np.uint32(11))
        | _pack_unorm(t[:, 2], 11)
    )


def encode_compressed_ply(splats: GaussianSplats) -> bytes:
    """The bytes of a compressed PLY for ``splats`` (Morton-ordered; see the module doc for losses)."""
    N = splats.num_gaussians
    if N == 0:
        raise VqpressInputError("cannot write an empty scene as a compressed PLY: it has no Gaussians")
    s = splats.index(morton_order(splats.means))
    a = {k: v.astype(np.float64) for k, v in s.numpy().items()}
    n_chunks = -(-N // CHUNK)
    pad = n_chunks * CHUNK - N

    def per_chunk(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # [N, 3] -> chunk [C, 3] min, max
        x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]).reshape(n_chunks, CHUNK, 3)
        return x.min(axis=1), x.max(axis=1)

    ci = np.arange(N) // CHUNK
    pmin, pmax = per_chunk(a["means"])
    smin, smax = (np.clip(b, -20.0, 20.0) for b in per_chunk(a["scales"]))
    rgb = a["sh0"].reshape(N, 3) * SH_C0 + 0.5
    cmin, cmax = per_chunk(rgb)
    position = _pack_111011(_chunk_fraction(a["means"], pmin[ci], pmax[ci]))
    scale = _pack_111011(_chunk_fraction(a["scales"], smin[ci], smax[ci]))
    c = _chunk_fraction(rgb, cmin[ci], cmax[ci])
    alpha = 1.0 / (1.0 + np.exp(-a["opacities"]))
    color = (
        (_pack_unorm(c[:, 0], 8) << np.uint32(24)) | (_pack_unorm(c[:, 1], 8) << np.uint32(16))
        | (_pack_unorm(c[:, 2], 8) << np.uint32(8)) | _pack_unorm(alpha, 8)
    )  # fmt: skip

    q = a["quats"]
    n = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(n > 0, q / np.where(n > 0, n, 1.0), np.array([1.0, 0, 0, 0]))  # (w, x, y, z)
    largest = np.abs(q).argmax(axis=1)
    q = q * np.where(q[np.arange(N), largest] < 0, -1.0, 1.0)[:, None]
    others = np.take_along_axis(q, np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest], axis=1)
    t = others * (np.sqrt(2.0) * 0.5) + 0.5
    rotation = largest.astype(np.uint32) << np.uint32(30)
    for k, shift in enumerate((20, 10, 0)):
        rotation |= _pack_unorm(t[:, k], 10) << np.uint32(shift)

    K = a["shN"].shape[1]
    header = [
        "ply", "format binary_little_endian 1.0", "comment Generated by vqpress",
        f"element chunk {n_chunks}", *(f"property float {p}" for p in CHUNK_BOUNDS + CHUNK_COLOR),
        f"element vertex {N}", *(f"property uint {p}" for p in PACKED),
    ]  # fmt: skip
    if K:
        header += [f"element sh {N}", *(f"property uchar f_rest_{i}" for i in range(3 * K))]
    header.append("end_header\n")
    chunks = np.concatenate([pmin, pmax, smin, smax, cmin, cmax], axis=1).astype("<f4")  # [C, 18]
    vertex = np.stack([position, rotation, scale, color], axis=1).astype("<u4")  # [N, 4]
    parts = ["\n".join(header).encode("ascii"), chunks.tobytes(), vertex.tobytes()]
    if K:
        rest = a["shN"].transpose(0, 2, 1).reshape(N, 3 * K)  # channel-major f_rest
        parts.append(np.clip(np.trunc((rest / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8).tobytes())
    return b"".join(parts)
