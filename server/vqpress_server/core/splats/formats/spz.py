"""Niantic ``.spz``: read versions 2, 3 (gzip) and 4 (NGSP header + zstd streams); write version 2.

Packed layout (all versions): a 16-byte header ``magic "NGSP", uint32 version, uint32 numPoints,
uint8 shDegree, uint8 fractionalBits, uint8 flags, uint8 reserved`` (bit 1 of flags: extension
records follow), then attribute blocks, point-major inside each block:

- positions: 3 x 24-bit signed fixed point per point, value = int / 2^fractionalBits;
- alphas: uint8 ``sigmoid(opacity) * 255``;
- colors: uint8 per channel, ``sh0 * 0.15 * 255 + 127.5`` (the DC coefficient, not RGB);
- scales: uint8 per axis, ``(log_scale + 10) * 16``;
- rotations: v2 "first three" (uint8 x, y, z = ``q * 127.5 + 127.5`` of the unit quaternion with w >= 0;
  w recovered); v3+ "smallest three" (uint32: top 2 bits index of the largest of x, y, z, w; three
  10-bit fields sign + 9-bit magnitude / (2^9 - 1) * sqrt(1/2), the last component in the lowest bits);
- sh: uint8 per coefficient, coefficient-major with RGB interleaved (``shN[i, j, c]``),
  ``x * 128 + 128``; an Adobe SH-quantization extension replaces this by a [shMin, shMax] range.

Versions 2 and 3 gzip header + blocks together. Version 4 stores the header uncompressed
(32 bytes: the 16 above, then ``uint32 tocByteOffset`` and padding), optional extensions up to the
table of contents, the TOC (per stream: uint64 compressed size, uint64 uncompressed size), then one
zstd stream per block in the order above.

What writing version 2 loses (spz is a lossy format):

- positions: 24-bit fixed point, step 2^-12 (0.24 mm in metres) when every |coordinate| < 2048;
  for larger scenes fewer fractional bits are used (step 2^-f with the largest f that fits);
  coordinates beyond +-2^23 cannot be written;
- log-scales: step 1/16, clamped to [-10, 5.94];
- opacity: ``sigmoid(opacity)`` rounded to 1/255;
- DC colour: ``sh0`` step 1/(0.15*255) = 0.026, clamped to [-3.33, 3.33];
- rotation: normalized, w >= 0, x/y/z rounded to 1/127.5;
- SH rest: clamped to [-1, 127/128]; degree-1 coefficients keep 5 bits (step 1/16), degree 2-3 keep
  4 bits (step 1/8), as in the reference encoder.

Axes: the format carries no record of its axes, and the ecosystem is split (see the README's format
section). ``axes="ply"`` (the default) stores and reads the values as they are, in the scene's own
axes (RDF for an INRIA PLY), as Niantic's library does with its default ``UNSPECIFIED`` coordinate
system and its ``ply_to_spz`` tool, and as splat-transform, spz-js, gsply and Spark read and write
.spz: a .spz then opens as the same scene's .ply opens. ``axes="rub"`` converts to and from SPZ's
documented RUB axes (x right, y up, z back; three.js, PlayCanvas) with the 180-degree rotation
about x: y and z of positions flip sign, so do the quaternion's y and z, and every SH coefficient
whose basis function is odd in y + z (``SH_FLIP_RDF_RUB``); that is what PlayCanvas' engine expects
of a .spz (its ``biker.spz`` is stored so) and what Niantic's library does when told ``from=RDF``.
Reading decodes alpha 0 / 255 to an opacity logit of -inf / +inf, as the reference decoder does;
``load_scene`` clamps those.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import zstandard

from ...budgets import check_decoded
from ...errors import FormatError, VqpressInputError
from ..model import GaussianSplats, num_sh_rest

SpzAxes = Literal["ply", "rub"]
SPZ_AXES: tuple[str, ...] = get_args(SpzAxes)

MAGIC = 0x5053474E  # "NGSP" little-endian
HEADER = struct.Struct("<IIIBBBB")  # 16 bytes
V4_HEADER_BYTES = 32
COLOR_SCALE = 0.15
FLAG_EXTENSIONS = 0x2
MAX_EXTENSION_BYTES = 4096  # extension records are a few dozen bytes
EXT_SH_QUANT = 0xADBE0001  # Adobe: uint8 sh1Bits, uint8 shRestBits, float32 shMin, float32 shMax
EXT_SAFE_ORBIT = 0xADBE0002  # Adobe: 3 x float32 camera hints (ignored)
_EXT_SIZES = {EXT_SH_QUANT: 10, EXT_SAFE_ORBIT: 12}
# RDF <-> RUB: positions (x, y, z) and quaternion (x, y, z) signs, and per-coefficient SH signs
# (coefficient j of shN, degree 1..3; j = 0 is the first degree-1 coefficient)
POS_FLIP_RDF_RUB = np.array([1.0, -1.0, -1.0])
QUAT_FLIP_RDF_RUB = np.array([1.0, 1.0, -1.0, -1.0])  # (w, x, y, z)
SH_FLIP_RDF_RUB = np.array([-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], np.float64)
SH1_BITS = 5
SH_REST_BITS = 4


@dataclass(frozen=True)
class _Header:
    version: int
    num_points: int
    sh_degree: int
    fractional_bits: int
    flags: int

    @property
    def sh_dim(self) -> int:
        return num_sh_rest(self.sh_degree)

    @property
    def rot_bytes(self) -> int:
        return 4 if self.version >= 3 else 3

    def block_sizes(self) -> list[int]:
        N = self.num_points
        sizes = [9 * N, N, 3 * N, 3 * N, self.rot_bytes * N]
        return sizes + ([N * self.sh_dim * 3] if self.sh_dim else [])


def _parse_header(path: Path, raw: bytes) -> _Header:
    if len(raw) < HEADER.size:
        raise FormatError(path, f"spz header truncated ({len(raw)} of {HEADER.size} bytes)")
    magic, version, n, deg, fb, flags, _ = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise FormatError(path, f"bad spz magic 0x{magic:08x} (expected 'NGSP')")
    if version not in (2, 3, 4):
        raise FormatError(path, f"spz version {version} is not supported (versions 2, 3 and 4 are)")
    if deg > 3:
        raise FormatError(path, f"spz SH degree {deg} is not supported (0..3)")
    if fb > 23:
        raise FormatError(path, f"spz fractionalBits {fb} is out of range (0..23)")
    return _Header(version, n, deg, fb, flags)


def _parse_extensions(path: Path, raw: bytes) -> tuple[int, tuple[float, float] | None]:
    """Known extension records at the start of ``raw``: (bytes used, SH [min, max] if given)."""
    off, sh_range = 0, None
    while off + 4 <= len(raw):
        (kind,) = struct.unpack_from("<I", raw, off)
        size = _EXT_SIZES.get(kind)
        if size is None:
            break
        if off + 4 + size > len(raw):
            raise FormatError(path, f"spz extension 0x{kind:08x} is truncated")
        if kind == EXT_SH_QUANT:
            lo, hi = struct.unpack_from("<ff", raw, off + 6)
            if not (lo == -1.0 and hi == 1.0):
                sh_range = (lo, hi)
        off += 4 + size
    return off, sh_range


def _inflate(path: Path, data: bytes) -> tuple[_Header, bytes]:
    """Gunzip a v2/v3 file, never producing more than the header says the points need."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(data, HEADER.size)
        hdr = _parse_header(path, head)
        if hdr.version == 4:
            raise FormatError(path, "spz version 4 must not be gzipped")
        need = sum(hdr.block_sizes())
        check_decoded(path, f"the spz header ({hdr.num_points:,} points)", need, len(data))
        cap = need + (MAX_EXTENSION_BYTES if hdr.flags & FLAG_EXTENSIONS else 0)
        rest = d.decompress(d.unconsumed_tail, cap)
        if not d.eof and d.decompress(d.unconsumed_tail, 1):
            raise FormatError(
                path,
                f"the gzip stream holds more than the {hdr.num_points:,} points the header claims: the count is wrong",
            )
        if not d.eof:
            raise FormatError(path, "the gzip stream ends early (truncated file)")
    except zlib.error as e:
        raise FormatError(path, f"corrupt gzip stream: {e}") from None
    if d.unused_data:
        raise FormatError(path, f"{len(d.unused_data):,} bytes of garbage after the gzip stream")
    return hdr, rest


