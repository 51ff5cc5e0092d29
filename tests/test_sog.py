"""SOG read and write, the compressed PLY writer, export filters and the .spz axes option
(no node needed: tests/test_interop.py checks the same files against splat-transform)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from vqpress_server.core.errors import ConfigError, FormatError, VqpressInputError
from vqpress_server.core.splats.formats import (
    ExportFilter,
    ReadOptions,
    SogConfig,
    WriteOptions,
    detect_format,
    filter_splats,
    read_splats,
    write_splats,
)
from vqpress_server.core.splats.model import GaussianSplats
from vqpress_server.core.splats.morton import morton_order

DATA = Path(__file__).resolve().parent / "data"
LEGO = DATA / "lego_sh3_small.ply"  # 1,000 Gaussians, SH degree 3
DONUT = DATA / "donut_small.ply"  # 3,000, SH degree 0
SMALL = SogConfig(sh_palette=128, codebook_iters=4, palette_iters=4)  # quick for 1,000 Gaussians


@pytest.fixture(scope="module")
def lego() -> GaussianSplats:
    return read_splats(LEGO)


@pytest.fixture(scope="module")
def lego_sog(tmp_path_factory: pytest.TempPathFactory, lego: GaussianSplats) -> Path:
    path = tmp_path_factory.mktemp("sog") / "lego.sog"
    write_splats(lego, path, options=WriteOptions(sog=SMALL))
    return path


def _meta(path: Path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("meta.json"))


# -- SOG: write then read ------------------------------------------------------------------------


def test_sog_decodes_each_value_to_its_nearest_codebook_entry(lego: GaussianSplats, lego_sog: Path) -> None:
    meta = _meta(lego_sog)
    assert detect_format(lego_sog) == "sog"
    assert meta["version"] == 2 and meta["count"] == len(lego)
    assert meta["shN"]["bands"] == 3 and meta["shN"]["count"] == 128
    r = read_splats(lego_sog)
    src = lego.index(morton_order(lego.means))
    assert len(r) == len(lego) and r.sh_degree == 3
    for key, vals in (("scales", src.scales), ("sh0", src.sh0)):
        cb = torch.tensor(meta[key]["codebook"], dtype=torch.float64)
        nearest = cb[(vals.double()[..., None] - cb).abs().argmin(-1)]  # exact assignment: the nearest entry
        dec = getattr(r, key).double()
        assert (dec - nearest).abs().max() < 1e-6, key
    # positions: 16 bits of the log-range; rotations 8 bits per component; opacity 8 bits
    lo, hi = np.array(meta["means"]["mins"]), np.array(meta["means"]["maxs"])
    step = torch.tensor((hi - lo) / 65535 * np.exp(np.maximum(abs(lo), abs(hi))), dtype=torch.float32)
    assert ((r.means - src.means).abs() <= step / 2 + 1e-6).all()
    assert (r.normalized_quats() * src.normalized_quats()).sum(1).abs().min() > 0.99
    assert (torch.sigmoid(r.opacities) - torch.sigmoid(src.opacities)).abs().max() <= 0.5 / 255 + 1e-6
    # the SH palette is a real fit: far closer than no SH at all
    err = (r.shN - src.shN).pow(2).mean().sqrt()
    assert err < 0.5 * src.shN.pow(2).mean().sqrt()


def test_unbundled_sog_is_the_bundle_unzipped(tmp_path: Path, lego: GaussianSplats, lego_sog: Path) -> None:
    out = tmp_path / "lego" / "meta.json"
    out.parent.mkdir()
    n = write_splats(lego, out, options=WriteOptions(sog=SMALL))
    names = sorted(p.name for p in out.parent.iterdir())
    meta = json.loads(out.read_text())
    named = [f for k in ("means", "scales", "quats", "sh0", "shN") for f in meta[k]["files"]]
    assert sorted(named + ["meta.json"]) == names  # meta.json names every image it needs
    assert names == sorted(["meta.json", "means_l.webp", "means_u.webp", "quats.webp", "scales.webp", "sh0.webp",
                            "shN_centroids.webp", "shN_labels.webp"])  # fmt: skip
    assert n == sum(p.stat().st_size for p in out.parent.iterdir())
    with zipfile.ZipFile(lego_sog) as zf:
        for name in names:
            assert zf.read(name) == (out.parent / name).read_bytes(), name  # deterministic: same k-means seed
    for p in (out, out.parent):  # meta.json or its folder
        assert detect_format(p) == "sog"
        a, b = read_splats(p), read_splats(lego_sog)
        assert torch.equal(a.means, b.means) and torch.equal(a.shN, b.shN)


def test_sog_images_are_lossless_webp(lego_sog: Path) -> None:
    with zipfile.ZipFile(lego_sog) as zf:
        for name in zf.namelist():
            if name.endswith(".webp"):
                data = zf.read(name)
                assert data[:4] == b"RIFF" and data[12:16] == b"VP8L", name  # VP8L: the lossless codec


def test_sog_without_sh_and_degree_reduction(tmp_path: Path) -> None:
    donut = read_splats(DONUT).index(torch.arange(500))
    write_splats(donut, tmp_path / "d.sog", options=WriteOptions(sog=SMALL))
    assert "shN" not in _meta(tmp_path / "d.sog")
    r = read_splats(tmp_path / "d.sog")
    assert len(r) == len(donut) and r.sh_degree == 0


def test_sog_refuses_an_empty_scene(tmp_path: Path) -> None:
    with pytest.raises(VqpressInputError, match="empty"):
        write_splats(GaussianSplats.empty(), tmp_path / "e.sog")
    assert not (tmp_path / "e.sog").exists()


def test_sog_palette_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="sh_palette"):
        SogConfig(sh_palette=70000)
    assert SogConfig().palette_size(500_000) == 65536  # splat-transform's size for 500K
    assert SogConfig().palette_size(3000) == 2048


# -- SOG: the shared playbot (streamed LOD, SH degree 2, written by splat-transform) -------------


def test_shared_playbot_reads_every_lod_level(shared_scene: Callable[..., Path]) -> None:
    d = shared_scene("playbot_sog")
    want = {0: 500_000, 1: 250_000, 2: 125_000, 3: 31_000, 4: 8_406, 5: 3_000, 6: 1_873}
    finest = read_splats(d)
    assert len(finest) == want[0] and finest.sh_degree == 2
    assert finest.meta["sog_lod_levels"] == "7"
    lod = json.loads((d / "lod-meta.json").read_text())
    lo, hi = torch.tensor(lod["tree"]["bound"]["min"]), torch.tensor(lod["tree"]["bound"]["max"])
    assert ((finest.means >= lo - 1e-3) & (finest.means <= hi + 1e-3)).all()  # inside the stated bound
    for level in (4, 6):
        s = read_splats(d / "lod-meta.json", options=ReadOptions(sog_lod=level))
        assert len(s) == want[level]
    # a level file read on its own is the same Gaussians
    level6 = read_splats(d / "6_0" / "meta.json")
    assert torch.equal(level6.means, read_splats(d, options=ReadOptions(sog_lod=6)).means)
    with pytest.raises(VqpressInputError, match="levels 0..6"):
        read_splats(d, options=ReadOptions(sog_lod=7))
    assert torch.isfinite(finest.opacities).all() and (finest.quats.norm(dim=1) - 1).abs().max() < 1e-2


# -- SOG: untrusted input ------------------------------------------------------------------------


def _rewrite(src: Path, dst: Path, edit_meta=None, replace: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "meta.json" and edit_meta is not None:
                meta = json.loads(data)
                edit_meta(meta)
                data = json.dumps(meta).encode()
            if replace and name in replace:
                data = replace[name]
            zout.writestr(name, data)
    return dst


def _png_as(name_size: tuple[int, int]) -> bytes:
    bio = io.BytesIO()
    Image.new("RGBA", name_size).save(bio, "WEBP", lossless=True)
    return bio.getvalue()


@pytest.mark.parametrize(
    "edit,replace,match",
    [
        (lambda m: m.update(version=1), None, "version 1 is not supported"),
        (lambda m: m.update(count=10**7), None, "too small"),
        (lambda m: m.update(count=-1), None, "count"),
        (lambda m: m["means"].update(mins=[0, 0]), None, "means.mins"),
        (lambda m: m["scales"].update(codebook=[0.0] * 300), None, "1..256"),
        (lambda m: m["scales"].update(codebook=[0.0, 1.0]), None, "codebook"),
        (lambda m: m["quats"].update(files=["../../etc/passwd"]), None, "unsafe"),
        (lambda m: m["sh0"].update(files=["nothere.webp"]), None, "no 'nothere.webp'"),
        (lambda m: m["shN"].update(bands=5), None, "bands"),
        (None, {"quats.webp": b"RIFF....WEBPjunk"}, "not a readable WebP"),
        (None, {"sh0.webp": _png_as((4, 4))}, "too small"),
        (None, {"meta.json": b"{not json"}, "not valid JSON"),
    ],
)
def test_bad_sog_is_a_clear_format_error(tmp_path: Path, lego_sog: Path, edit, replace, match: str) -> None:
    bad = _rewrite(lego_sog, tmp_path / "bad.sog", edit, replace)
    with pytest.raises(FormatError, match=match):
        read_splats(bad)


def test_sog_zip_and_npz_are_told_apart(tmp_path: Path, lego: GaussianSplats, lego_sog: Path) -> None:
    write_splats(lego, tmp_path / "l.npz")
    assert detect_format(tmp_path / "l.npz") == "npz"
    shutil.copy(lego_sog, tmp_path / "renamed.bin")
    assert detect_format(tmp_path / "renamed.bin") == "sog"  # by content
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(FormatError, match="unbundled SOG"):
        detect_format(tmp_path / "empty_dir")


# -- compressed PLY writer -----------------------------------------------------------------------


def test_compressed_ply_round_trip_within_its_chunk_steps(tmp_path: Path, lego: GaussianSplats) -> None:
    out = tmp_path / "l.compressed.ply"
    n = write_splats(lego, out)
    assert detect_format(out) == "compressed_ply" and n == out.stat().st_size
    assert n < 0.3 * (62 * 4 * len(lego))  # 16 B + 45 B of SH per Gaussian against 248 B of floats
    r = read_splats(out)
    src = lego.index(morton_order(lego.means))
    assert len(r) == len(lego) and r.sh_degree == 3
    extent = float((lego.means.max(0).values - lego.means.min(0).values).max())
    assert (r.means - src.means).abs().max() < extent / 2047  # a chunk spans a fraction of the scene
    assert (r.sh0 - src.sh0).abs().max() < 0.5 / 255 / 0.2820948 * 1.01
    inside = src.shN.abs() < 4
    assert (r.shN - src.shN).abs()[inside].max() <= 1 / 64 + 1e-6  # bin middles: half of 8 / 256
    assert (r.normalized_quats() * src.normalized_quats()).sum(1).abs().min() > 0.999
    assert (torch.sigmoid(r.opacities) - torch.sigmoid(src.opacities)).abs().max() <= 0.5 / 255 + 1e-6


def test_compressed_ply_of_a_partial_last_chunk(tmp_path: Path) -> None:
    s = read_splats(DONUT).index(torch.arange(300))  # one full chunk and 44 in the second
    write_splats(s, tmp_path / "p.compressed.ply")
    r = read_splats(tmp_path / "p.compressed.ply")
    assert len(r) == 300 and r.sh_degree == 0
    assert (r.means - s.index(morton_order(s.means)).means).abs().max() < 0.05


# -- export filters ------------------------------------------------------------------------------


def test_export_filters_drop_and_count(lego: GaussianSplats) -> None:
    s = lego.index(torch.arange(len(lego)))
    s.means[0, 0] = float("nan")
    s.opacities[1] = float("inf")
    lo, hi = (-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)
    f = ExportFilter(sh_degree=1, min_opacity=0.1, box_min=lo, box_max=hi, drop_non_finite=True)
    out, rep = filter_splats(s, f)
    assert rep.non_finite == 2
    finite = s.index(torch.arange(2, len(s)))
    inbox = ((finite.means >= torch.tensor(lo)) & (finite.means <= torch.tensor(hi))).all(1)
    assert rep.outside_box == int((~inbox).sum()) > 0
    alpha = torch.sigmoid(finite.opacities[inbox].double())
    assert rep.low_opacity == int((alpha < 0.1).sum()) > 0
    assert rep.kept == len(out) == int((alpha >= 0.1).sum())
    assert out.sh_degree == rep.sh_degree == 1
    assert torch.equal(out.shN, finite.index(inbox).index(alpha >= 0.1).shN[:, :3])
    assert filter_splats(lego, ExportFilter())[1].kept == len(lego)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"sh_degree": 4}, "sh_degree"),
        ({"min_opacity": 2.0}, "min_opacity"),
        ({"box_min": (0, 0, 0)}, "both"),
        ({"box_min": (1, 0, 0), "box_max": (0, 1, 1)}, "exceed"),
    ],  # fmt: skip
)
def test_export_filter_values_are_checked(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ExportFilter(**kwargs)


# -- .spz axes -----------------------------------------------------------------------------------


def test_spz_axes_option_flips_y_and_z_and_the_odd_sh(tmp_path: Path, lego: GaussianSplats) -> None:
    write_splats(lego, tmp_path / "ply.spz")
    write_splats(lego, tmp_path / "rub.spz", options=WriteOptions(spz_axes="rub"))
    a = read_splats(tmp_path / "ply.spz")
    assert a.meta["spz_axes"] == "ply"
    b = read_splats(tmp_path / "rub.spz")  # read as stored: the RUB values
    assert torch.allclose(b.means, a.means * torch.tensor([1.0, -1.0, -1.0]), atol=2.0**-12)
    c = read_splats(tmp_path / "rub.spz", options=ReadOptions(spz_axes="rub"))
    assert c.meta["spz_axes"] == "rub"
    # the same scene, within one quantization step (rounding is not symmetric under a sign flip)
    assert (c.means - a.means).abs().max() <= 2.0**-12
    assert (c.shN - a.shN).abs().max() <= 1 / 8 + 1 / 128 and (c.shN - a.shN).abs().mean() < 0.01
    assert (c.normalized_quats() * a.normalized_quats()).sum(1).abs().min() > 0.999
    raw = gzip.decompress((tmp_path / "ply.spz").read_bytes())
    assert raw[13] == 12  # fractional bits
    with pytest.raises(VqpressInputError, match="axes"):
        WriteOptions(spz_axes="luf")  # type: ignore[arg-type]


# -- the local CLI: convert, decompress with export options, info ---------------------------------


def test_cli_convert_filters_and_info_names_the_spz_axes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vqpress_server.cli import main

    out = tmp_path / "l.compressed.ply"
    assert (
        main(["convert", str(LEGO), "-o", str(out), "--sh-degree", "1", "--min-opacity", "0.2", "--box=-1,-1,-1,1,1,1"])
        == 0
    )
    want, rep = filter_splats(
        read_splats(LEGO), ExportFilter(sh_degree=1, min_opacity=0.2, box_min=(-1, -1, -1), box_max=(1, 1, 1))
    )
    r = read_splats(out)
    assert len(r) == rep.kept == len(want) and r.sh_degree == 1
    assert f"{rep.kept} Gaussians" in capsys.readouterr().err
    assert main(["convert", str(LEGO), "-o", str(tmp_path / "rub.spz"), "--spz-axes", "rub"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "rub.spz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["spz_axes"].startswith("ply") and info["num_gaussians"] == 1000
    assert main(["info", str(tmp_path / "rub.spz"), "--json", "--spz-axes", "rub"]) == 0
    info_rub = json.loads(capsys.readouterr().out)
    assert info_rub["spz_axes"].startswith("rub")
    lo = np.array(info_rub["bounds_p1_p99"][0])
    assert np.allclose(lo, read_splats(LEGO).bounds()[0].numpy(), atol=1e-3)  # RUB read back: the PLY's axes


# -- through the service: ExportRequest.options, EXPORT_FORMAT_SOG / _COMPRESSED_PLY ---------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from vqpress import Client
    from vqpress_server.app import build_app
    from vqpress_server.settings import Settings

    data = tmp_path_factory.mktemp("vqpress-data")
    app = build_app(
        Settings(data_dir=data, host="127.0.0.1", port=0, workers=1, lease_s=3.0, heartbeat_s=0.5, poll_s=0.05)
    )
    app.start()
    c = Client(f"127.0.0.1:{app.port}", timeout=60)
    try:
        yield c
    finally:
        c.close()
        app.stop(0)


@pytest.mark.timeout(600)
def test_service_exports_sog_compressed_ply_and_rub_spz_with_filters(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import vqpress

    src = read_splats(LEGO)
    opts = vqpress.ExportOptions(
        sh_degree=1, min_opacity=0.1, box_min=(-1, -1, -1), box_max=(1, 1, 1), sog_sh_palette=64
    )
    want, rep = filter_splats(src, ExportFilter(sh_degree=1, min_opacity=0.1, box_min=(-1, -1, -1), box_max=(1, 1, 1)))
    for fmt, suffix in (("sog", ".sog"), ("compressed_ply", ".compressed.ply")):
        st = client.export(LEGO, fmt, options=opts).wait(timeout=300)
        assert st.results[0].kind == fmt and st.results[0].name.endswith(suffix)
        out = client.download(st.results[0], tmp_path / f"lego{suffix}")
        r = read_splats(out)
        assert len(r) == rep.kept == st.metrics["num_gaussians"] and r.sh_degree == 1
        assert st.metrics["dropped_outside_box"] == rep.outside_box
    assert _meta(tmp_path / "lego.sog")["shN"]["count"] == min(64, rep.kept)  # k-means: at most one per point
    st = client.export(LEGO, "spz", options=vqpress.ExportOptions(spz_axes="rub")).wait(timeout=300)
    rub = read_splats(client.download(st.results[0], tmp_path / "rub.spz"), options=ReadOptions(spz_axes="rub"))
    assert (rub.means - src.means).abs().max() <= 2.0**-12
    with pytest.raises(vqpress.VqpressError) as e:
        client.export(LEGO, "ply", options=vqpress.ExportOptions(min_opacity=2.0))
    assert e.value.code == "INVALID_ARGUMENT" and "min_opacity" in str(e.value)
