"""The .vqp container: one self-describing file per compressed scene or field (numpy + zstandard only).

This module is the single definition of the format: the server writes and reads it through these
functions, users read it here without torch.

Byte layout (all integers little-endian)::

    offset  size  field
    0       8     MAGIC = b"\\x89VQP\\r\\n\\x1a\\n"  (a binary signature, as PNG does)
    8       2     version (uint16): 1 or 2 (2 when a section uses "backref" or "bitlen")
    10      2     flags (uint16), must be 0
    12      4     manifest length M in bytes (uint32), at most MAX_MANIFEST_BYTES
    16      4     CRC-32 of the manifest bytes (uint32, zlib.crc32)
    20      M     manifest: UTF-8 JSON object (see below)
    20+M    ...   section payloads, back to back in manifest order, nothing after the last one

The manifest is ``{"kind": str, "meta": {...}, "sections": [entry, ...]}`` where ``meta`` is the
writer's own JSON (counts, SH degree, codebook sizes, position box ...) and each entry is::

    {"name": str, "dtype": "uint16", "shape": [N, 3], "bits": 12 | null,
     "filters": ["delta", "shuffle"], "codec": "zstd" | "raw",
     "offset": int, "length": int, "raw_length": int, "crc32": int}

``offset`` counts from the first payload byte, ``length`` is the stored size, ``crc32`` covers the
stored bytes. A payload is decoded as: decompress (codec) -> exactly ``raw_length`` bytes -> split off
the "backref" codes or the "bitlen" lengths -> unshuffle / unpack bits (when ``bits`` is set) / put
the "bitlen" bits together -> resolve "backref" -> reshape to ``shape`` -> undo "delta".

- ``bits``: the elements are non-negative integers below 2**bits (1..32), packed LSB-first into a
  continuous bit stream (element i occupies bits [i*bits, (i+1)*bits) of the stream; the last byte is
  zero-padded). ``dtype`` is then the unsigned type the reader returns.
- ``"delta"`` (unsigned integer dtypes): element i stores x[i] - x[i-1] modulo 2**(8*itemsize) along
  axis 0 (x[-1] = 0). Turns sorted or smooth streams into small numbers.
- ``"shuffle"`` (itemsize > 1): byte planes are stored one after the other (all first bytes, then all
  second bytes, ...), so that the constant high bytes of small numbers form long runs for zstd.
- ``"backref"`` (unsigned integer dtypes, version 2, not with "delta"): the flattened array x of n
  elements is stored as n code bytes r followed by the literals: r[i] = k (1..255) says x[i] = x[i-k]
  (k <= i), r[i] = 0 that x[i] is the next literal. The literals (the x[i] with r[i] = 0, in order)
  are stored as the section's elements would be (bit-packed at ``bits``, else the dtype's bytes,
  shuffled with "shuffle"), so ``raw_length`` = n + the literals' bytes. The writer points each
  element at its most recent equal element within 255 places: codebook indices of neighbouring
  Gaussians often repeat, which bit-packing hides from zstd. It drops "backref" from a section where
  the section is not smaller with it.
- ``"bitlen"`` (unsigned integer dtypes, version 2, not with "backref", "shuffle" or ``bits``): the
  flattened array of n elements is stored as n bytes L[i] = bit length of x[i] (0 for 0, at most
  8 * itemsize), then one bit stream (LSB-first, the last byte zero-padded) holding, element after
  element, the low L[i] - 1 bits of x[i] (its top bit is the implicit 1). zstd codes the skewed
  lengths; the bits below the top one are near-random and cost what they are. Made for delta-coded
  sorted codes (the positions' Morton deltas), whose byte planes mix lengths. Where it does not make
  the section smaller, the writer stores it with "shuffle" instead.
- ``codec``: "zstd" (one frame, content size in its header) or "raw". The writer stores a section raw
  when zstd does not make it smaller.

The version is the lowest that describes the file: a file without "backref" or "bitlen" is written
as version 1, byte for byte as before, and a version-1 file that names either is refused.

The reader checks every length against the buffer before it allocates, so a truncated file, a lying
header, a corrupted payload or an absurd size raises ``VqpFormatError`` with what is wrong. The arrays
a file decodes to are bounded by its own size (``decode_limit``: at most ``DECODE_RATIO`` times the
file, at least ``DECODE_FLOOR_BYTES``, never more than ``max_decoded_bytes``), so a decompression bomb
is refused before it inflates; a manifest nested deeper than ``MAX_MANIFEST_DEPTH`` is a format error.

Splat files (kind "splats") hold the sections described in ``decode_splats``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NoReturn

import numpy as np

MAGIC = b"\x89VQP\r\n\x1a\n"
VERSION = 2  # the newest version this module reads and writes
VERSIONS = (1, 2)  # versions this reader accepts
FILTER_VERSION = {"delta": 1, "shuffle": 1, "backref": 2, "bitlen": 2}  # the first version with each filter
BACKREF_WINDOW = 255  # "backref": farthest element a code byte can point back to
_HEADER = struct.Struct("<8sHHII")  # magic, version, flags, manifest length, manifest crc32
HEADER_BYTES = _HEADER.size  # 20
MAX_MANIFEST_BYTES = 16 << 20  # a manifest larger than 16 MiB is not a vqpress manifest
MAX_MANIFEST_DEPTH = 32  # JSON nesting of a manifest (a vqpress manifest is 4 levels deep)
DEFAULT_MAX_DECODED_BYTES = 8 << 30  # refuse to inflate a file into more than 8 GiB of arrays
DECODE_RATIO = 256  # ... or into more than 256 bytes of arrays per byte of the file (splat files: 3-4)
DECODE_FLOOR_BYTES = 64 << 20  # ... except that any file may decode to 64 MiB
ZSTD_LEVEL = 19  # default zstd level of write_vqp (1..22)
LARGE_SECTION_BYTES = 4 << 20  # sections larger than this (before compression) ...
LARGE_SECTION_LEVEL = 12  # ... are compressed at most at this level
# What the levels cost, measured on the lego scene tiled to 300k and 3M Gaussians (default preset,
# one Lloyd iteration, 2-core CPU): at 300k, where every section is under 4 MiB, level 19 writes
# 2,995,463 B of sections in 4.9 s of CPU and level 12 3,049,824 B (+1.8 %) in 0.53 s; the index
# sections gain 1.6-3.3 % at 19, the codebooks 1-3.5 %. At 3M the positions (24 MB of Morton
# deltas) are 6,046,549 B at level 12 and 6,049,064 B at 19 (no gain, 11x the time: 1.6 vs 17.5 s),
# the opacities (3 MB, so level 19) 2,111,172 B against 2,123,228 B at 12 (-0.6 %, 2.4 vs 0.4 s).
# Level 9 adds 0.0-0.3 % to level 12 at about half its time. The quantizer encodes sections while
# k-means runs (quantize_splats(encode_ahead=True)), so only the last attribute's level is waited on.
PARALLEL_ENCODE_BYTES = 1 << 20  # files with more data than this encode their sections on threads

KINDS = ("splats", "field")
CODECS = ("zstd", "raw")
FILTERS = tuple(FILTER_VERSION)
DTYPES = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float16", "float32", "float64")
_PACK_CHUNK = 1 << 20  # values per chunk when bit-packing (a multiple of 8): bounds temporary memory


class VqpFormatError(ValueError):
    """The bytes are not a valid .vqp file (truncated, corrupted, lying header, unsupported encoding)."""


def decode_limit(
    stored_bytes: int,
    ratio: int = DECODE_RATIO,
    floor: int = DECODE_FLOOR_BYTES,
    cap: int = DEFAULT_MAX_DECODED_BYTES,
) -> int:
    """Bytes a compressed file of ``stored_bytes`` may decode to: max(floor, ratio x size), at most cap."""
    return min(int(cap), max(int(floor), int(ratio) * int(stored_bytes)))


def json_depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1), without recursion."""
    deepest, stack = 0, [(doc, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d + 1)
            stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return deepest


def loads_json(text: str | bytes, max_depth: int = MAX_MANIFEST_DEPTH) -> Any:
    """``json.loads`` for untrusted text: nesting deeper than ``max_depth`` raises ``ValueError``
    (never ``RecursionError``); invalid JSON raises ``json.JSONDecodeError`` (a ``ValueError``)."""
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested too deeply to parse (the limit is {max_depth} levels)") from None
    depth = json_depth(doc)
    if depth > max_depth:
        raise ValueError(f"JSON nested {depth} levels deep, over the limit of {max_depth}")
    return doc


@dataclass(frozen=True)
class Section:
    """One named array of a .vqp file and how to store it.

    ``bits``: bit-pack the (non-negative integer) values at this width, 1..32; None stores the
    array's own bytes. ``codec``: "zstd" compresses the section (kept raw when that is not smaller),
    "raw" never does. ``filters``: "delta", "backref" and/or "shuffle", applied in this order (see
    module doc; "backref" excludes "delta").
    """

    name: str
    data: np.ndarray
    bits: int | None = None
    codec: Literal["zstd", "raw"] = "zstd"
    filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class VqpFile:
    kind: str
    version: int
    manifest: dict[str, Any]  # the writer's meta dict
    sections: dict[str, np.ndarray]
    section_bytes: dict[str, int] = field(default_factory=dict)  # stored (on-disk) bytes per section
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # the raw manifest entry per section
    name: str = "<bytes>"  # the file's name, for messages


# -- bit packing -----------------------------------------------------------------------------------
def bits_for(k: int) -> int:
    """Bits needed to store indices 0..k-1: ceil(log2 k), at least 1."""
    if k < 1:
        raise ValueError(f"need at least one symbol, got k={k}")
    return max(1, math.ceil(math.log2(k)))


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers < 2**bits (1..32) LSB-first into ceil(n*bits/8) bytes."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in 1..32, got {bits}")
    v = np.asarray(values).reshape(-1)
    if v.size and (v.dtype.kind not in "ui"):
        raise ValueError(f"bit-packing needs integers, got {v.dtype}")
    if v.size and (int(v.min()) < 0 or int(v.max()) >= (1 << bits)):
        raise ValueError(f"values out of range for {bits} bits: min {int(v.min())}, max {int(v.max())}")
    v = v.astype("<u4", copy=False)
    out = bytearray()
    for s in range(0, v.size, _PACK_CHUNK):
        chunk = v[s : s + _PACK_CHUNK]
        planes = np.unpackbits(chunk.view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")[:, :bits]
        out += np.packbits(planes.reshape(-1), bitorder="little").tobytes()
    return bytes(out)


def unpack_bits(buf: bytes | np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of ``pack_bits``: n values as uint32. ``buf`` must hold exactly ceil(n*bits/8) bytes."""
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in 1..32, got {bits}")
    raw = np.frombuffer(buf, np.uint8) if not isinstance(buf, np.ndarray) else buf.reshape(-1)
    if raw.size != (n * bits + 7) // 8:
        raise ValueError(f"{n} values at {bits} bits need {(n * bits + 7) // 8} bytes, got {raw.size}")
    out = np.empty(n, "<u4")
    step = _PACK_CHUNK  # a multiple of 8 values = a whole number of bytes
    for s in range(0, n, step):
        m = min(step, n - s)
        b0 = s * bits // 8
        planes = np.unpackbits(raw[b0 : b0 + (m * bits + 7) // 8], bitorder="little")[: m * bits]
        full = np.zeros((m, 32), np.uint8)
        full[:, :bits] = planes.reshape(m, bits)
        out[s : s + m] = np.packbits(full, axis=1, bitorder="little").view("<u4").reshape(m)
    return out


# -- filters ---------------------------------------------------------------------------------------
def _delta(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    if a.shape[0] > 1:
        out[1:] = a[1:] - a[:-1]  # unsigned: wraps modulo 2**(8*itemsize)
    return out


def _undelta(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a, axis=0, dtype=a.dtype)  # unsigned cumsum wraps, the exact inverse of _delta


def _shuffle(b: bytes, itemsize: int) -> bytes:
    return np.frombuffer(b, np.uint8).reshape(-1, itemsize).T.tobytes()


def _unshuffle(b: bytes, itemsize: int) -> bytes:
    return np.frombuffer(b, np.uint8).reshape(itemsize, -1).T.tobytes()


def backref_codes(x: np.ndarray, window: int = BACKREF_WINDOW) -> np.ndarray:  # [n] -> [n] uint8
    """The "backref" codes of a flat array: r[i] = i - j for the last j < i with x[j] == x[i] when
    i - j <= window (1..255), else 0 (x[i] is a literal)."""
    if not 1 <= window <= 255:
        raise ValueError(f"backref window must be in 1..255, got {window}")
    n = x.shape[0]
    if x.dtype.kind == "u" and x.dtype.itemsize > 2 and n and int(x.max()) < 1 << 16:
        x = x.astype(np.uint16)  # the same stable order, by a radix sort (codebook indices are < 2^16)
    order = np.argsort(x, kind="stable")  # equal values together, each run in file order
    repeat = x[order[1:]] == x[order[:-1]]  # order[k+1] holds the value that order[k] held before it
    dist = np.zeros(n, np.int64)
    dist[order[1:][repeat]] = order[1:][repeat] - order[:-1][repeat]
    return np.where(dist <= window, dist, 0).astype(np.uint8)


def backref_resolve(codes: np.ndarray, literals: np.ndarray) -> np.ndarray:
    """Inverse of the "backref" split: [n] uint8 codes and the literals -> the [n] values. The
    caller has checked that codes[i] <= i and that there is one literal per zero code."""
    n = codes.shape[0]
    it = np.int32 if n < 2**31 else np.int64
    pos = np.arange(n, dtype=it)
    src = pos - codes.astype(it)  # each element's source; a literal is its own source
    for _ in range(64):  # pointer jumping: a chain of length c resolves in ceil(log2 c) rounds
        nxt = src[src]
        if np.array_equal(nxt, src):
            break
        src = nxt
    rank = np.cumsum(codes == 0, dtype=it) - 1  # literal i is literals[rank[i]]
    return literals[rank[src]]


_BITLEN_CHUNK = 1 << 18  # elements per chunk of the "bitlen" coder: bounds its [chunk, 64] bit matrix


def _bit_lengths(v: np.ndarray) -> np.ndarray:  # [n] uint64 -> [n] uint8: 0 for 0, else floor(log2 v) + 1
    lengths = np.zeros(v.size, np.uint8)
    for s in (32, 16, 8, 4, 2, 1):
        high = v >> np.uint64(s)
        m = high != 0
        v = np.where(m, high, v)
        lengths += m.astype(np.uint8) * np.uint8(s)
    return lengths + (v != 0).astype(np.uint8)


def bitlen_encode(x: np.ndarray) -> bytes:
    """The "bitlen" layout of a flat unsigned array: n length bytes, then the bits below each top bit.

    The bits are laid into 64-bit words: element i's low L[i] - 1 bits start at bit offset
    sum(L[:i] - 1) of the stream, so each lands in one word or straddles two (fields never overlap,
    so a word is the sum of its fields)."""
    x = np.ascontiguousarray(x.reshape(-1), x.dtype.newbyteorder("<"))
    lengths = np.zeros(x.size, np.uint8)
    parts: list[np.ndarray] = []
    carry = np.zeros(1, np.uint64)  # the word being filled (bits below ``start`` mod 64)
    start = 0  # bits of the stream so far
    for s0 in range(0, x.size, _BITLEN_CHUNK):
        v = x[s0 : s0 + _BITLEN_CHUNK].astype(np.uint64)
        top = _bit_lengths(v)
        lengths[s0 : s0 + v.size] = top
        low = np.maximum(top.astype(np.int64) - 1, 0)  # bits stored per element, 0..63
        payload = v & ((np.uint64(1) << low.astype(np.uint64)) - np.uint64(1))
        off = start + np.cumsum(low) - low  # each element's first bit in the stream
        end = start + int(low.sum())
        base = start >> 6
        words = np.zeros(((end + 63) >> 6) - base + 1, np.uint64)
        w = (off >> 6) - base
        sh = (off & 63).astype(np.uint64)
        first = np.flatnonzero(np.diff(w, prepend=-1))  # w is sorted: each word's elements are a run
        words[w[first]] = np.add.reduceat(payload << sh, first) if v.size else 0
        spill = np.flatnonzero(sh.astype(np.int64) + low > 64)  # at most one per word boundary
        words[w[spill] + 1] += payload[spill] >> (np.uint64(64) - sh[spill])
        words[0] += carry[0]
        full = (end >> 6) - base  # words complete
        parts.append(words[:full])
        carry = words[full : full + 1]
        start = end
    parts.append(carry)
    stream = np.concatenate(parts).astype("<u8").tobytes()[: (start + 7) // 8]
    return lengths.tobytes() + stream


def bitlen_stream_bytes(lengths: np.ndarray) -> int:
    """Bytes of the bit stream that follows ``lengths`` in the "bitlen" layout."""
    return (int(np.maximum(lengths.astype(np.int64) - 1, 0).sum()) + 7) // 8


def bitlen_decode(lengths: np.ndarray, stream: bytes | np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of ``bitlen_encode``: [n] lengths (each <= 8 * itemsize) and the bit stream (exactly
    ``bitlen_stream_bytes(lengths)`` bytes, checked by the caller) -> the [n] values of ``dtype``."""
    dt = np.dtype(dtype).newbyteorder("<")
    width = 8 * dt.itemsize
    raw = np.frombuffer(stream, np.uint8) if not isinstance(stream, np.ndarray) else stream
    out = np.zeros(lengths.size, dt)
    start = 0  # bit offset of the chunk's first element
    for s in range(0, lengths.size, _BITLEN_CHUNK):
        top = lengths[s : s + _BITLEN_CHUNK].astype(np.int64)
        low = np.maximum(top - 1, 0)
        nbits = int(low.sum())
        b0 = start // 8
        flat = np.unpackbits(raw[b0 : (start + nbits + 7) // 8 + 1], bitorder="little")[start % 8 : start % 8 + nbits]
        planes = np.zeros((top.size, width), np.uint8)
        planes[np.arange(width)[None, :] < low[:, None]] = flat
        planes[np.arange(top.size)[top > 0], top[top > 0] - 1] = 1  # the implicit top bit
        out[s : s + top.size] = np.packbits(planes, axis=1, bitorder="little").view(dt).reshape(-1)
        start += nbits
    return out


# -- writer ----------------------------------------------------------------------------------------
def _encode_section(sec: Section, level: int) -> tuple[dict[str, Any], bytes]:
    """Encode a section; one with "backref" or "bitlen" is also encoded without (on a second
    thread when it is large) and stored the smaller way."""
    if not ("backref" in sec.filters or "bitlen" in sec.filters):
        return _encode_as(sec, level)
    plain = tuple(f for f in sec.filters if f not in ("backref", "bitlen"))
    if "bitlen" in sec.filters:
        plain += ("shuffle",)
    if int(np.asarray(sec.data).nbytes) > PARALLEL_ENCODE_BYTES:
        with ThreadPoolExecutor(max_workers=1) as pool:
            alt = pool.submit(_encode_as, replace(sec, filters=plain), level)
            entry, stored = _encode_as(sec, level)
            other = alt.result()
    else:
        entry, stored = _encode_as(sec, level)
        other = _encode_as(replace(sec, filters=plain), level)
    if other[0]["length"] <= len(stored):  # kept only where they make it smaller
        return other
    return entry, stored


def _encode_as(sec: Section, level: int) -> tuple[dict[str, Any], bytes]:
    import zstandard

    if not sec.name or not isinstance(sec.name, str):
        raise ValueError(f"section name must be a non-empty string, got {sec.name!r}")
    if sec.codec not in CODECS:
        raise ValueError(f"section '{sec.name}': unknown codec {sec.codec!r} (expected one of {CODECS})")
    bad = [f for f in sec.filters if f not in FILTERS]
    if bad:
        raise ValueError(f"section '{sec.name}': unknown filters {bad} (expected {FILTERS})")
    a = np.ascontiguousarray(sec.data)
    if a.dtype.name not in DTYPES:
        raise ValueError(f"section '{sec.name}': dtype {a.dtype} is not storable (use one of {DTYPES})")
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    if "delta" in sec.filters:
        if a.dtype.kind != "u" or a.ndim == 0:
            raise ValueError(f"section '{sec.name}': the delta filter needs an unsigned integer array")
        a = _delta(a)
    codes = b""
    values = a
    if "bitlen" in sec.filters:
        if a.dtype.kind != "u" or sec.bits is not None or {"backref", "shuffle"} & set(sec.filters):
            raise ValueError(
                f"section '{sec.name}': the bitlen filter needs an unsigned integer array, without bits, "
                "backref or shuffle"
            )
    if "backref" in sec.filters:
        if a.dtype.kind != "u" or "delta" in sec.filters:
            raise ValueError(f"section '{sec.name}': the backref filter needs an unsigned integer array, without delta")
        r = backref_codes(a.reshape(-1))
        codes, values = r.tobytes(), a.reshape(-1)[r == 0]
    if sec.bits is not None:
        if a.dtype.kind not in "u":
            raise ValueError(f"section '{sec.name}': bit-packing needs an unsigned integer dtype, got {a.dtype}")
        raw = pack_bits(values, sec.bits)
    elif "bitlen" in sec.filters:
        raw = bitlen_encode(values)
    else:
        raw = values.tobytes()
    itemsize = a.dtype.itemsize
    if "shuffle" in sec.filters and sec.bits is None and itemsize > 1:
        raw = _shuffle(raw, itemsize)
    raw = codes + raw
    codec = sec.codec
    stored = raw
    if codec == "zstd":
        # Level 19 costs ~10 s on the 30 MB of streams of a 3M-Gaussian scene for a few % of size:
        # large sections drop to LARGE_SECTION_LEVEL (never above the level asked for; see there).
        lvl = level if len(raw) <= LARGE_SECTION_BYTES else min(level, LARGE_SECTION_LEVEL)
        comp = zstandard.ZstdCompressor(level=lvl, write_content_size=True).compress(raw)
        if len(comp) < len(raw):
            stored = comp
        else:
            codec = "raw"
    entry = {
        "name": sec.name,
        "dtype": a.dtype.name,
        "shape": [int(s) for s in a.shape],
        "bits": sec.bits,
        "filters": list(sec.filters),
        "codec": codec,
        "raw_length": len(raw),
        "length": len(stored),
        "crc32": zlib.crc32(stored),
    }
    return entry, stored


@dataclass(frozen=True)
class EncodedSection:
    """A section as it is stored: its manifest entry (without ``offset``) and its payload bytes."""

    entry: dict[str, Any]
    payload: bytes


def encode_section(sec: Section, level: int = ZSTD_LEVEL) -> EncodedSection:
    """Encode one section exactly as ``write_vqp`` does (filters, bit-packing, zstd at ``level``,
    sections over ``LARGE_SECTION_BYTES`` at most at ``LARGE_SECTION_LEVEL``). Sections are
    independent: a writer may encode each as soon as its data is ready and ``assemble_vqp`` them."""
    entry, stored = _encode_section(sec, level)
    return EncodedSection(entry, stored)


def assemble_vqp(kind: str, manifest: Mapping[str, Any], encoded: Sequence[EncodedSection]) -> bytes:
    """The .vqp bytes of sections encoded by ``encode_section``, in the order given."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (expected one of {KINDS})")
    names = [e.entry["name"] for e in encoded]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate section names in {names}")
    entries, offset = [], 0
    for e in encoded:
        entries.append({**e.entry, "offset": offset})
        offset += len(e.payload)
    doc = {"kind": kind, "meta": dict(manifest), "sections": entries}
    mbytes = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if len(mbytes) > MAX_MANIFEST_BYTES:
        raise ValueError(f"manifest of {len(mbytes)} bytes exceeds {MAX_MANIFEST_BYTES}")
    version = max([1] + [FILTER_VERSION[f] for e in entries for f in e["filters"]])
    header = _HEADER.pack(MAGIC, version, 0, len(mbytes), zlib.crc32(mbytes))
    return b"".join([header, mbytes, *(e.payload for e in encoded)])


def write_vqp(kind: str, manifest: Mapping[str, Any], sections: Sequence[Section], *, level: int = ZSTD_LEVEL) -> bytes:
    """Serialize sections plus a JSON-able ``manifest`` (stored as "meta") into .vqp bytes.

    ``kind`` is "splats" or "field"; ``level`` is the zstd level (1..22, default 19).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (expected one of {KINDS})")
    names = [s.name for s in sections]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate section names in {names}")
    total = sum(int(np.asarray(s.data).nbytes) for s in sections)
    if len(sections) > 1 and total > PARALLEL_ENCODE_BYTES:
        # zstd and numpy release the GIL: sections encode side by side, each exactly as alone.
        with ThreadPoolExecutor(max_workers=min(len(sections), os.cpu_count() or 1)) as pool:
            encoded = list(pool.map(lambda sec: encode_section(sec, level), sections))
    else:
        encoded = [encode_section(sec, level) for sec in sections]
    return assemble_vqp(kind, manifest, encoded)


# -- reader ----------------------------------------------------------------------------------------
def _element_bytes(n: int, bits: int | None, itemsize: int) -> int:
    """Bytes of n elements in a value stream: bit-packed at ``bits``, else ``itemsize`` each."""
    return (n * bits + 7) // 8 if bits is not None else n * itemsize


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_entry(e: Any, i: int, fail: Any, version: int) -> None:
    if not isinstance(e, dict):
        fail(f"section entry {i} is not an object")
    need = {"name": str, "dtype": str, "shape": list, "filters": list, "codec": str}
    for key, typ in need.items():
        if not isinstance(e.get(key), typ):
            fail(f"section entry {i}: field '{key}' is missing or not a {typ.__name__}")
    for key in ("offset", "length", "raw_length", "crc32"):
        if not _is_int(e.get(key)) or e[key] < 0:
            fail(f"section '{e['name']}': field '{key}' is missing or not a non-negative integer")
    if e["codec"] not in CODECS:
        fail(f"section '{e['name']}': unknown codec {e['codec']!r} (this reader knows {CODECS})")
    if e["dtype"] not in DTYPES:
        fail(f"section '{e['name']}': unsupported dtype {e['dtype']!r}")
    if not all(_is_int(s) and 0 <= s < (1 << 40) for s in e["shape"]) or len(e["shape"]) > 8:
        fail(f"section '{e['name']}': invalid shape {e['shape']}")
    if any(f not in FILTERS for f in e["filters"]):
        fail(f"section '{e['name']}': unknown filters {e['filters']} (this reader knows {FILTERS})")
    bits = e.get("bits")
    if bits is not None:
        if not _is_int(bits) or not 1 <= bits <= 32:
            fail(f"section '{e['name']}': bit width {bits!r} is outside 1..32")
        if not e["dtype"].startswith("uint"):
            fail(f"section '{e['name']}': bit-packed sections must have an unsigned dtype, got {e['dtype']}")
    if "delta" in e["filters"] and not e["dtype"].startswith("uint"):
        fail(f"section '{e['name']}': the delta filter needs an unsigned dtype, got {e['dtype']}")
    newer = [f for f in e["filters"] if FILTER_VERSION[f] > version]
    if newer:
        since = FILTER_VERSION[newer[0]]
        fail(f"section '{e['name']}': filter {newer[0]!r} needs .vqp version {since}, the file is {version}")
    if "backref" in e["filters"]:
        if not e["dtype"].startswith("uint") or "delta" in e["filters"]:
            fail(f"section '{e['name']}': the backref filter needs an unsigned dtype and no delta filter")
    if "bitlen" in e["filters"]:
        if not e["dtype"].startswith("uint") or bits is not None or {"backref", "shuffle"} & set(e["filters"]):
            fail(f"section '{e['name']}': the bitlen filter needs an unsigned dtype, no bits, backref or shuffle")


@dataclass(frozen=True)
class VqpHeader:
    """The fixed header and the manifest of a .vqp file: what it holds, without its payloads."""

    kind: str  # "splats" | "field"
    version: int
    meta: dict[str, Any]  # the writer's meta dict
    sections: list[dict[str, Any]]  # the manifest's section entries, not yet checked
    payload_offset: int  # where the first section's bytes start: HEADER_BYTES + manifest length


def parse_header(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> VqpHeader:
    """The header and manifest at the start of ``data`` (the payloads may be missing: only the first
    ``HEADER_BYTES`` + manifest length bytes are read). Raises ``VqpFormatError`` naming the problem.
    The one parser of the header: ``read_vqp`` and every check of a stored file's kind go through it."""

    def fail(msg: str) -> NoReturn:
        raise VqpFormatError(f"{name}: {msg}")

    buf = memoryview(data).cast("B")
    total = len(buf)
    if total < HEADER_BYTES:
        fail(f"file is {total} bytes, shorter than the {HEADER_BYTES}-byte .vqp header (truncated?)")
    magic, version, flags, mlen, mcrc = _HEADER.unpack(buf[:HEADER_BYTES])
    if magic != MAGIC:
        fail(f"not a .vqp file (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version not in VERSIONS:
        known = f"{VERSIONS[0]}..{VERSIONS[-1]}"
        fail(f"unsupported .vqp version {version} (this reader handles versions {known}); upgrade vqpress")
    if flags != 0:
        fail(f"unknown header flags 0x{flags:04x}")
    if mlen > MAX_MANIFEST_BYTES:
        fail(f"manifest length {mlen} exceeds the limit of {MAX_MANIFEST_BYTES} bytes")
    if HEADER_BYTES + mlen > total:
        fail(f"manifest of {mlen} bytes runs past the end of the {total}-byte file (truncated?)")
    mbytes = bytes(buf[HEADER_BYTES : HEADER_BYTES + mlen])
    if zlib.crc32(mbytes) != mcrc:
        fail("manifest checksum mismatch (the file is corrupted)")
    try:
        doc = loads_json(mbytes.decode("utf-8"), MAX_MANIFEST_DEPTH)
    except UnicodeDecodeError as exc:
        fail(f"manifest is not valid UTF-8 JSON: {exc}")
    except ValueError as exc:  # invalid JSON, or nested deeper than MAX_MANIFEST_DEPTH
        fail(f"manifest is not valid JSON or nested too deeply: {exc}")
    if not isinstance(doc, dict) or not isinstance(doc.get("sections"), list):
        fail("manifest must be an object with a 'sections' list")
    kind = doc.get("kind")
    if kind not in KINDS:
        fail(f"unknown kind {kind!r} (expected one of {KINDS})")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        fail("manifest 'meta' must be an object")
    return VqpHeader(kind, version, meta, doc["sections"], HEADER_BYTES + mlen)


def read_header(path: str | os.PathLike[str], name: str | None = None) -> VqpHeader:
    """``parse_header`` of a file, reading only its header and manifest (at most 16 MiB)."""
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
        mlen = _HEADER.unpack(head)[3] if len(head) == HEADER_BYTES else 0
        rest = f.read(min(mlen, MAX_MANIFEST_BYTES))
    return parse_header(head + rest, os.fspath(path) if name is None else name)


def read_vqp(
    data: bytes | bytearray | memoryview,
    name: str = "<bytes>",
    *,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    decode_ratio: int = DECODE_RATIO,
) -> VqpFile:
    """Parse and validate .vqp bytes. Raises ``VqpFormatError`` naming the problem.

    The decoded arrays may total at most ``decode_limit(len(data), decode_ratio)`` bytes, and never
    more than ``max_decoded_bytes`` (default 8 GiB): checked from the manifest, before decoding.
    """

    def fail(msg: str) -> None:
        raise VqpFormatError(f"{name}: {msg}")

    buf = memoryview(data).cast("B")
    total = len(buf)
    header = parse_header(buf, name)
    kind, version, meta = header.kind, header.version, header.meta
    base = header.payload_offset
    payload_len = total - base
    entries = header.sections
    # Validate every entry and every length before decoding (and allocating) anything.
    budget = decode_limit(total, decode_ratio, DECODE_FLOOR_BYTES, max_decoded_bytes)
    expected_offset, decoded_total, seen = 0, 0, set()
    for i, e in enumerate(entries):
        _check_entry(e, i, fail, version)
        if e["name"] in seen:
            fail(f"duplicate section name '{e['name']}'")
        seen.add(e["name"])
        if e["offset"] != expected_offset:
            fail(f"section '{e['name']}' starts at {e['offset']}, expected {expected_offset} (lying offset)")
        if e["offset"] + e["length"] > payload_len:
            fail(
                f"section '{e['name']}' ({e['length']} bytes at {e['offset']}) runs past the end of the "
                f"{payload_len}-byte payload (truncated?)"
            )
        expected_offset += e["length"]
        n = math.prod(e["shape"])
        itemsize = np.dtype(e["dtype"]).itemsize
        want_raw = _element_bytes(n, e["bits"], itemsize)
        work = 0  # bytes a decoder needs besides the raw bytes and the array
        if "backref" in e["filters"]:  # n code bytes, then 1..n literals (element 0 is one)
            least, most = n + _element_bytes(min(n, 1), e["bits"], itemsize), n + want_raw
            if not least <= e["raw_length"] <= most:
                fail(
                    f"section '{e['name']}': raw length {e['raw_length']} does not fit {n} backref codes and "
                    f"1..{n} literals of {e['dtype']} (expected {least}..{most})"
                )
            work = 8 * n  # the resolver's source and rank arrays
        elif "bitlen" in e["filters"]:  # n lengths, then up to 8 * itemsize - 1 bits per element
            most = n + (n * (8 * itemsize - 1) + 7) // 8
            if not n <= e["raw_length"] <= most:
                fail(
                    f"section '{e['name']}': raw length {e['raw_length']} does not fit {n} bitlen lengths and "
                    f"their bits of {e['dtype']} (expected {n}..{most})"
                )
            work = 9 * e["raw_length"] + 8 * itemsize * min(n, _BITLEN_CHUNK)  # unpacked bits, a chunk's planes
        elif e["raw_length"] != want_raw:
            fail(
                f"section '{e['name']}': raw length {e['raw_length']} does not match shape {e['shape']} "
                f"of {e['dtype']} (expected {want_raw})"
            )
        if e["codec"] == "raw" and e["length"] != e["raw_length"]:
            fail(f"section '{e['name']}': raw section of {e['length']} bytes, expected {e['raw_length']}")
        decoded_total += n * itemsize + e["raw_length"] + work
        if decoded_total > budget:
            fail(
                f"section '{e['name']}' takes the decoded size to {decoded_total:,} bytes, over the decode "
                f"limit of {budget:,} for a {total:,}-byte file (max({DECODE_FLOOR_BYTES:,}, {decode_ratio} x "
                f"the file), at most max_decoded_bytes = {max_decoded_bytes:,}): a lying shape or a "
                "decompression bomb"
            )
    if expected_offset != payload_len:
        fail(f"{payload_len - expected_offset} unexpected bytes after the last section")

    sections: dict[str, np.ndarray] = {}
    section_bytes: dict[str, int] = {}
    for e in entries:
        start = base + e["offset"]
        stored = buf[start : start + e["length"]]
        if zlib.crc32(stored) != e["crc32"]:
            fail(f"section '{e['name']}': checksum mismatch (the file is corrupted)")
        sections[e["name"]] = _decode_payload(bytes(stored), e, fail)
        section_bytes[e["name"]] = e["length"]
    return VqpFile(kind, version, meta, sections, section_bytes, {e["name"]: e for e in entries}, name)


def _decode_payload(stored: bytes, e: dict[str, Any], fail: Any) -> np.ndarray:
    import zstandard

    raw_len = e["raw_length"]
    if e["codec"] == "zstd":
        try:
            params = zstandard.get_frame_parameters(stored)
        except zstandard.ZstdError as exc:
            fail(f"section '{e['name']}': not a zstd frame ({exc})")
        if params.content_size != raw_len:
            fail(f"section '{e['name']}': zstd frame declares {params.content_size} bytes, expected {raw_len}")
        try:
            raw = zstandard.ZstdDecompressor().decompress(stored, max_output_size=raw_len)
        except zstandard.ZstdError as exc:
            fail(f"section '{e['name']}': zstd decompression failed ({exc})")
        if len(raw) != raw_len:
            fail(f"section '{e['name']}': decompressed to {len(raw)} bytes, expected {raw_len}")
    else:
        raw = stored
    dt = np.dtype(e["dtype"]).newbyteorder("<")
    shape = tuple(e["shape"])
    n = math.prod(shape)
    codes = None
    m = n  # elements stored in the value stream: all of them, or the backref literals
    if "backref" in e["filters"]:
        codes = np.frombuffer(raw, np.uint8, count=n)
        head = min(n, BACKREF_WINDOW)  # a code is at most 255: only the first elements can point out
        early = np.flatnonzero(codes[:head] > np.arange(head))
        if early.size:
            i = int(early[0])
            fail(f"section '{e['name']}': backref code {int(codes[i])} at element {i} points before the start")
        m = int(np.count_nonzero(codes == 0))
        if len(raw) - n != _element_bytes(m, e["bits"], dt.itemsize):
            fail(
                f"section '{e['name']}': {m} backref literals need {_element_bytes(m, e['bits'], dt.itemsize)} "
                f"bytes after the {n} codes, the section holds {len(raw) - n}"
            )
        raw = raw[n:]
    if "bitlen" in e["filters"]:
        lengths = np.frombuffer(raw, np.uint8, count=n)
        width = 8 * dt.itemsize
        if n and int(lengths.max()) > width:
            i = int(np.argmax(lengths > width))
            fail(f"section '{e['name']}': bitlen length {int(lengths[i])} at element {i} exceeds {width} bits")
        need = bitlen_stream_bytes(lengths)
        if len(raw) - n != need:
            fail(f"section '{e['name']}': bitlen lengths need {need} bytes of bits, the section holds {len(raw) - n}")
        arr = bitlen_decode(lengths, raw[n:], dt)
    elif e["bits"] is not None:
        vals = unpack_bits(raw, e["bits"], m)
        if dt.itemsize < 4 and m and int(vals.max()) > np.iinfo(dt).max:
            fail(f"section '{e['name']}': unpacked values do not fit {e['dtype']}")
        arr = vals.astype(dt)
    else:
        if "shuffle" in e["filters"] and dt.itemsize > 1:
            raw = _unshuffle(raw, dt.itemsize)
        arr = np.frombuffer(raw, dt).copy()
    if codes is not None:
        arr = backref_resolve(codes, arr)
    arr = arr.reshape(shape)
    if "delta" in e["filters"]:
        arr = _undelta(arr)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


# -- splat scenes ----------------------------------------------------------------------------------
SPLAT_ATTRIBUTES = {"dc": (3,), "scale": (3,), "rot": (4,)}  # codebook entry shapes; "sh" is (n_rest, 3)


def check_splats_layout(vqp: VqpFile) -> tuple[int, int]:
    """Validate a kind "splats" file's sections against its manifest; returns (N, SH degree).

    Sections: ``means_morton`` (uint64 [N]: the Morton code of B-bit fixed-point coordinates in the
    box ``meta.position.box_min/box_max``, B = ``meta.position.bits`` (1..16, 16 when absent), x in
    bit 3i+2, y in 3i+1, z in 3i; coordinate = box_min + q * (box_max - box_min) / (2^B - 1)) or
    ``means`` (float16/float32 [N,3]);
    ``opacities`` (uint8 [N] = round(255*sigmoid), or float16 [N] logits); ``<attr>_codebook``
    (float16 [K,...]) and ``<attr>_idx`` ([N], bit-packed, with "backref" or not) for attr in dc [K,3],
    sh [K,(d+1)^2-1,3] (absent at SH degree 0), scale [K,3] (log), rot [K,4] (w,x,y,z).

    Every value a decoder returns is checked finite here (positions, the box and its span, opacity
    logits, codebooks), so ``decode_splats`` and the server's decoder never produce NaN or inf.
    """
    name = vqp.name

    def fail(msg: str) -> NoReturn:
        raise VqpFormatError(f"{name}: {msg}")

    if vqp.kind != "splats":
        fail(f"expected a splats file, got kind {vqp.kind!r}")
    m, s = vqp.manifest, vqp.sections
    try:
        n = int(m["num_gaussians"])
        degree = int(m["sh_degree"])
        pos = m["position"]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        fail(f"splats manifest is missing or has an invalid field: {exc}")
    if not 0 <= degree <= 3 or n < 0:
        fail(f"invalid counts: N={n}, SH degree {degree} (expected 0..3)")
    n_rest = (degree + 1) ** 2 - 1

    def need(key: str, shape: tuple[int, ...], dtypes: tuple[type, ...]) -> np.ndarray:
        if key not in s:
            fail(f"splats file has no '{key}' section")
        a = s[key]
        if a.shape != shape or a.dtype not in [np.dtype(d) for d in dtypes]:
            fail(f"section '{key}' is {a.dtype} {a.shape}, expected {shape} of {dtypes}")
        return a

    def finite(key: str, a: np.ndarray) -> None:
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(np.count_nonzero(~np.isfinite(a)))
            fail(f"section '{key}' holds {bad} non-finite values (NaN or inf); the file is corrupt")

    if "means_morton" in s:
        try:
            if not isinstance(pos, dict):
                raise TypeError("'position' is not an object")
            lo = np.asarray(pos["box_min"], np.float64).reshape(3)
            hi = np.asarray(pos["box_max"], np.float64).reshape(3)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            fail(f"fixed-point positions need a valid box: {exc}")
        with np.errstate(over="ignore", invalid="ignore"):
            span = hi - lo
        f32 = float(np.finfo(np.float32).max)
        ok = np.isfinite(span).all() and (hi >= lo).all() and max(np.abs(lo).max(), np.abs(hi).max()) <= f32
        if not ok:  # NaN compares false: a NaN box fails here too
            fail(
                f"position box {lo.tolist()} .. {hi.tolist()} is not a finite float32 box "
                "(min <= max, a finite span); the file is corrupt"
            )
        bits = position_bits(m)
        codes = need("means_morton", (n,), (np.uint64,))
        if n and int(codes.max()) >= 1 << (3 * bits):
            fail(f"means_morton holds codes beyond {3 * bits} bits ({bits} bits per axis)")
    else:
        finite("means", need("means", (n, 3), (np.float16, np.float32)))
    finite("opacities", need("opacities", (n,), (np.uint8, np.float16)))
    widths: dict[str, tuple[int, ...]] = dict(SPLAT_ATTRIBUTES)
    if n_rest:
        widths["sh"] = (n_rest, 3)
    for attr, width in widths.items():
        if f"{attr}_codebook" not in s:
            fail(f"splats file has no '{attr}_codebook' section")
        cb = s[f"{attr}_codebook"]
        if cb.shape[1:] != width or cb.dtype != np.float16 or (n and cb.shape[0] == 0):
            fail(f"'{attr}' codebook is {cb.dtype} {cb.shape}, expected float16 [K, {width}]")
        finite(f"{attr}_codebook", cb)
        idx = need(f"{attr}_idx", (n,), (np.uint8, np.uint16, np.uint32))
        if n and int(idx.max()) >= cb.shape[0]:
            fail(f"'{attr}' index {int(idx.max())} is out of range of its {cb.shape[0]}-entry codebook")
    return n, degree


def _compact_bits(v: np.ndarray) -> np.ndarray:  # every third bit of v (from bit 0) -> 16-bit value
    v = v & np.uint64(0x1249249249249249)
    v = (v | (v >> np.uint64(2))) & np.uint64(0x10C30C30C30C30C3)
    v = (v | (v >> np.uint64(4))) & np.uint64(0x100F00F00F00F00F)
    v = (v | (v >> np.uint64(8))) & np.uint64(0x1F0000FF0000FF)
    v = (v | (v >> np.uint64(16))) & np.uint64(0x1F00000000FFFF)
    v = (v | (v >> np.uint64(32))) & np.uint64(0x1FFFFF)
    return v.astype(np.uint16)


def morton_decode16(codes: np.ndarray) -> np.ndarray:  # [N] uint64 -> [N, 3] uint16
    """Split 48-bit Morton codes into (x, y, z) with x in bit 3i+2, y in bit 3i+1, z in bit 3i."""
    c = codes.astype(np.uint64)
    return np.stack([_compact_bits(c >> np.uint64(2)), _compact_bits(c >> np.uint64(1)), _compact_bits(c)], axis=1)


def position_bits(manifest: dict[str, Any]) -> int:
    """Bits per axis of fixed-point positions (``meta.position.bits``; 16 when absent)."""
    pos = manifest.get("position")
    bits = pos.get("bits", 16) if isinstance(pos, dict) else 16
    if not _is_int(bits) or not 1 <= bits <= 16:
        raise VqpFormatError(f"position bits must be an integer in 1..16, got {str(bits)[:40]}")
    return int(bits)


def decode_splats(vqp: VqpFile) -> dict[str, np.ndarray]:
    """Decode a kind "splats" file into float32 arrays in the 3DGS parameterization.

    Returns ``means`` [N,3], ``quats`` [N,4] (w,x,y,z, unit norm), ``scales`` [N,3] (log),
    ``opacities`` [N] (logit), ``sh0`` [N,1,3], ``shN`` [N,(d+1)^2-1,3], in the file's (Morton) order.
    The sections are described in ``check_splats_layout``.
    """
    n, degree = check_splats_layout(vqp)
    m, s = vqp.manifest, vqp.sections
    n_rest = (degree + 1) ** 2 - 1
    if "means_morton" in s:
        lo = np.asarray(m["position"]["box_min"], np.float64)
        hi = np.asarray(m["position"]["box_max"], np.float64)
        q = morton_decode16(s["means_morton"]).astype(np.float64)
        means = (lo + q * ((hi - lo) / float((1 << position_bits(m)) - 1))).astype(np.float32)
    else:
        means = s["means"].astype(np.float32)
    op = s["opacities"]
    if op.dtype == np.uint8:
        a = np.clip(op.astype(np.float64) / 255.0, 0.5 / 255.0, 1.0 - 0.5 / 255.0)
        opacities = np.log(a / (1.0 - a)).astype(np.float32)
    else:
        opacities = op.astype(np.float32)

    def lookup(attr: str) -> np.ndarray:
        return s[f"{attr}_codebook"].astype(np.float32)[s[f"{attr}_idx"].astype(np.int64)]

    quats = lookup("rot")
    norm = np.linalg.norm(quats, axis=1, keepdims=True)
    quats = np.where(norm > 0, quats / np.maximum(norm, 1e-12), np.array([1, 0, 0, 0], np.float32))
    return {
        "means": means,
        "quats": quats.astype(np.float32),
        "scales": lookup("scale"),
        "opacities": opacities,
        "sh0": lookup("dc").reshape(n, 1, 3),
        "shN": lookup("sh").reshape(n, n_rest, 3) if n_rest else np.zeros((n, 0, 3), np.float32),
    }


def read_splats(path: str, **kw: Any) -> dict[str, np.ndarray]:
    """Read a .vqp splat file from disk and decode it (numpy arrays, see ``decode_splats``)."""
    with open(path, "rb") as f:
        return decode_splats(read_vqp(f.read(), name=str(path), **kw))


__all__ = [
    "DECODE_FLOOR_BYTES",
    "DECODE_RATIO",
    "MAGIC",
    "MAX_MANIFEST_DEPTH",
    "VERSION",
    "VERSIONS",
    "backref_codes",
    "backref_resolve",
    "bitlen_decode",
    "bitlen_encode",
    "EncodedSection",
    "Section",
    "VqpFile",
    "assemble_vqp",
    "encode_section",
    "VqpFormatError",
    "VqpHeader",
    "bits_for",
    "check_splats_layout",
    "decode_limit",
    "decode_splats",
    "json_depth",
    "loads_json",
    "pack_bits",
    "parse_header",
    "read_header",
    "read_splats",
    "morton_decode16",
    "position_bits",
    "read_vqp",
    "unpack_bits",
    "write_vqp",
]