def _read_v4(path: Path, data: bytes) -> tuple[_Header, list[bytes], tuple[float, float] | None]:
    hdr = _parse_header(path, data)
    if hdr.version != 4:
        raise FormatError(path, f"an uncompressed NGSP header must be version 4, found {hdr.version}")
    if len(data) < V4_HEADER_BYTES:
        raise FormatError(path, "spz v4 header truncated")
    num_streams = data[15]
    (toc_off,) = struct.unpack_from("<I", data, 16)
    sizes = hdr.block_sizes()
    if num_streams != len(sizes):
        raise FormatError(path, f"spz v4 has {num_streams} streams; SH degree {hdr.sh_degree} needs {len(sizes)}")
    toc_end = toc_off + 16 * num_streams
    if toc_off < V4_HEADER_BYTES or toc_end > len(data):
        raise FormatError(path, f"spz v4 table of contents at {toc_off} lies outside the file")
    sh_range = None
    if hdr.flags & FLAG_EXTENSIONS:
        _, sh_range = _parse_extensions(path, data[V4_HEADER_BYTES:toc_off])
    streams, off = [], toc_end
    dctx = zstandard.ZstdDecompressor()
    names = ["positions", "alphas", "colors", "scales", "rotations", "sh"]
    for i, want in enumerate(sizes):  # the table of contents first: nothing is inflated yet
        raw = struct.unpack_from("<QQ", data, toc_off + 16 * i)[1]
        if raw != want:
            raise FormatError(
                path, f"spz v4 stream '{names[i]}' holds {raw:,} bytes; {hdr.num_points:,} points need {want:,}"
            )
    check_decoded(path, f"the spz header ({hdr.num_points:,} points)", sum(sizes), len(data))
    for i, want in enumerate(sizes):
        comp = struct.unpack_from("<QQ", data, toc_off + 16 * i)[0]
        if off + comp > len(data):
            raise FormatError(path, f"spz v4 stream '{names[i]}' is truncated ({comp:,} bytes claimed)")
        frame = data[off : off + comp]
        try:
            declared = zstandard.frame_content_size(frame)
            if declared > want:
                raise FormatError(path, f"spz v4 stream '{names[i]}' declares {declared:,} bytes, expected {want:,}")
            out = dctx.decompress(frame, max_output_size=want) if want else b""
        except zstandard.ZstdError as e:
            raise FormatError(path, f"spz v4 stream '{names[i]}' is corrupt: {e}") from None
        if len(out) != want:
            raise FormatError(path, f"spz v4 stream '{names[i]}' decodes to {len(out):,} bytes, expected {want:,}")
        streams.append(out)
        off += comp
    if off != len(data):
        raise FormatError(path, f"{len(data) - off:,} bytes after the last spz v4 stream: the file is corrupt")
    return hdr, streams, sh_range


