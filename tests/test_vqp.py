"""The .vqp container: exact round trips, exact bit packing, and every kind of damage rejected."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from dataclasses import replace

import numpy as np
import pytest
import zstandard
from conftest import REPO
from vqpress.vqp import (
    HEADER_BYTES,
    MAGIC,
    VERSION,
    Section,
    VqpFormatError,
    backref_codes,
    backref_resolve,
    bitlen_decode,
    bitlen_encode,
    pack_bits,
    read_header,
    read_vqp,
    unpack_bits,
    write_vqp,
)


def _pack_reference(values: np.ndarray, bits: int) -> bytes:
    """Bit by bit, the slow way: value i occupies stream bits [i*bits, (i+1)*bits), LSB first."""
    out = bytearray((len(values) * bits + 7) // 8)
    for i, v in enumerate(int(x) for x in values):
        for b in range(bits):
            if (v >> b) & 1:
                pos = i * bits + b
                out[pos // 8] |= 1 << (pos % 8)
    return bytes(out)


@pytest.mark.parametrize("bits", range(1, 33))
def test_pack_bits_matches_reference_and_round_trips(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for n in (0, 1, 7, 8, 9, 61):
        v = rng.integers(0, 1 << bits, n, dtype=np.uint64).astype(np.uint32)
        if n:
            v[0] = (1 << bits) - 1  # the extreme value is representable
        packed = pack_bits(v, bits)
        assert packed == _pack_reference(v, bits)
        np.testing.assert_array_equal(unpack_bits(packed, bits, n), v)


def test_pack_bits_large_stream_crosses_chunks() -> None:
    v = np.random.default_rng(0).integers(0, 1 << 13, (1 << 20) + 13, dtype=np.uint32)
    np.testing.assert_array_equal(unpack_bits(pack_bits(v, 13), 13, v.size), v)


def test_pack_bits_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        pack_bits(np.array([8], np.uint32), 3)
    with pytest.raises(ValueError, match="1..32"):
        pack_bits(np.array([1], np.uint32), 33)
    with pytest.raises(ValueError, match="bytes"):
        unpack_bits(b"\x00", 12, 2)


@pytest.mark.parametrize("codec", ["zstd", "raw"])
def test_round_trip_all_bit_widths(codec: str) -> None:
    rng = np.random.default_rng(1)
    sections = []
    for bits in range(1, 33):
        n = int(rng.integers(0, 500))
        dtype = np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32
        sections.append(
            Section(f"idx{bits}", rng.integers(0, 1 << bits, n, dtype=np.uint64).astype(dtype), bits, codec)
        )
    sections += [
        Section("f16", rng.normal(size=(40, 15, 3)).astype(np.float16), codec=codec, filters=("shuffle",)),
        Section("f32", rng.normal(size=(33, 3)).astype(np.float32), codec=codec),
        Section("f64", rng.normal(size=(5,)), codec=codec),
        Section("i16", rng.integers(-30000, 30000, (7, 2)).astype(np.int16), codec=codec),
        Section(
            "sorted",
            np.sort(rng.integers(0, 1 << 48, 300)).astype(np.uint64),
            codec=codec,
            filters=("delta", "shuffle"),
        ),
        Section("empty", np.zeros((0, 4), np.float16), codec=codec),
    ]
    meta = {"num_gaussians": 3, "nested": {"a": [1, 2]}}
    data = write_vqp("field", meta, sections)
    f = read_vqp(data)
    assert (f.kind, f.version, f.manifest) == ("field", 1, meta)  # the lowest version that describes it
    assert list(f.sections) == [s.name for s in sections]
    for s in sections:
        got = f.sections[s.name]
        assert got.dtype == s.data.dtype and got.shape == s.data.shape, s.name
        np.testing.assert_array_equal(got, s.data)
    assert sum(f.section_bytes.values()) == len(data) - HEADER_BYTES - struct.unpack_from("<I", data, 12)[0]
    if codec == "raw":
        assert all(e["codec"] == "raw" for e in f.entries.values())


def test_zstd_kept_only_where_it_pays() -> None:
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, 4096, dtype=np.uint8)
    zeros = np.zeros(4096, np.uint8)
    f = read_vqp(write_vqp("splats", {}, [Section("noise", noise), Section("zeros", zeros)]))
    assert f.entries["noise"]["codec"] == "raw" and f.section_bytes["noise"] == 4096
    assert f.entries["zeros"]["codec"] == "zstd" and f.section_bytes["zeros"] < 100


def test_bit_packed_size_is_ceil_log2k_bits() -> None:
    idx = np.random.default_rng(3).integers(0, 4096, 1000).astype(np.uint32)
    f = read_vqp(write_vqp("splats", {}, [Section("idx", idx, bits=12, codec="raw")]))
    assert f.section_bytes["idx"] == 1500


def test_writer_rejects_bad_sections() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        write_vqp("splats", {}, [Section("a", np.zeros(1, np.uint8)), Section("a", np.zeros(1, np.uint8))])
    with pytest.raises(ValueError, match="kind"):
        write_vqp("mesh", {}, [])
    with pytest.raises(ValueError, match="storable"):
        write_vqp("splats", {}, [Section("b", np.zeros(2, bool))])
    with pytest.raises(ValueError, match="unsigned"):
        write_vqp("splats", {}, [Section("f", np.zeros(2, np.float32), bits=8)])


def _backref_reference(x: np.ndarray, window: int = 255) -> np.ndarray:
    """The "backref" codes the slow way: the distance to the nearest earlier equal element, if within reach."""
    codes = np.zeros(len(x), np.uint8)
    for i in range(len(x)):
        for k in range(1, min(i, window) + 1):
            if x[i - k] == x[i]:
                codes[i] = k
                break
    return codes


@pytest.mark.parametrize("case", ["empty", "one", "constant", "distinct", "repeats", "reach"])
def test_backref_codes_match_reference_and_resolve(case: str) -> None:
    rng = np.random.default_rng(5)
    x = {
        "empty": np.zeros(0, np.uint32),
        "one": np.array([7], np.uint32),
        "constant": np.full(600, 3, np.uint32),
        "distinct": np.arange(700, dtype=np.uint32),
        "repeats": rng.integers(0, 40, 3000).astype(np.uint32),
        # a value seen again exactly 255 and 256 places later: the first is a reference, the second a literal
        "reach": np.concatenate([[1], np.arange(2, 256), [1], np.arange(300, 555), [1]]).astype(np.uint32),
    }[case]
    codes = backref_codes(x)
    np.testing.assert_array_equal(codes, _backref_reference(x))
    np.testing.assert_array_equal(backref_resolve(codes, x[codes == 0]), x)
    if case == "reach":
        assert codes[255] == 255 and codes[-1] == 0


@pytest.mark.parametrize("codec", ["zstd", "raw"])
def test_backref_round_trips_with_bits_and_shuffle_and_writes_version_2(codec: str) -> None:
    rng = np.random.default_rng(6)
    runs = np.repeat(rng.integers(0, 4096, 2000), rng.integers(1, 4, 2000))  # neighbours repeat
    sections = [
        Section("packed", runs.astype(np.uint32), bits=12, codec=codec, filters=("backref",)),
        Section("u16", runs.astype(np.uint16), codec=codec, filters=("backref", "shuffle")),
        Section("grid", rng.integers(0, 3, (50, 7)).astype(np.uint8), codec=codec, filters=("backref",)),
        Section("empty", np.zeros(0, np.uint32), bits=5, codec=codec, filters=("backref",)),
        Section("plain", runs.astype(np.uint32), bits=12, codec=codec),
    ]
    data = write_vqp("splats", {}, sections)
    f = read_vqp(data)
    assert f.version == 2
    for s in sections:
        assert f.sections[s.name].dtype == s.data.dtype and f.sections[s.name].shape == s.data.shape, s.name
        np.testing.assert_array_equal(f.sections[s.name], s.data)
    # backref stays only where it makes the section smaller
    without = read_vqp(write_vqp("splats", {}, [replace(s, filters=s.filters[1:]) for s in sections[:-1]]))
    for name, n in without.section_bytes.items():
        assert f.section_bytes[name] <= n, name
        assert ("backref" in f.entries[name]["filters"]) == (f.section_bytes[name] < n), name
    if codec == "zstd":
        assert f.section_bytes["packed"] < 0.8 * f.section_bytes["plain"]  # the repeats cost a code byte


def test_backref_writer_refuses_what_it_cannot_store() -> None:
    with pytest.raises(ValueError, match="backref"):
        write_vqp("splats", {}, [Section("f", np.zeros(4, np.float16), filters=("backref",))])
    with pytest.raises(ValueError, match="backref"):
        write_vqp("splats", {}, [Section("d", np.zeros(4, np.uint16), filters=("delta", "backref"))])


def _backref_sample() -> bytes:
    x = np.array([5, 5, 9, 5, 9, 9, 1, 5], np.uint32)  # codes 0 1 0 2 2 1 0 4: three literals
    return write_vqp("splats", {}, [Section("idx", x, codec="raw", filters=("backref",))])  # 20 bytes, not 32


def _with_payload(data: bytes, payload: bytes, **entry: object) -> bytes:
    """The one-section file with its payload replaced (checksums valid: a lying writer)."""
    doc, base = _split(data)
    doc["sections"][0].update(length=len(payload), raw_length=len(payload), crc32=zlib.crc32(payload), **entry)
    return _with_manifest(data[:base], doc) + payload


def test_backref_damage_is_a_clear_error() -> None:
    data = _backref_sample()
    doc, base = _split(data)
    assert read_vqp(data).sections["idx"].tolist() == [5, 5, 9, 5, 9, 9, 1, 5]
    assert bytes(data[base : base + 8]) == bytes([0, 1, 0, 2, 2, 1, 0, 4])
    lits = bytes(data[base + 8 :])
    with pytest.raises(VqpFormatError, match="needs .vqp version 2, the file is 1"):
        read_vqp(_with_manifest(data, doc, version=1))
    for codes, match in [
        (bytes([0, 1, 0, 4, 2, 1, 0, 4]), "code 4 at element 3 points before the start"),
        (bytes([1, 1, 0, 2, 2, 1, 0, 4]), "code 1 at element 0 points before the start"),
        (bytes([0, 0, 0, 2, 2, 1, 0, 0]), "5 backref literals need 20 bytes"),  # more literals than stored
    ]:
        with pytest.raises(VqpFormatError, match=match):
            read_vqp(_with_payload(data, codes + lits))
    with pytest.raises(VqpFormatError, match="does not fit 8 backref codes"):
        read_vqp(_with_payload(data, bytes(8)))  # codes, and no literal at all
    with pytest.raises(VqpFormatError, match="does not fit 8 backref codes"):
        read_vqp(_with_payload(data, bytes(8) + lits * 3))  # more literal bytes than 8 elements can have
    for field, value, match in [
        ("filters", ["delta", "backref"], "no delta filter"),
        ("dtype", "int32", "unsigned dtype"),
    ]:
        bad = json.loads(json.dumps(doc))
        bad["sections"][0][field] = value
        with pytest.raises(VqpFormatError, match=match):
            read_vqp(_with_manifest(data, bad))


def _bitlen_reference(x: np.ndarray) -> bytes:
    """The "bitlen" layout with Python integers: length bytes, then each value's bits below its top one."""
    lengths, bits = bytearray(), []
    for v in (int(e) for e in x.reshape(-1)):
        lengths.append(v.bit_length())
        bits += [(v >> b) & 1 for b in range(max(v.bit_length() - 1, 0))]
    stream = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        stream[i // 8] |= b << (i % 8)
    return bytes(lengths) + bytes(stream)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_bitlen_matches_reference_and_round_trips(dtype: type) -> None:
    rng = np.random.default_rng(7)
    top = np.iinfo(dtype).max
    widths = rng.integers(0, 8 * np.dtype(dtype).itemsize + 1, 999).astype(np.uint64)  # every bit length
    full = rng.integers(0, 1 << 63, 999, dtype=np.uint64) << np.uint64(1) | np.uint64(1)  # 64 random bits, odd
    x = np.where(widths > 0, full >> (np.uint64(64) - np.maximum(widths, np.uint64(1))), 0)
    x = np.concatenate([np.array([0, 1, 2, 3, top, top - 1], dtype), x.astype(dtype)])
    data = bitlen_encode(x)
    assert data == _bitlen_reference(x)
    lengths = np.frombuffer(data, np.uint8, count=x.size)
    got = bitlen_decode(lengths, data[x.size :], np.dtype(dtype))
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, x)
    assert bitlen_encode(x[:0]) == b"" and bitlen_decode(np.zeros(0, np.uint8), b"", np.dtype(dtype)).size == 0


