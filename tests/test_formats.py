"""Scene file formats: exact PLY round trips, documented losses of .splat/.spz, agreement with plyfile
and between the two encodings of the same real scene, and untrusted input that fails cleanly."""

from __future__ import annotations

import gzip
import io
import math
import os
import shutil
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import plyfile
import pytest
import torch
from vqpress_server.core.errors import FormatError, NonFiniteError, VqpressInputError
from vqpress_server.core.splats.formats import ReadOptions, detect_format, load_scene, read_splats, write_splats
from vqpress_server.core.splats.model import SH_C0, GaussianSplats

DATA = Path(__file__).parent / "data"
DONUT = DATA / "donut_small.ply"  # 3,000 Gaussians, SH degree 0, real training output
LEGO = DATA / "lego_sh3_small.ply"  # 1,000 Gaussians, SH degree 3
TAROT = DATA / "tarot_small.splat"  # 400 splats
BIKER_CPLY = DATA / "biker_small.compressed.ply"  # 512 splats
BIKER_SPZ = DATA / "biker_small.spz"  # the same 512 splats, spz v4

NO_BIG_ALLOC = 32 << 20  # bytes: what rejecting a lying header may allocate at most


def _equal(a: GaussianSplats, b: GaussianSplats) -> None:
    for k, v in a.tensors().items():
        w = b.tensors()[k]
        assert v.shape == w.shape, k
        assert torch.equal(v, w), k


def _plyfile_columns(path: Path) -> dict[str, np.ndarray]:
    v = plyfile.PlyData.read(str(path))["vertex"].data
    return {n: np.asarray(v[n]) for n in v.dtype.names}


def _write_ply(path: Path, cols: dict[str, np.ndarray], fmt: str = "binary_little_endian") -> None:
    n = len(next(iter(cols.values())))
    arr = np.empty(n, [(k, v.dtype.str) for k, v in cols.items()])
    for k, v in cols.items():
        arr[k] = v
    el = plyfile.PlyElement.describe(arr, "vertex")
    byte_order = {"binary_little_endian": "<", "binary_big_endian": ">", "ascii": "="}[fmt]
    plyfile.PlyData([el], text=fmt == "ascii", byte_order=byte_order).write(str(path))


