"""Compact3D quantization and the compress pipeline on real (small) scenes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEST_DATA
from vqpress.vqp import decode_splats, read_vqp
from vqpress_server.core.errors import Cancelled, ConfigError, FormatError, NonFiniteError, VqpressInputError
from vqpress_server.core.splats.compress import compress_file, decompress_file, evaluate_quality
from vqpress_server.core.splats.formats import load_scene, read_splats
from vqpress_server.core.splats.model import GaussianSplats
from vqpress_server.core.splats.morton import morton_codes, morton_decode
from vqpress_server.core.splats.quantize import QuantizeConfig, decode_vqp_splats, quantize_splats

DONUT = TEST_DATA / "donut_small.ply"
TINY = QuantizeConfig(dc_codebook=16, sh_codebook=16, scale_codebook=16, rot_codebook=16, kmeans_iters=2)
# Unweighted, unpruned, 16-bit positions: the plain Compact3D pipeline whose figures are measured below.
SMALL = QuantizeConfig(
    dc_codebook=256, sh_codebook=64, scale_codebook=256, rot_codebook=256, kmeans_iters=5,
    importance="none", prune=0.0, position_bits=16,
)  # fmt: skip
# Measured on donut_small (3,000 Gaussians, SH 0) with SMALL at 2 orbit views of 96x96 (torch renderer):
# PSNR 36.4 dB, 32,227 bytes. Floors leave a margin for k-means seeding differences across platforms.
PSNR_FLOOR_DB = 34.5
BYTES_CEILING = 34_000


@pytest.fixture(scope="module")
def donut() -> GaussianSplats:
    return load_scene(DONUT)[0]


@pytest.fixture(scope="module")
def sh3_scene() -> GaussianSplats:
    """A small synthetic SH-degree-3 scene (the committed fixture has SH degree 0)."""
    g = torch.Generator().manual_seed(0)
    n = 400
    return GaussianSplats(
        means=torch.randn(n, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]),
        quats=torch.randn(n, 4, generator=g),
        scales=torch.randn(n, 3, generator=g) - 3,
        opacities=torch.randn(n, generator=g) * 2,
        sh0=torch.randn(n, 1, 3, generator=g),
        shN=torch.randn(n, 15, 3, generator=g) * 0.1,
    )


@pytest.fixture(scope="module")
def sh3_quantized(sh3_scene: GaussianSplats):
    cfg = QuantizeConfig(dc_codebook=64, sh_codebook=32, scale_codebook=48, rot_codebook=100, kmeans_iters=4)
    q = quantize_splats(sh3_scene, cfg)
    return q, q.to_vqp_bytes()


def test_decode_equals_codebook_lookups_exactly(sh3_scene: GaussianSplats, sh3_quantized) -> None:
    q, data = sh3_quantized
    n = sh3_scene.num_gaussians
    dec = decode_vqp_splats(data)
    assert dec.num_gaussians == n and dec.sh_degree == 3
    lut = {a: q.codebooks[a].astype(np.float32)[q.indices[a]] for a in q.codebooks}
    assert {a: c.shape[0] for a, c in q.codebooks.items()} == {"dc": 64, "sh": 32, "scale": 48, "rot": 100}
    np.testing.assert_array_equal(dec.sh0.numpy().reshape(n, 3), lut["dc"])
    np.testing.assert_array_equal(dec.shN.numpy(), lut["sh"])
    np.testing.assert_array_equal(dec.scales.numpy(), lut["scale"])
    rot = lut["rot"] / np.linalg.norm(lut["rot"], axis=1, keepdims=True)
    np.testing.assert_allclose(dec.quats.numpy(), rot, rtol=0, atol=1e-6)
    assert (q.codebooks["rot"][:, 0] >= 0).all()  # clustered on the w >= 0 hemisphere


def test_file_codebooks_are_sorted_by_use_and_decode_as_the_raw_files(sh3_quantized) -> None:
    """With zstd the file renumbers each codebook (most used entry first) and may store the indices
    with "backref" and the positions with "bitlen" (version 2; the writer keeps them where they pay);
    without entropy coding it keeps the in-memory numbering and version 1. Both decode to the same
    values per Gaussian."""
    q, data = sh3_quantized
    f = read_vqp(data)
    raw = read_vqp(replace(q, config=replace(q.config, entropy="none")).to_vqp_bytes())
    assert raw.version == 1 and raw.entries["means_morton"]["filters"] == ["delta", "shuffle"]
    assert f.entries["means_morton"]["filters"] in (["delta", "bitlen"], ["delta", "shuffle"])
    used = [x for e in f.entries.values() for x in e["filters"] if x in ("backref", "bitlen")]
    assert f.version == (2 if used else 1)
    for a in q.codebooks:
        assert f.entries[f"{a}_idx"]["filters"] in (["backref"], []) and raw.entries[f"{a}_idx"]["filters"] == []
        uses = np.bincount(f.sections[f"{a}_idx"], minlength=len(q.codebooks[a]))
        assert (np.diff(uses) <= 0).all(), a  # entry 0 is the most used
        np.testing.assert_array_equal(raw.sections[f"{a}_idx"], q.indices[a])
    got, want = decode_splats(f), decode_splats(raw)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_positions_within_fixed_point_step_and_opacity_within_uint8_step(sh3_scene, sh3_quantized) -> None:
    q, data = sh3_quantized
    dec = decode_vqp_splats(data)
    orig = sh3_scene.index(torch.from_numpy(q.order))
    assert q.config.position_bits == 14  # the default
    step = (np.array(q.box_max) - np.array(q.box_min)) / ((1 << 14) - 1)
    err = np.abs(dec.means.numpy().astype(np.float64) - orig.means.numpy())
    assert (err <= step / 2 + 1e-6).all(), (err / step).max()
    a_dec, a_orig = torch.sigmoid(dec.opacities), torch.sigmoid(orig.opacities)
    assert float((a_dec - a_orig).abs().max()) <= 0.5 / 255 + 1e-6
    # the file is in Morton order of the fixed-point positions
    codes = q.means.astype(np.int64)
    assert (np.diff(codes) >= 0).all()
    assert sorted(q.order.tolist()) == list(range(sh3_scene.num_gaussians))


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_float_positions_and_fp16_opacity(sh3_scene: GaussianSplats, precision: str) -> None:
    cfg = QuantizeConfig(
        dc_codebook=8,
        sh_codebook=8,
        scale_codebook=8,
        rot_codebook=8,
        kmeans_iters=2,
        position_precision=precision,
        opacity_precision="fp16",
    )
    q = quantize_splats(sh3_scene, cfg)
    dec = decode_vqp_splats(q.to_vqp_bytes())
    orig = sh3_scene.index(torch.from_numpy(q.order))
    tol = 2e-3 if precision == "fp16" else 0.0
    np.testing.assert_allclose(dec.means.numpy(), orig.means.numpy(), rtol=tol, atol=0)
    np.testing.assert_allclose(dec.opacities.numpy(), orig.opacities.numpy(), rtol=1e-3, atol=1e-3)


def test_numpy_decoder_equals_torch_decoder(sh3_quantized, donut: GaussianSplats) -> None:
    for data in (sh3_quantized[1], quantize_splats(donut, TINY).to_vqp_bytes()):
        ref = decode_splats(read_vqp(data))
        got = decode_vqp_splats(data).numpy()
        for k in ("means", "scales", "opacities", "sh0", "shN"):
            np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
        np.testing.assert_allclose(got["quats"], ref["quats"], rtol=0, atol=1e-7)


def test_morton_codes_round_trip() -> None:
    q = torch.randint(0, 1 << 21, (1000, 3))
    codes = morton_codes(q.double(), torch.zeros(3), torch.full((3,), float((1 << 21) - 1)))
    torch.testing.assert_close(morton_decode(codes), q)
    assert int(codes.max()) < 1 << 63


def test_sh_degree_truncation(sh3_scene: GaussianSplats) -> None:
    cfg = QuantizeConfig(dc_codebook=8, sh_codebook=8, scale_codebook=8, rot_codebook=8, kmeans_iters=1, sh_degree=1)
    q = quantize_splats(sh3_scene, cfg)
    f = read_vqp(q.to_vqp_bytes())
    assert f.manifest["sh_degree"] == 1 and f.sections["sh_codebook"].shape == (8, 3, 3)
    assert decode_vqp_splats(q.to_vqp_bytes()).shN.shape == (400, 3, 3)


def test_k_larger_than_n_stores_k_prime_equal_n(sh3_scene: GaussianSplats) -> None:
    small = sh3_scene.index(torch.arange(37))
    q = quantize_splats(small, QuantizeConfig())  # default 4096 / 512 codebooks
    f = read_vqp(q.to_vqp_bytes())
    assert f.manifest["codebook_sizes"] == {"dc": 37, "sh": 37, "scale": 37, "rot": 37}
    assert f.entries["dc_idx"]["bits"] == 6
    dec = decode_vqp_splats(q.to_vqp_bytes())
    orig = small.index(torch.from_numpy(q.order))
    np.testing.assert_allclose(dec.sh0.numpy(), orig.sh0.numpy(), atol=2e-3, rtol=2e-3)  # fp16 of itself


def test_empty_scene_is_a_clear_error() -> None:
    with pytest.raises(VqpressInputError, match="no Gaussians"):
        quantize_splats(GaussianSplats.empty(3), QuantizeConfig())


def test_non_finite_never_reaches_kmeans(sh3_scene: GaussianSplats) -> None:
    bad = replace(sh3_scene, scales=sh3_scene.scales.clone())
    bad.scales[5, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="scales"):
        quantize_splats(bad, QuantizeConfig())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dc_codebook": 0},
        {"sh_codebook": (1 << 24) + 1},
        {"rot_codebook": 12.5},
        {"scale_codebook": True},
        {"kmeans_iters": -1},
        {"kmeans_iters": 1001},
        {"seed": -3},
        {"position_precision": "fixed12"},
        {"opacity_precision": "uint4"},
        {"entropy": "brotli"},
        {"sh_degree": 4},
        {"strict": "yes"},
    ],
)
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        QuantizeConfig(**kwargs).validate()


def test_presets_and_from_dict() -> None:
    for name in ("default", "high_ratio", "high_quality"):
        QuantizeConfig.preset(name).validate()
    assert QuantizeConfig.preset("default") == QuantizeConfig()
    hr, hq = QuantizeConfig.preset("high_ratio"), QuantizeConfig.preset("high_quality")
    assert hr.dc_codebook < QuantizeConfig().dc_codebook < hq.dc_codebook
    with pytest.raises(ConfigError, match="unknown preset"):
        QuantizeConfig.preset("best")
    with pytest.raises(ConfigError, match="unknown quantize config fields"):
        QuantizeConfig.from_dict({"dc_codebok": 5})
    assert QuantizeConfig.from_dict(QuantizeConfig().as_dict()) == QuantizeConfig()


def test_decode_rejects_damaged_or_foreign_files(sh3_quantized) -> None:
    data = sh3_quantized[1]
    with pytest.raises(FormatError, match="x.vqp: .*truncated"):
        decode_vqp_splats(data[: len(data) // 2], name="x.vqp")
    from vqpress.vqp import Section, write_vqp

    with pytest.raises(FormatError, match="kind"):
        decode_vqp_splats(write_vqp("field", {}, [Section("a", np.zeros(3, np.uint8))]))
    with pytest.raises(FormatError, match="num_gaussians"):
        decode_vqp_splats(write_vqp("splats", {}, []))


def test_entropy_none_writes_raw_sections(sh3_scene: GaussianSplats) -> None:
    cfg = QuantizeConfig(dc_codebook=16, sh_codebook=16, scale_codebook=16, rot_codebook=16, kmeans_iters=1)
    raw = read_vqp(quantize_splats(sh3_scene, replace(cfg, entropy="none")).to_vqp_bytes())
    assert all(e["codec"] == "raw" for e in raw.entries.values())
    assert raw.section_bytes["dc_idx"] == 400 * 4 // 8


def test_compress_file_quality_floor_and_report(tmp_path: Path, donut: GaussianSplats) -> None:
    from vqpress_server.core.render.cameras import orbit_cameras

    cams = orbit_cameras(donut, n=2, width=96, height=96)
    stages: list[str] = []
    dst = tmp_path / "out" / "donut.vqp"
    rep = compress_file(
        DONUT, dst, SMALL, cameras=cams, background=(1, 1, 1), device="cpu", progress=lambda s, f, m: stages.append(s)
    )
    d = rep.as_dict()
    assert d["output_bytes"] == dst.stat().st_size <= BYTES_CEILING
    assert d["input_bytes"] == DONUT.stat().st_size
    assert d["ratio"] == pytest.approx(d["input_bytes"] / d["output_bytes"])
    assert d["psnr"] >= PSNR_FLOOR_DB and 0.95 <= d["ssim"] <= 1.0, (d["psnr"], d["ssim"])
    assert d["num_cameras"] == 2 and d["cameras_source"] == "given"
    assert set(d["section_bytes"]) == {
        "means_morton",
        "opacities",
        "dc_codebook",
        "dc_idx",
        "scale_codebook",
        "scale_idx",
        "rot_codebook",
        "rot_idx",
    }
    assert d["bits_per_gaussian"]["total"] == pytest.approx(8 * d["output_bytes"] / 3000)
    for s in ("read", "repair", "quantize:dc", "quantize:scale", "quantize:rot", "encode", "write", "evaluate"):
        assert s in stages and s in d["timings_s"], s
    assert stages.index("read") < stages.index("quantize:dc") < stages.index("encode") < stages.index("evaluate")
    text = rep.format_text()
    assert "ratio" in text and "dc_idx" in text and "PSNR" in text
    assert [p.name for p in dst.parent.iterdir()] == ["donut.vqp"]  # no temporary file left
    # what decompress writes is what the numpy reader decodes
    out = decompress_file(dst, tmp_path / "back.ply")
    ref = decode_splats(read_vqp(dst.read_bytes()))
    np.testing.assert_array_equal(read_splats(tmp_path / "back.ply").means.numpy(), ref["means"])
    assert out.num_gaussians == 3000


def test_compress_file_weighs_by_the_scenes_cameras_and_prunes_the_least_important(
    tmp_path: Path, donut: GaussianSplats
) -> None:
    from vqpress_server.core.render.cameras import orbit_cameras

    cams = orbit_cameras(donut, n=2, width=96, height=96)
    stages: list[str] = []
    cfg = replace(SMALL, importance="views", prune=0.2)
    rep = compress_file(
        DONUT, tmp_path / "w.vqp", cfg, cameras=cams, background=(1, 1, 1), device="cpu",
        progress=lambda s, f, m: stages.append(s),
    )  # fmt: skip
    assert rep.importance == "given" and "importance" in stages and "importance" in rep.timings_s
    assert rep.num_gaussians_input == 3000 and rep.num_gaussians == 2400  # the least important 20% dropped
    assert decode_vqp_splats((tmp_path / "w.vqp").read_bytes()).num_gaussians == 2400
    assert rep.psnr is not None and rep.psnr >= PSNR_FLOOR_DB - 2.0, rep.psnr
    assert "2,400 of 3,000" in rep.format_text()
    # The report counts what none of the cameras sees (pruning drops those first): on a held-out view
    # they are what moves away from the original's render.
    from vqpress_server.core.splats.importance import view_importance

    unseen = int((view_importance(donut, cams) == 0).sum())
    assert 0 < unseen < 3000
    assert rep.num_gaussians_unseen == unseen and rep.as_dict()["num_gaussians_unseen"] == unseen
    assert f"{unseen:,} seen by none of its cameras" in rep.format_text()
    # Without cameras (orbit views only) nothing is weighted or dropped: orbit views of a scene seen
    # from inside would weigh its walls.
    bare = compress_file(DONUT, tmp_path / "b.vqp", cfg, evaluate=False, device="cpu")
    assert bare.importance == "none (no cameras)" and bare.num_gaussians == 3000
    assert bare.num_gaussians_unseen == 0 and "seen by none" not in bare.format_text()


def test_compress_cancel_leaves_nothing(tmp_path: Path) -> None:
    def cancel(stage: str, frac: float, metrics) -> None:
        if stage.startswith("quantize:scale"):
            raise Cancelled()

    with pytest.raises(Cancelled):
        compress_file(DONUT, tmp_path / "x.vqp", TINY, evaluate=False, device="cpu", progress=cancel)
    assert list(tmp_path.iterdir()) == []


def test_quality_of_default_codebooks_when_k_exceeds_n(donut: GaussianSplats) -> None:
    """With K >= N every Gaussian keeps its own (fp16) value: the decoded scene renders the same."""
    from vqpress_server.core.render.cameras import orbit_cameras

    dec = decode_vqp_splats(quantize_splats(donut, QuantizeConfig()).to_vqp_bytes())
    psnr, ssim, _ = evaluate_quality(donut, dec, orbit_cameras(donut, n=1, width=64, height=64), (0, 0, 0))
    assert psnr >= 50.0 and ssim >= 0.999


@pytest.mark.gpu
def test_lego_default_meets_ratio_and_quality(shared_scene: Callable[..., Path], tmp_path: Path) -> None:
    """trained_lego_sh3 with defaults: ratio >= 20x on disk and PSNR >= 36 dB at its 13 test cameras
    (measured on CPU: 745,487 bytes = 23.8x, 83.3 bits/Gaussian, PSNR 38.7 dB on 3 test views)."""
    src = shared_scene("trained_lego_sh3") / "lego_7k.ply"
    rep = compress_file(src, tmp_path / "lego.vqp", QuantizeConfig(), device="cuda").as_dict()
    assert rep["cameras_source"] == "cameras.json:test" and rep["num_cameras"] == 13
    assert rep["ratio"] >= 20.0 and rep["psnr"] >= 36.0, (rep["ratio"], rep["psnr"])


def test_sections_encoded_during_kmeans_make_the_same_file(sh3_scene: GaussianSplats) -> None:
    cfg = QuantizeConfig(dc_codebook=64, sh_codebook=32, scale_codebook=48, rot_codebook=100, kmeans_iters=2)
    plain = quantize_splats(sh3_scene, cfg)
    ahead = quantize_splats(sh3_scene, cfg, encode_ahead=True)
    assert plain.encoder is None and ahead.encoder is not None
    assert ahead.section_names() == [s.name for s in ahead.sections()]
    data = ahead.to_vqp_bytes()
    assert data == plain.to_vqp_bytes()
    assert ahead.encoder.thread_s > 0
    # a changed copy encodes its own sections, not the ones encoded for the original
    raw = replace(ahead, config=replace(ahead.config, entropy="none"))
    assert raw.encoder is None and raw.to_vqp_bytes() == replace(plain, config=raw.config).to_vqp_bytes() != data


def test_cancel_during_kmeans_stops_the_encoding_ahead(sh3_scene: GaussianSplats) -> None:
    def cancel(stage: str, frac: float, metrics) -> None:
        if stage == "quantize:rot" and frac > 0:
            raise Cancelled()

    with pytest.raises(Cancelled):
        quantize_splats(sh3_scene, TINY, progress=cancel, encode_ahead=True)