def test_bitlen_crosses_chunks_and_writes_delta_coded_sorted_codes() -> None:
    rng = np.random.default_rng(8)
    codes = np.sort(rng.integers(0, 1 << 42, 300_000)).astype(np.uint64)  # more than one 2^18 chunk
    sec = [Section("m", codes, filters=("delta", "bitlen")), Section("s", codes, filters=("delta", "shuffle"))]
    f = read_vqp(write_vqp("splats", {}, sec))
    assert f.version == 2 and f.entries["m"]["filters"] == ["delta", "bitlen"]
    np.testing.assert_array_equal(f.sections["m"], codes)
    assert f.section_bytes["m"] < f.section_bytes["s"]


def test_bitlen_falls_back_to_shuffle_where_it_does_not_pay() -> None:
    noise = np.random.default_rng(9).integers(0, 1 << 16, 5000).astype(np.uint16)  # 15-16 bits each: no gain
    f = read_vqp(write_vqp("splats", {}, [Section("n", noise, filters=("bitlen",))]))
    assert f.version == 1 and f.entries["n"]["filters"] == ["shuffle"]
    np.testing.assert_array_equal(f.sections["n"], noise)
    for filters, bits in ((("bitlen", "shuffle"), None), (("bitlen",), 16), (("bitlen", "backref"), None)):
        with pytest.raises(ValueError, match="bitlen"):
            write_vqp("splats", {}, [Section("n", noise, bits=bits, filters=filters)])