def check_axes(axes: str) -> SpzAxes:
    if axes not in SPZ_AXES:
        raise VqpressInputError(f"spz axes must be one of {list(SPZ_AXES)}, got {axes!r}")
    return axes  # type: ignore[return-value]


def read_spz(path: str | os.PathLike[str], axes: SpzAxes = "ply") -> GaussianSplats:
    """Read a ``.spz`` file (versions 2, 3 gzip; 4 zstd) into ``GaussianSplats`` (no repair).

    ``axes``: "ply" takes the stored values as they are; "rub" converts from RUB (module doc)."""
    axes = check_axes(axes)
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise FormatError(path, "the file is empty")
    if data[:2] == b"\x1f\x8b":
        hdr, body = _inflate(path, data)
        sh_range = None
        off = 0
        if hdr.flags & FLAG_EXTENSIONS:
            off, sh_range = _parse_extensions(path, body[:MAX_EXTENSION_BYTES])
        sizes = hdr.block_sizes()
        if len(body) - off != sum(sizes):
            raise FormatError(
                path,
                f"the header claims {hdr.num_points:,} points ({sum(sizes):,} bytes) but the data holds "
                f"{len(body) - off:,}: the file is truncated or the count is wrong",
            )
        streams = []
        for s in sizes:
            streams.append(body[off : off + s])
            off += s
    elif data[:4] == b"NGSP":
        hdr, streams, sh_range = _read_v4(path, data)
    else:
        raise FormatError(path, "not an spz file (neither gzip nor an NGSP header)")
    return _unpack(path, hdr, streams, sh_range, axes)