def _probe(path: Path) -> tuple[FormatError, int]:
    """Read ``path`` expecting a FormatError; return it and the peak traced allocation in bytes."""
    tracemalloc.start()
    try:
        with pytest.raises(FormatError) as ei:
            read_splats(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ei.value.path == str(path)
    return ei.value, peak


# -- INRIA PLY ---------------------------------------------------------------------------------


@pytest.mark.parametrize("src", [DONUT, LEGO], ids=["donut_sh0", "lego_sh3"])
def test_ply_round_trip_is_exact_and_byte_identical(src: Path, tmp_path: Path) -> None:
    s = read_splats(src)
    out = tmp_path / "out.ply"
    n = write_splats(s, out)
    assert n == out.stat().st_size
    _equal(s, read_splats(out))
    # both fixtures are in the reference layout (x y z nx ny nz f_dc f_rest opacity scale rot)
    assert out.read_bytes() == src.read_bytes()


def test_ply_reader_agrees_with_plyfile_including_channel_major_f_rest() -> None:
    s = read_splats(LEGO).numpy()
    c = _plyfile_columns(LEGO)
    N, K = s["shN"].shape[:2]
    assert (N, K) == (1000, 15)
    np.testing.assert_array_equal(s["means"], np.stack([c["x"], c["y"], c["z"]], 1))
    np.testing.assert_array_equal(s["quats"], np.stack([c[f"rot_{i}"] for i in range(4)], 1))
    np.testing.assert_array_equal(s["scales"], np.stack([c[f"scale_{i}"] for i in range(3)], 1))
    np.testing.assert_array_equal(s["opacities"], c["opacity"])
    np.testing.assert_array_equal(s["sh0"][:, 0], np.stack([c[f"f_dc_{i}"] for i in range(3)], 1))
    for ch in range(3):
        for j in range(K):
            np.testing.assert_array_equal(s["shN"][:, j, ch], c[f"f_rest_{ch * K + j}"])


def test_plyfile_reads_what_we_write(tmp_path: Path) -> None:
    s = read_splats(LEGO)
    write_splats(s.index(torch.arange(100)), tmp_path / "w.ply")
    c = _plyfile_columns(tmp_path / "w.ply")
    a = s.numpy()
    assert list(c)[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert len([n for n in c if n.startswith("f_rest_")]) == 45
    assert all(c[n].dtype == np.float32 for n in c)
    np.testing.assert_array_equal(c["nx"], 0)
    np.testing.assert_array_equal(c["f_rest_16"], a["shN"][:100, 1, 1])  # green, coefficient 2
    np.testing.assert_array_equal(c["rot_0"], a["quats"][:100, 0])
    np.testing.assert_array_equal(c["opacity"], a["opacities"][:100])


def test_ply_properties_in_any_order_with_extras_and_doubles(tmp_path: Path) -> None:
    ref = read_splats(LEGO).index(torch.arange(50))
    cols = _plyfile_columns(LEGO)
    names = list(cols)
    rng = np.random.default_rng(0)
    shuffled = {n: cols[n][:50] for n in rng.permutation(names)}
    shuffled["x"] = shuffled["x"].astype(np.float64)  # float32 values survive a double
    shuffled["segment_id"] = np.arange(50, dtype=np.uint8)  # an extra property is ignored
    del shuffled["nx"]
    _write_ply(tmp_path / "shuffled.ply", shuffled)
    _equal(ref, read_splats(tmp_path / "shuffled.ply"))
    # All float32 in a shuffled order with an extra float column: the one-matrix read path.
    floats = {n: cols[n][:50] for n in rng.permutation(names)}
    floats["confidence"] = np.linspace(0, 1, 50, dtype=np.float32)
    _write_ply(tmp_path / "floats.ply", floats)
    _equal(ref, read_splats(tmp_path / "floats.ply"))


# -- .splat ------------------------------------------------------------------------------------


def test_splat_write_read_within_documented_quantization(tmp_path: Path) -> None:
    s = read_splats(DONUT)
    write_splats(s, tmp_path / "d.splat")
    assert (tmp_path / "d.splat").stat().st_size == 32 * len(s)
    r = read_splats(tmp_path / "d.splat")
    a, b = s.numpy(), r.numpy()
    np.testing.assert_array_equal(b["means"], a["means"])  # float32 kept
    np.testing.assert_allclose(b["scales"], a["scales"], atol=1e-6)  # exp then log, float32
    rgb = 0.5 + SH_C0 * a["sh0"]
    inside = (rgb > 0) & (rgb < 1)
    err = np.abs(b["sh0"] - a["sh0"])[inside]
    assert err.max() <= 0.5 / 255 / SH_C0 + 1e-5
    p_a, p_b = torch.sigmoid(s.opacities), torch.sigmoid(r.opacities)
    assert (p_a - p_b).abs().max() <= 0.5 / 255 + 1e-6
    dots = (s.normalized_quats() * r.normalized_quats()).sum(1).abs()
    assert dots.min() > 0.999  # 8 bits per component
    assert r.sh_degree == 0


def test_splat_file_survives_a_read_write_cycle(tmp_path: Path) -> None:
    raw = np.frombuffer(TAROT.read_bytes(), np.uint8).reshape(-1, 32)
    s, _ = load_scene(TAROT)
    write_splats(s, tmp_path / "t.splat")
    out = np.frombuffer((tmp_path / "t.splat").read_bytes(), np.uint8).reshape(-1, 32)
    np.testing.assert_array_equal(out[:, :12], raw[:, :12])  # positions exactly
    np.testing.assert_array_equal(out[:, 24:28], raw[:, 24:28])  # RGBA exactly
    # linear scales pass through float32 log and exp: a few ulp
    sc_out, sc_raw = (a[:, 12:24].copy().view("<f4") for a in (out, raw))
    np.testing.assert_allclose(sc_out, sc_raw, rtol=4e-6)
    # rotations are renormalized before 8-bit rounding: at most one step apart
    assert np.abs(out[:, 28:].astype(int) - raw[:, 28:].astype(int)).max() <= 1


def test_splat_drops_sh_rest(tmp_path: Path) -> None:
    s = read_splats(LEGO)
    write_splats(s, tmp_path / "l.splat")
    r = read_splats(tmp_path / "l.splat")
    assert s.sh_degree == 3 and r.sh_degree == 0 and len(r) == len(s)


# -- .spz --------------------------------------------------------------------------------------


def test_spz_write_read_within_documented_quantization(tmp_path: Path) -> None:
    s = read_splats(LEGO)
    n = write_splats(s, tmp_path / "l.spz")
    assert n == (tmp_path / "l.spz").stat().st_size
    assert detect_format(tmp_path / "l.spz") == "spz"
    raw = gzip.decompress((tmp_path / "l.spz").read_bytes())
    assert raw[:4] == b"NGSP" and struct.unpack_from("<I", raw, 4)[0] == 2
    r = read_splats(tmp_path / "l.spz")
    a, b = s.numpy(), r.numpy()
    assert r.sh_degree == 3
    assert np.abs(b["means"] - a["means"]).max() <= 2.0**-13 + 1e-6  # 12 fractional bits
    ok = (a["scales"] > -10) & (a["scales"] < 5.9)
    assert np.abs(b["scales"] - a["scales"])[ok].max() <= 1 / 32 + 1e-6
    ok = np.abs(a["sh0"]) < 3.3
    assert np.abs(b["sh0"] - a["sh0"])[ok].max() <= 0.5 / (0.15 * 255) + 1e-5
    assert (torch.sigmoid(s.opacities) - torch.sigmoid(r.opacities)).abs().max() <= 0.5 / 255 + 1e-6
    assert (s.normalized_quats() * r.normalized_quats()).sum(1).abs().min() > 0.99
    ok = np.abs(a["shN"]) < 0.99
    err = np.abs(b["shN"] - a["shN"])
    assert err[:, :3][ok[:, :3]].max() <= 1 / 32 + 1 / 256 + 1e-6  # degree 1: 5 bits
    assert err[:, 3:][ok[:, 3:]].max() <= 1 / 16 + 1 / 256 + 1e-6  # degrees 2-3: 4 bits
    # what was loaded (alpha 255 -> +inf -> 20) encodes back to the same file
    write_splats(load_scene(tmp_path / "l.spz")[0], tmp_path / "again.spz")
    assert gzip.decompress((tmp_path / "again.spz").read_bytes()) == raw


def test_spz_positions_beyond_2048_use_fewer_fractional_bits(tmp_path: Path) -> None:
    s = read_splats(DONUT)
    s.means[:5] = torch.tensor([5000.0, -7000.0, 3.0])
    write_splats(s, tmp_path / "far.spz")
    raw = gzip.decompress((tmp_path / "far.spz").read_bytes())
    assert raw[13] == 10  # 7000 * 2^10 < 2^23
    r = read_splats(tmp_path / "far.spz")
    assert (r.means - s.means).abs().max() <= 2.0**-11 + 1e-4
    s.means[0, 0] = 2.0**24
    with pytest.raises(VqpressInputError, match="24-bit"):
        write_splats(s, tmp_path / "too_far.spz")
    assert not (tmp_path / "too_far.spz").exists()


def test_spz_v3_smallest_three_rotation_decodes(tmp_path: Path) -> None:
    """Hand-packed v3 record: q = (w, x, y, z) = (0.5, 0.5, -0.5, 0.5) in RUB; alpha 255, color 128."""
    # xyzw = (0.5, -0.5, 0.5, 0.5): largest index 0 (x), then y, z, w as sign + 9-bit magnitude
    mag = round(0.5 / np.sqrt(0.5) * 511)
    comp = 0
    for v in (-0.5, 0.5, 0.5):
        comp = (comp << 10) | ((1 if v < 0 else 0) << 9) | mag
    comp |= 0 << 30
    body = struct.pack("<IIIBBBB", 0x5053474E, 3, 1, 0, 12, 0, 0)
    body += bytes([0, 16, 0, 0, 0, 0, 0, 0, 0])  # x = 4096 / 2^12 = 1.0
    body += bytes([128]) + bytes([128] * 3) + bytes([160] * 3) + struct.pack("<I", comp)
    (tmp_path / "v3.spz").write_bytes(gzip.compress(body))
    r = read_splats(tmp_path / "v3.spz")  # by default the stored axes, as they are
    np.testing.assert_allclose(r.means[0].numpy(), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(r.quats[0].numpy(), [0.5, 0.5, -0.5, 0.5], atol=2e-3)
    # RUB -> RDF flips the quaternion's y and z: (0.5, 0.5, -0.5, 0.5) -> (0.5, 0.5, 0.5, -0.5)
    r = read_splats(tmp_path / "v3.spz", options=ReadOptions(spz_axes="rub"))
    np.testing.assert_allclose(r.quats[0].numpy(), [0.5, 0.5, 0.5, -0.5], atol=2e-3)
    np.testing.assert_allclose(r.scales[0].numpy(), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(r.sh0[0, 0].numpy(), (128 / 255 - 0.5) / 0.15, rtol=1e-5)


def test_compressed_ply_and_spz_of_biker_describe_the_same_scene() -> None:
    # PlayCanvas stores its biker.spz in RUB (its engine shows it without the PLY's flip)
    a, b = read_splats(BIKER_CPLY), read_splats(BIKER_SPZ, options=ReadOptions(spz_axes="rub"))
    _assert_same_biker(a, b)
    raw = read_splats(BIKER_SPZ)  # the default takes the stored axes: y and z mirrored
    np.testing.assert_allclose(raw.means.numpy(), b.means.numpy() * np.array([1, -1, -1]), atol=0)


def _assert_same_biker(a: GaussianSplats, b: GaussianSplats) -> None:
    assert len(a) == len(b)
    # same order: positions agree within the two quantization steps (spz: 2^-12)
    assert (a.means - b.means).abs().max() < 2.5e-4
    assert (a.normalized_quats() * b.normalized_quats()).sum(1).abs().min() > 0.999
    ok = a.scales > -10  # spz clamps log-scales at -10
    assert (a.scales - b.scales).abs()[ok].max() < 0.05
    assert (a.sh0 - b.sh0).abs().max() < 0.03
    assert (torch.sigmoid(a.opacities) - torch.sigmoid(b.opacities)).abs().max() < 1e-3


# -- npz ---------------------------------------------------------------------------------------


def test_npz_round_trip_is_exact(tmp_path: Path) -> None:
    s = read_splats(LEGO)
    write_splats(s, tmp_path / "l.npz")
    assert detect_format(tmp_path / "l.npz") == "npz"
    _equal(s, read_splats(tmp_path / "l.npz"))
    # sh0 as [N, 3] and no shN are accepted (degree 0)
    a = s.numpy()
    np.savez(tmp_path / "flat.npz", **{k: a[k] for k in ("means", "quats", "scales", "opacities")}, sh0=a["sh0"][:, 0])
    r = read_splats(tmp_path / "flat.npz")
    assert r.sh_degree == 0 and torch.equal(r.sh0, s.sh0)


def test_npz_rejects_pickles_and_bad_shapes(tmp_path: Path) -> None:
    a = read_splats(DONUT).numpy()
    np.savez(tmp_path / "obj.npz", **{**a, "means": np.array([object()] * 3)})
    e, _ = _probe(tmp_path / "obj.npz")
    assert "objects" in e.problem
    np.savez(tmp_path / "shape.npz", **{**a, "quats": a["quats"][:, :3]})
    e, _ = _probe(tmp_path / "shape.npz")
    assert "'quats'" in e.problem
    np.savez(tmp_path / "miss.npz", **{k: v for k, v in a.items() if k != "scales"})
    e, _ = _probe(tmp_path / "miss.npz")
    assert "scales" in e.problem


# -- detection, load_scene, write_splats ---------------------------------------------------------


def test_detect_format_by_content_not_extension(tmp_path: Path) -> None:
    for src, want in [(DONUT, "ply"), (BIKER_CPLY, "compressed_ply"), (BIKER_SPZ, "spz")]:
        dst = tmp_path / (src.name + ".bin")
        shutil.copy(src, dst)
        assert detect_format(dst) == want
    shutil.copy(BIKER_CPLY, tmp_path / "plain_name.ply")
    assert detect_format(tmp_path / "plain_name.ply") == "compressed_ply"
    assert detect_format(TAROT) == "splat"
    (tmp_path / "noise.dat").write_bytes(b"\x00" * 64)
    with pytest.raises(FormatError, match="unrecognized"):
        detect_format(tmp_path / "noise.dat")


def test_load_scene_repairs_infinite_opacity_and_strict_refuses(tmp_path: Path) -> None:
    # alpha 255 in a compressed PLY decodes to +inf, as the reference decoder does
    data = bytearray(BIKER_CPLY.read_bytes())
    start = data.index(b"end_header\n") + 11 + 2 * 18 * 4
    struct.pack_into("<I", data, start + 16 * 7 + 12, struct.unpack_from("<I", data, start + 16 * 7 + 12)[0] | 0xFF)
    p = tmp_path / "inf.compressed.ply"
    p.write_bytes(bytes(data))
    assert torch.isposinf(read_splats(p).opacities[7])
    s, rep = load_scene(p)
    assert rep.opacities_clamped == 1 and s.opacities[7] == 20.0 and len(s) == 512
    with pytest.raises(NonFiniteError, match="opacities"):
        load_scene(p, strict=True)
    with pytest.raises(VqpressInputError, match="non-finite"):
        write_splats(read_splats(p), tmp_path / "x.ply")
    assert not (tmp_path / "x.ply").exists()


def test_write_splats_needs_a_known_format(tmp_path: Path) -> None:
    s = read_splats(DONUT)
    with pytest.raises(VqpressInputError, match="extension"):
        write_splats(s, tmp_path / "scene.xyz")
    with pytest.raises(VqpressInputError, match="cannot write"):
        write_splats(s, tmp_path / "scene.ply", fmt="ksplat")  # type: ignore[arg-type]
    assert write_splats(s, tmp_path / "scene.xyz", fmt="ply") == (tmp_path / "scene.xyz").stat().st_size


@pytest.mark.parametrize("ext", ["ply", "splat", "spz", "npz"])
@pytest.mark.parametrize("degree", [0, 3])
def test_empty_scene_round_trips(ext: str, degree: int, tmp_path: Path) -> None:
    p = tmp_path / f"empty.{ext}"
    write_splats(GaussianSplats.empty(degree), p)
    r = read_splats(p)
    assert len(r) == 0
    assert r.sh_degree == (0 if ext == "splat" else degree)


# -- untrusted input ---------------------------------------------------------------------------


def _donut_with_header(tmp_path: Path, name: str, old: bytes, new: bytes, cut: int = 0) -> Path:
    data = DONUT.read_bytes()
    assert old in data[:1000]
    data = data.replace(old, new, 1)
    p = tmp_path / name
    p.write_bytes(data[: len(data) - cut] if cut else data)
    return p


@pytest.mark.parametrize(
    "case, old, new, cut, match",
    [
        ("truncated", b"", b"", 100, "truncated"),
        ("lying_count", b"vertex 3000", b"vertex 3001", 0, "truncated or its element counts"),
        ("huge_count", b"vertex 3000", b"vertex 1000000000000", 0, "1,000,000,000,000"),
        ("ascii", b"binary_little_endian", b"ascii", 0, "ASCII"),
        ("big_endian", b"binary_little_endian", b"binary_big_endian", 0, "big-endian"),
        ("no_end_header", b"end_header", b"end_haeder", 0, "end_header"),
        ("list_property", b"property float nx", b"property list uchar int nx", 0, "list property"),
    ],
)
def test_bad_ply_headers(tmp_path: Path, case: str, old: bytes, new: bytes, cut: int, match: str) -> None:
    p = _donut_with_header(tmp_path, f"{case}.ply", old or b"ply", new or b"ply", cut)
    e, peak = _probe(p)
    assert match in e.problem, e.problem
    assert peak < NO_BIG_ALLOC


def test_ply_missing_properties_and_bad_f_rest(tmp_path: Path) -> None:
    cols = {k: v[:10] for k, v in _plyfile_columns(LEGO).items()}
    _write_ply(tmp_path / "missing.ply", {k: v for k, v in cols.items() if k not in ("opacity", "rot_3")})
    e, _ = _probe(tmp_path / "missing.ply")
    assert "['opacity', 'rot_3']" in e.problem
    _write_ply(tmp_path / "rest.ply", {k: v for k, v in cols.items() if k not in ("f_rest_43", "f_rest_44")})
    e, _ = _probe(tmp_path / "rest.ply")
    assert "43 f_rest properties is no SH layout" in e.problem
    gap = {k: v for k, v in cols.items() if not k.startswith("f_rest_") or int(k[7:]) < 9}
    gap["f_rest_9"] = gap.pop("f_rest_0")
    _write_ply(tmp_path / "gap.ply", gap)
    e, _ = _probe(tmp_path / "gap.ply")
    assert "numbered" in e.problem
    _write_ply(tmp_path / "ascii.ply", cols, fmt="ascii")  # a real ASCII file, written by plyfile
    e, _ = _probe(tmp_path / "ascii.ply")
    assert "ASCII" in e.problem


@pytest.mark.parametrize("name", ["e.ply", "e.spz", "e.npz", "e.compressed.ply", "e.bin"])
def test_empty_files_are_format_errors(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    e, _ = _probe(tmp_path / name)
    assert "empty" in e.problem


def test_splat_size_not_a_multiple_of_32(tmp_path: Path) -> None:
    (tmp_path / "cut.splat").write_bytes(TAROT.read_bytes()[:-5])
    e, _ = _probe(tmp_path / "cut.splat")
    assert "multiple of 32" in e.problem


def test_compressed_ply_with_too_few_chunks(tmp_path: Path) -> None:
    data = BIKER_CPLY.read_bytes().replace(b"element chunk 2\n", b"element chunk 1\n", 1)
    (tmp_path / "c.compressed.ply").write_bytes(data[:-72])  # keep the sizes consistent
    e, _ = _probe(tmp_path / "c.compressed.ply")
    assert "need 2 chunks" in e.problem


@pytest.mark.parametrize("count", [513, 10**9, 2**32 - 1])
def test_spz_v4_count_larger_than_data(tmp_path: Path, count: int) -> None:
    data = bytearray(BIKER_SPZ.read_bytes())
    struct.pack_into("<I", data, 8, count)
    (tmp_path / "c.spz").write_bytes(bytes(data))
    e, peak = _probe(tmp_path / "c.spz")
    assert "points need" in e.problem
    assert peak < NO_BIG_ALLOC


def test_spz_v4_truncated(tmp_path: Path) -> None:
    (tmp_path / "t.spz").write_bytes(BIKER_SPZ.read_bytes()[:-100])
    e, _ = _probe(tmp_path / "t.spz")
    assert "truncated" in e.problem


@pytest.mark.parametrize("count", [3001, 10**9, 2**32 - 1])
def test_spz_gzip_count_larger_than_data(tmp_path: Path, count: int) -> None:
    write_splats(read_splats(DONUT), tmp_path / "d.spz")
    raw = bytearray(gzip.decompress((tmp_path / "d.spz").read_bytes()))
    struct.pack_into("<I", raw, 8, count)
    (tmp_path / "c.spz").write_bytes(gzip.compress(bytes(raw)))
    e, peak = _probe(tmp_path / "c.spz")
    assert "count is wrong" in e.problem
    assert peak < NO_BIG_ALLOC


def test_spz_gzip_truncated_stream(tmp_path: Path) -> None:
    write_splats(read_splats(DONUT), tmp_path / "d.spz")
    (tmp_path / "t.spz").write_bytes((tmp_path / "d.spz").read_bytes()[:5000])
    e, _ = _probe(tmp_path / "t.spz")
    assert "truncated" in e.problem


# -- the real scenes in the shared data ------------------------------------------------------------

SHARED_SCENES = [
    ("donut_3dgs_ply/fused.ply", "ply", 45_624, 0),
    ("inria_sh3_small/point_cloud_iter7000.ply", "ply", 9_080, 3),
    ("trained_lego_sh3/lego_7k.ply", "ply", 71_616, 3),
    ("tarot_cards_splat/academic_tarot_cards.splat", "splat", 114_865, 0),
    ("playcanvas_compressed/guitar.compressed.ply", "compressed_ply", 90_854, 0),
    ("playcanvas_compressed/biker.compressed.ply", "compressed_ply", 152_746, 0),
    ("playcanvas_compressed/biker.spz", "spz", 152_746, 0),
]


@pytest.mark.parametrize("rel, fmt, count, degree", SHARED_SCENES, ids=[s[0].split("/")[0] for s in SHARED_SCENES])
def test_shared_scenes_load(shared_scene: Callable[..., Path], rel: str, fmt: str, count: int, degree: int) -> None:
    path = shared_scene(rel)
    assert detect_format(path) == fmt
    s, rep = load_scene(path)
    assert len(s) == count and s.sh_degree == degree
    assert all(bool(torch.isfinite(v).all()) for v in s.tensors().values())
    assert rep.means_dropped == 0
    if fmt == "ply":  # float files pass through unchanged
        assert rep.total == 0


def test_shared_inria_sh3_agrees_with_plyfile(shared_scene: Callable[..., Path]) -> None:
    path = shared_scene("inria_sh3_small/point_cloud_iter7000.ply")
    s = read_splats(path).numpy()
    c = _plyfile_columns(path)
    for ch in range(3):
        for j in range(15):
            np.testing.assert_array_equal(s["shN"][:, j, ch], c[f"f_rest_{ch * 15 + j}"])
    np.testing.assert_array_equal(s["opacities"], c["opacity"])


def test_shared_biker_compressed_ply_and_spz_agree(shared_scene: Callable[..., Path]) -> None:
    d = shared_scene("playcanvas_compressed")
    a, b = read_splats(d / "biker.compressed.ply"), read_splats(d / "biker.spz", options=ReadOptions(spz_axes="rub"))
    _assert_same_biker(a, b)
    # alpha 255 decodes to +inf in both; load_scene clamps the same 198 splats
    assert int(torch.isposinf(a.opacities).sum()) == int(torch.isposinf(b.opacities).sum()) == 198


def test_compressed_ply_sh_element_decodes_channel_major(tmp_path: Path) -> None:
    ply = plyfile.PlyData.read(str(BIKER_CPLY))
    n = ply["vertex"].count
    q = np.random.default_rng(1).integers(0, 256, size=(n, 9), dtype=np.uint8)  # degree 1
    sh = np.empty(n, [(f"f_rest_{i}", "u1") for i in range(9)])
    for i in range(9):
        sh[f"f_rest_{i}"] = q[:, i]
    els = [ply["chunk"], ply["vertex"], plyfile.PlyElement.describe(sh, "sh")]
    plyfile.PlyData(els, byte_order="<").write(str(tmp_path / "sh.compressed.ply"))
    r = read_splats(tmp_path / "sh.compressed.ply")
    base = read_splats(BIKER_CPLY)
    assert r.sh_degree == 1
    _equal(base, r.with_sh_degree(0))
    t = np.where(q == 0, 0.0, np.where(q == 255, 1.0, (q.astype(np.float64) + 0.5) / 256))  # bin middles
    want = (t - 0.5) * 8  # [N, 3 channels x 3 coefficients]
    np.testing.assert_allclose(r.shN.numpy(), want.reshape(n, 3, 3).transpose(0, 2, 1), atol=1e-6)


def test_non_finite_values_are_read_as_stored_and_repaired_on_load(tmp_path: Path) -> None:
    cols = {k: v[:20].copy() for k, v in _plyfile_columns(DONUT).items()}
    cols["x"][3] = np.nan
    cols["opacity"][5] = np.inf
    cols["scale_1"][6] = -np.inf
    _write_ply(tmp_path / "nf.ply", cols)
    s = read_splats(tmp_path / "nf.ply")
    assert torch.isnan(s.means[3, 0]) and torch.isposinf(s.opacities[5]) and torch.isneginf(s.scales[6, 1])
    r, rep = load_scene(tmp_path / "nf.ply")
    assert (rep.means_dropped, rep.opacities_clamped, rep.scales_clamped) == (1, 1, 1)
    assert len(r) == 19 and r.opacities[4] == 20.0 and r.scales[5, 1] == -20.0


def test_npz_member_claiming_a_huge_shape(tmp_path: Path) -> None:
    a = read_splats(DONUT).numpy()
    np.savez(tmp_path / "ok.npz", **a)
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 3)})
    with zipfile.ZipFile(tmp_path / "ok.npz") as src, zipfile.ZipFile(tmp_path / "huge.npz", "w") as dst:
        for info in src.infolist():
            data = hdr.getvalue() + b"\0" * 64 if info.filename == "means.npy" else src.read(info)
            dst.writestr(info.filename, data)
    e, peak = _probe(tmp_path / "huge.npz")
    assert "claims shape (1000000000000, 3)" in e.problem
    assert peak < NO_BIG_ALLOC


def test_ply_read_in_chunks_on_threads_is_the_one_pass_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vqpress_server.core.splats.formats import ply

    whole = read_splats(LEGO)  # 1,000 rows of 248 bytes: one chunk, one thread
    monkeypatch.setattr(ply, "READ_CHUNK_BYTES", 248 * 37)  # 28 chunks, the last one short
    monkeypatch.setattr(ply, "READ_THREADS", 3)
    monkeypatch.setattr(ply, "_PARALLEL_READ_BYTES", 0)
    assert len(ply._plan_chunks(1000, 248)[1]) == min(3, os.cpu_count() or 1)  # threads
    _equal(read_splats(LEGO), whole)
    for t in read_splats(LEGO).tensors().values():
        assert t.is_contiguous()
    # the same through the structured (mixed types) reader: a column of doubles
    cols = _plyfile_columns(LEGO)
    cols["opacity"] = cols["opacity"].astype(np.float64)
    _write_ply(tmp_path / "mixed.ply", cols)
    _equal(read_splats(tmp_path / "mixed.ply"), whole)


def test_ply_that_shrinks_while_read_is_a_format_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vqpress_server.core.splats.formats import _plyheader, ply

    path = tmp_path / "shrinks.ply"
    shutil.copy(LEGO, path)
    hdr = _plyheader.parse_header(path)  # checked against the whole file
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 1000)
    monkeypatch.setattr(ply, "parse_header", lambda p: hdr)
    monkeypatch.setattr(ply, "READ_CHUNK_BYTES", 248 * 100)
    with pytest.raises(FormatError, match="ended in rows 900..1,000"):
        ply.read_ply(path)  # format detection would see the short file first


def test_repair_finds_each_kind_of_bad_value_alone() -> None:
    s = read_splats(LEGO).index(torch.arange(50))
    assert s.repair_non_finite()[0] is s  # nothing to repair: the scene itself
    for name, row, whole_row, value, field_name in (
        ("quats", 4, True, 0.0, "quats_reset"),  # finite, but no rotation
        ("shN", 7, False, math.nan, "sh_zeroed"),
        ("sh0", 8, False, -math.inf, "sh_zeroed"),
        ("opacities", 9, False, math.nan, "opacities_clamped"),
        ("scales", 10, False, math.inf, "scales_dropped"),
        ("means", 11, False, math.inf, "means_dropped"),
    ):
        bad = s.index(torch.arange(50))
        t = getattr(bad, name).view(50, -1)
        t[row, slice(None) if whole_row else 0] = value
        out, rep = bad.repair_non_finite()
        assert rep.total == 1 and getattr(rep, field_name) == 1, (name, rep)
        assert all(math.isfinite(lo) and math.isfinite(hi) for lo, hi in out.value_ranges().values()), name


@pytest.mark.gpu
def test_ply_read_straight_to_cuda_is_the_cpu_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from vqpress_server.core.splats.formats import ply

    cpu = read_splats(LEGO)
    monkeypatch.setattr(ply, "READ_CHUNK_BYTES", 248 * 37)
    monkeypatch.setattr(ply, "_PARALLEL_READ_BYTES", 0)
    gpu = read_splats(LEGO, device="cuda")
    assert gpu.device.type == "cuda"
    _equal(cpu, gpu.to("cpu"))
    fixed, rep = gpu.repair_non_finite()
    assert fixed is gpu and rep.total == 0