def test_bitlen_damage_is_a_clear_error() -> None:
    x = np.array([0, 1, 5, 300, 2**40 + 3], np.uint64)
    data = write_vqp("splats", {}, [Section("m", x, codec="raw", filters=("bitlen",))])
    doc, base = _split(data)
    assert doc["sections"][0]["filters"] == ["bitlen"] and read_vqp(data).sections["m"].tolist() == x.tolist()
    lengths, bits = bytes(data[base : base + 5]), bytes(data[base + 5 :])
    assert lengths == bytes([0, 1, 3, 9, 41]) and len(bits) == (0 + 2 + 8 + 40 + 7) // 8
    with pytest.raises(VqpFormatError, match="needs .vqp version 2, the file is 1"):
        read_vqp(_with_manifest(data, doc, version=1))
    with pytest.raises(VqpFormatError, match="bitlen length 65 at element 4 exceeds 64 bits"):
        read_vqp(_with_payload(data, bytes([0, 1, 3, 9, 65]) + bits + b"\x00"))
    with pytest.raises(VqpFormatError, match="bitlen lengths need 8 bytes of bits, the section holds 7"):
        read_vqp(_with_payload(data, bytes([0, 1, 3, 9, 49]) + bits))
    with pytest.raises(VqpFormatError, match="does not fit 5 bitlen lengths"):
        read_vqp(_with_payload(data, bytes(4)))
    with pytest.raises(VqpFormatError, match="does not fit 5 bitlen lengths"):
        read_vqp(_with_payload(data, bytes(5 + 41)))  # more than 5 x 63 bits
    for field, value, match in [
        ("filters", ["bitlen", "shuffle"], "no bits, backref or shuffle"),
        ("bits", 8, "no bits, backref or shuffle"),
        ("dtype", "int64", "unsigned dtype"),
    ]:
        bad = json.loads(json.dumps(doc))
        bad["sections"][0][field] = value
        with pytest.raises(VqpFormatError, match=match):
            read_vqp(_with_manifest(data, bad))