def _unpack(
    path: Path, hdr: _Header, streams: list[bytes], sh_range: tuple[float, float] | None, axes: SpzAxes
) -> GaussianSplats:
    N = hdr.num_points
    flip = axes == "rub"
    p = np.frombuffer(streams[0], np.uint8).reshape(N * 3, 3).astype(np.int32)
    fixed = p[:, 0] | (p[:, 1] << 8) | (p[:, 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    means = (fixed.astype(np.float64) / (1 << hdr.fractional_bits)).reshape(N, 3)
    if flip:
        means = means * POS_FLIP_RDF_RUB

    alpha = np.frombuffer(streams[1], np.uint8).astype(np.float64) / 255.0
    with np.errstate(divide="ignore"):
        opac = np.log(alpha) - np.log1p(-alpha)  # 0 -> -inf, 255 -> +inf, as the reference
    colors = np.frombuffer(streams[2], np.uint8).reshape(N, 3).astype(np.float64)
    sh0 = (colors / 255.0 - 0.5) / COLOR_SCALE
    scales = np.frombuffer(streams[3], np.uint8).reshape(N, 3).astype(np.float32) / 16.0 - 10.0

    r = np.frombuffer(streams[4], np.uint8).reshape(N, hdr.rot_bytes)
    if hdr.rot_bytes == 3:
        xyz = r.astype(np.float64) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - (xyz**2).sum(axis=1)))
        quats = np.concatenate([w[:, None], xyz], axis=1)
    else:
        comp = r.astype(np.uint32)
        comp = comp[:, 0] | (comp[:, 1] << 8) | (comp[:, 2] << 16) | (comp[:, 3] << 24)
        largest = (comp >> 30).astype(np.int64)
        xyzw = np.zeros((N, 4), np.float64)
        rows = np.arange(N)
        sumsq = np.zeros(N)
        for i in range(3, -1, -1):  # the last non-largest component sits in the lowest bits
            use = largest != i
            mag = (comp & 0x1FF).astype(np.float64) / 511.0 * np.sqrt(0.5)
            neg = ((comp >> 9) & 1).astype(bool)
            val = np.where(neg, -mag, mag)
            xyzw[use, i] = val[use]
            sumsq += np.where(use, val**2, 0.0)
            comp = np.where(use, comp >> 10, comp)
        xyzw[rows, largest] = np.sqrt(np.maximum(0.0, 1.0 - sumsq))
        quats = xyzw[:, [3, 0, 1, 2]]
    if flip:
        quats = quats * QUAT_FLIP_RDF_RUB

    shN = np.zeros((N, hdr.sh_dim, 3), np.float32)
    if hdr.sh_dim:
        q = np.frombuffer(streams[5], np.uint8).reshape(N, hdr.sh_dim, 3).astype(np.float64)
        if sh_range is None:
            shN = (q - 128.0) / 128.0
        else:
            lo, hi = sh_range
            shN = lo + q / 255.0 * (hi - lo) if hi > lo else np.zeros_like(q)
        if flip:
            shN = shN * SH_FLIP_RDF_RUB[: hdr.sh_dim, None]
    return GaussianSplats.from_numpy(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opac,
        sh0=sh0.reshape(N, 1, 3),
        shN=shN,
        meta={"source_format": "spz", "source_file": path.name, "spz_version": str(hdr.version), "spz_axes": axes},
    )


def _fractional_bits(means: np.ndarray) -> int:  # [N, 3]
    biggest = float(np.abs(means).max()) if means.size else 0.0
    for fb in range(12, -1, -1):
        if round(biggest * (1 << fb)) < (1 << 23):
            return fb
    raise VqpressInputError(f"cannot write spz: a coordinate of magnitude {biggest:.3g} exceeds its 24-bit fixed point")


def _quantize_sh(x: np.ndarray, bits: int) -> np.ndarray:
    bucket = 1 << (8 - bits)
    q = np.rint(x * 128.0) + 128.0
    q = np.floor((q + bucket // 2) / bucket) * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def encode_spz(splats: GaussianSplats, axes: SpzAxes = "ply") -> bytes:
    """The bytes of a version-2 ``.spz`` (gzip) for ``splats``; see the module doc for the losses
    and for ``axes`` ("ply": the scene's values as they are; "rub": converted to RUB)."""
    axes = check_axes(axes)
    a = {k: v.astype(np.float64) for k, v in splats.numpy().items()}
    N = splats.num_gaussians
    K = a["shN"].shape[1]
    if axes == "rub":
        a["means"] = a["means"] * POS_FLIP_RDF_RUB
        a["quats"] = a["quats"] * QUAT_FLIP_RDF_RUB
        a["shN"] = a["shN"] * SH_FLIP_RDF_RUB[:K, None]
    if N >= 1 << 32:
        raise VqpressInputError(f"cannot write spz: {N} points exceed its limit of 2^32 - 1")
    fb = _fractional_bits(a["means"])
    fixed = np.rint(a["means"] * (1 << fb)).astype(np.int64).reshape(-1) & 0xFFFFFF
    pos = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], axis=1).astype(np.uint8)

    def u8(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)

    alphas = u8(255.0 / (1.0 + np.exp(-a["opacities"])))
    colors = u8(a["sh0"].reshape(N, 3) * (COLOR_SCALE * 255.0) + 127.5)
    scales = u8((a["scales"] + 10.0) * 16.0)
    q = a["quats"]
    n = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(n > 0, q / np.where(n > 0, n, 1.0), np.array([1.0, 0, 0, 0]))
    q = np.where(q[:, :1] < 0, -q, q)
    rots = u8(q[:, 1:] * 127.5 + 127.5)
    parts = [HEADER.pack(MAGIC, 2, N, splats.sh_degree, fb, 0, 0), pos.tobytes(), alphas.tobytes(),
             colors.tobytes(), scales.tobytes(), rots.tobytes()]  # fmt: skip
    if K:
        sh = np.empty((N, K, 3), np.uint8)
        sh[:, :3] = _quantize_sh(a["shN"][:, :3], SH1_BITS)
        sh[:, 3:] = _quantize_sh(a["shN"][:, 3:], SH_REST_BITS)
        parts.append(sh.tobytes())
    return gzip.compress(b"".join(parts), compresslevel=6, mtime=0)