# -- damage ----------------------------------------------------------------------------------------
def _sample() -> bytes:
    rng = np.random.default_rng(4)
    return write_vqp(
        "splats",
        {"num_gaussians": 100},
        [
            Section("idx", rng.integers(0, 4096, 100).astype(np.uint32), bits=12),
            Section("codebook", rng.normal(size=(64, 3)).astype(np.float16), filters=("shuffle",)),
            Section("zeros", np.zeros(1000, np.uint16)),
            Section("raw", rng.integers(0, 255, 50).astype(np.uint8), codec="raw"),
        ],
    )


def _split(data: bytes) -> tuple[dict, int]:
    mlen = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[HEADER_BYTES : HEADER_BYTES + mlen]), HEADER_BYTES + mlen


def _with_manifest(data: bytes, doc: dict, version: int = VERSION) -> bytes:
    """Re-emit the file with a modified manifest and a *valid* manifest checksum (a lying writer)."""
    _, base = _split(data)
    m = json.dumps(doc).encode()
    return struct.pack("<8sHHII", MAGIC, version, 0, len(m), zlib.crc32(m)) + m + data[base:]


def test_flipped_byte_in_each_section_is_a_checksum_error() -> None:
    data = _sample()
    doc, base = _split(data)
    for e in doc["sections"]:
        for pos in (0, e["length"] // 2, e["length"] - 1):
            bad = bytearray(data)
            bad[base + e["offset"] + pos] ^= 0x40
            with pytest.raises(VqpFormatError, match=f"section '{e['name']}': checksum"):
                read_vqp(bytes(bad))


def test_flipped_byte_in_manifest_or_header() -> None:
    data = _sample()
    bad = bytearray(data)
    bad[HEADER_BYTES + 5] ^= 1
    with pytest.raises(VqpFormatError, match="manifest checksum"):
        read_vqp(bytes(bad))
    with pytest.raises(VqpFormatError, match="not a .vqp file"):
        read_vqp(b"PK\x03\x04" + data[4:])
    with pytest.raises(VqpFormatError, match=f"unsupported .vqp version {VERSION + 1}"):
        read_vqp(data[:8] + struct.pack("<H", VERSION + 1) + data[10:])
    with pytest.raises(VqpFormatError, match="flags"):
        read_vqp(data[:10] + struct.pack("<H", 1) + data[12:])


def test_header_reader_reads_the_manifest_alone_and_refuses_what_read_vqp_refuses(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """read_header (what the service uses to tell a field from a splat scene) needs only the header and
    the manifest, and sees the same damage there as read_vqp."""
    data = _sample()
    doc, base = _split(data)
    path = tmp_path / "head.vqp"
    path.write_bytes(data[:base])  # the payloads cut off
    header = read_header(path)
    assert (header.kind, header.version, header.payload_offset) == (doc["kind"], 1, base)  # no version-2 filter
    assert header.meta == doc["meta"] and header.sections == doc["sections"]
    with pytest.raises(VqpFormatError, match="truncated"):
        read_vqp(data[:base])
    for bad, match in (
        (
            data[: HEADER_BYTES + 5] + bytes([data[HEADER_BYTES + 5] ^ 1]) + data[HEADER_BYTES + 6 :],
            "manifest checksum",
        ),
        (data[: base - 1], "truncated"),
        (data[:8] + struct.pack("<H", VERSION + 1) + data[10:], f"unsupported .vqp version {VERSION + 1}"),
        (data[:10], "shorter than"),
    ):
        path.write_bytes(bad)
        with pytest.raises(VqpFormatError, match=match):
            read_header(path)
        with pytest.raises(VqpFormatError, match=match):
            read_vqp(bad)


def test_truncation_at_every_boundary_and_byte() -> None:
    data = _sample()
    doc, base = _split(data)
    cuts = {0, 7, HEADER_BYTES - 1, HEADER_BYTES, base - 1, base}
    for e in doc["sections"]:
        cuts |= {base + e["offset"], base + e["offset"] + e["length"] // 2, base + e["offset"] + e["length"] - 1}
    cuts |= set(range(0, len(data), 17))
    for cut in sorted(c for c in cuts if c < len(data)):
        with pytest.raises(VqpFormatError, match="my.vqp"):
            read_vqp(data[:cut], name="my.vqp")
    with pytest.raises(VqpFormatError, match="unexpected bytes"):
        read_vqp(data + b"\x00")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("length", 10**9, "runs past the end"),
        ("offset", 3, "lying offset"),
        ("raw_length", 12345, "raw length"),
        ("shape", [1 << 30, 1 << 30], "invalid shape|raw length"),
        ("shape", [-1], "invalid shape"),
        ("shape", [101], "raw length"),
        ("bits", 33, "outside 1..32"),
        ("bits", 0, "outside 1..32"),
        ("codec", "lz4", "unknown codec"),
        ("dtype", "object", "unsupported dtype"),
        ("dtype", "float32", "unsigned dtype"),
        ("filters", ["xor"], "unknown filters"),
        ("name", 7, "'name'"),
        ("crc32", -1, "non-negative"),
    ],
)
def test_lying_manifest_fields_are_rejected(field: str, value: object, message: str) -> None:
    data = _sample()
    doc, _ = _split(data)
    doc["sections"][0][field] = value  # the bit-packed idx section
    with pytest.raises(VqpFormatError, match=message):
        read_vqp(_with_manifest(data, doc))


def test_lying_manifest_structure_is_rejected() -> None:
    data = _sample()
    doc, _ = _split(data)
    for bad, message in [
        ({**doc, "kind": "mesh"}, "unknown kind"),
        ({**doc, "sections": {}}, "'sections' list"),
        ({**doc, "meta": []}, "'meta' must be an object"),
        ({**doc, "sections": [*doc["sections"], doc["sections"][0]]}, "duplicate section"),
        ({**doc, "sections": doc["sections"][:-1]}, "unexpected bytes"),
    ]:
        with pytest.raises(VqpFormatError, match=message):
            read_vqp(_with_manifest(data, bad))
    m = b"[1, 2"
    with pytest.raises(VqpFormatError, match="not valid JSON"):
        read_vqp(struct.pack("<8sHHII", MAGIC, VERSION, 0, len(m), zlib.crc32(m)) + m)
    huge = struct.pack("<8sHHII", MAGIC, VERSION, 0, 0xFFFFFFFF, 0)
    with pytest.raises(VqpFormatError, match="exceeds the limit"):
        read_vqp(huge)


def test_zstd_frame_lying_about_its_size_and_decode_cap() -> None:
    zeros = np.zeros(1 << 16, np.uint8)
    data = write_vqp("splats", {}, [Section("z", zeros)])
    with pytest.raises(VqpFormatError, match="limit"):
        read_vqp(data, max_decoded_bytes=1 << 15)
    # a valid zstd frame of 1 MiB stored where the manifest promises 64 KiB (a zip bomb)
    bomb = zstandard.ZstdCompressor().compress(bytes(1 << 20))
    doc, base = _split(data)
    e = doc["sections"][0]
    e.update(length=len(bomb), crc32=zlib.crc32(bomb))
    forged = _with_manifest(data[:base], doc) + bomb
    with pytest.raises(VqpFormatError, match="declares 1048576 bytes"):
        read_vqp(forged)
    # the same frame without a content size in its header: the decompressor is capped
    nosize = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(1 << 20))
    e.update(length=len(nosize), crc32=zlib.crc32(nosize))
    with pytest.raises(VqpFormatError, match="zstd frame declares"):
        read_vqp(_with_manifest(data[:base], doc) + nosize)


def test_empty_and_short_inputs() -> None:
    for data in (b"", b"\x89VQP", MAGIC):
        with pytest.raises(VqpFormatError, match="shorter than"):
            read_vqp(data)


def test_client_reader_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['vqpress_server'] = None\n"
        "import numpy as np, vqpress.vqp as v\n"
        "d = v.write_vqp('splats', {}, [v.Section('a', np.arange(5, dtype=np.uint8), bits=3)])\n"
        "assert v.read_vqp(d).sections['a'].tolist() == [0, 1, 2, 3, 4]\n"
    )
    env = {"PYTHONPATH": str(REPO / "client")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
