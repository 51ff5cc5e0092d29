"""Interop with the tools web viewers' users convert with: PlayCanvas splat-transform 3.7.0 and
spz-js 1.2.5, run with node from the npm cache that `make node-tools` fills (.node-tools, or
$VQPRESS_NODE_TOOLS). Without node or those packages every test here skips.

Two directions on real scenes:
- every file vqpress writes is read by splat-transform (converted by it to a float PLY) with the
  same count and the values vqpress itself decodes, and those are the source's within the format's
  quantization;
- every file splat-transform writes is read by vqpress as splat-transform reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from vqpress_server.core.splats.formats import (
    ReadOptions,
    SogConfig,
    WriteOptions,
    read_splats,
    write_splats,
)
from vqpress_server.core.splats.model import SH_C0, GaussianSplats
from vqpress_server.core.splats.morton import morton_order

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
LEGO = DATA / "lego_sh3_small.ply"  # 1,000 Gaussians, SH degree 3
DONUT = DATA / "donut_small.ply"  # 3,000 Gaussians, SH degree 0
BIKER_SPZ = DATA / "biker_small.spz"  # PlayCanvas' biker, spz v4, stored in RUB
BIKER_CPLY = DATA / "biker_small.compressed.ply"  # the same splats, SuperSplat's compressed PLY
NODE_TOOLS = Path(os.environ.get("VQPRESS_NODE_TOOLS") or REPO / ".node-tools")
ST_CLI = NODE_TOOLS / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
SPZ_JS = NODE_TOOLS / "node_modules" / "spz-js" / "dist" / "index.js"
NODE = shutil.which("node")
TOOL_TIMEOUT_S = 300  # one conversion of a small scene takes a few seconds; CI is a loaded machine

pytestmark = pytest.mark.skipif(
    NODE is None or not ST_CLI.is_file(),
    reason=f"node or splat-transform 3.7.0 is missing (run `make node-tools`; looked in {NODE_TOOLS})",
)


def st(*args: str | Path) -> None:
    """Run splat-transform (overwrite, quiet, CPU for the SOG k-means); fail with its stderr."""
    assert NODE is not None
    cmd = [NODE, str(ST_CLI), "-w", "-q", "-g", "cpu", *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    if p.returncode != 0 or not Path(args[-1]).exists():
        pytest.fail(f"splat-transform {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-3000:]}")


def st_read(path: Path, tmp: Path) -> GaussianSplats:
    """What splat-transform decodes from ``path``: its own conversion to a float PLY, read back."""
    out = tmp / f"{path.name.replace('.', '_')}.st.ply"
    st(path, out)
    return read_splats(out, "ply")


@dataclass(frozen=True)
class Tol:
    """Largest differences allowed, per attribute (scene units / log-scale / SH / alpha)."""

    means: float
    scales: float
    sh0: float
    shN: float
    alpha: float
    quat_dot: float  # the smallest |<q_a, q_b>| of the normalized quaternions


TIGHT = Tol(means=1e-5, scales=1e-5, sh0=1e-5, shN=1e-5, alpha=1e-5, quat_dot=1 - 1e-6)  # same decode


def assert_agree(a: GaussianSplats, b: GaussianSplats, tol: Tol, what: str, sh: bool = True) -> None:
    assert len(a) == len(b), f"{what}: {len(a)} vs {len(b)} Gaussians"
    if sh:
        assert a.sh_degree == b.sh_degree, f"{what}: SH degree {a.sh_degree} vs {b.sh_degree}"
    err = {
        "means": (a.means - b.means).abs().max(),
        "scales": (a.scales - b.scales).abs().max(),
        "sh0": (a.sh0 - b.sh0).abs().max(),
        "shN": (a.shN - b.shN).abs().max() if sh and a.shN.numel() else torch.tensor(0.0),
        "alpha": (torch.sigmoid(a.opacities) - torch.sigmoid(b.opacities)).abs().max(),
    }
    for k, v in err.items():
        assert float(v) <= getattr(tol, k), f"{what}: {k} differ by {float(v):.3g} > {getattr(tol, k):.3g}"
    dot = (a.normalized_quats() * b.normalized_quats()).sum(1).abs().min()
    assert float(dot) >= tol.quat_dot, f"{what}: a rotation differs (|dot| = {float(dot):.6f})"


def _lego() -> GaussianSplats:
    return read_splats(LEGO)


# -- the quantization of each format, as vqpress writes it ---------------------------------------

SPZ_TOL = Tol(means=2.0**-13 + 1e-6, scales=1 / 32 + 1e-5, sh0=0.5 / (0.15 * 255) + 1e-5, shN=1 / 16 + 1 / 256 + 1e-5,
              alpha=0.5 / 255 + 1e-6, quat_dot=0.995)  # fmt: skip
SPLAT_TOL = Tol(means=0.0, scales=1e-5, sh0=0.5 / 255 / SH_C0 + 1e-5, shN=0.0, alpha=0.5 / 255 + 1e-6, quat_dot=0.99)


def _spz_source(s: GaussianSplats) -> GaussianSplats:
    """The source as spz can hold it: SH clamped to [-1, 127/128], DC to +-3.33, log-scales to [-10, 5.9]."""
    out = s.index(torch.arange(len(s)))
    out.shN = out.shN.clamp(-1.0, 127 / 128)
    out.sh0 = out.sh0.clamp(-127.5 / (0.15 * 255), 127.5 / (0.15 * 255))
    out.scales = out.scales.clamp(-10.0, 255 / 16 - 10)
    return out


def _sog_tol(path: Path, files: Path | None = None) -> Tol:
    """SOG's steps as the file states them: half a 16-bit step of the log-range for positions
    (times the expm1 slope at the range's end), half the widest codebook gap for the rest."""
    import zipfile

    if path.suffix == ".sog":
        with zipfile.ZipFile(path) as zf:
            meta = json.loads(zf.read("meta.json"))
    else:
        meta = json.loads(path.read_text())
    lo, hi = np.array(meta["means"]["mins"]), np.array(meta["means"]["maxs"])
    step = float(((hi - lo) / 65535 / 2 * np.exp(np.maximum(abs(lo), abs(hi)))).max())

    def gap(cb: list[float]) -> float:
        return float(np.diff(np.sort(cb)).max() / 2) if len(cb) > 1 else 0.0

    return Tol(means=step * 1.01 + 1e-7, scales=gap(meta["scales"]["codebook"]) + 1e-5,
               sh0=gap(meta["sh0"]["codebook"]) + 1e-5, shN=float("inf"), alpha=0.5 / 255 + 1e-6,
               quat_dot=0.99)  # fmt: skip


def _cply_tol(path: Path, s: GaussianSplats) -> Tol:
    """Compressed PLY's steps: half a step of the widest chunk range per packed field."""
    from vqpress_server.core.splats.formats._plyheader import parse_header, read_element

    c = read_element(path, parse_header(path), "chunk")

    def half_step(prefix: str, axes: str, bits: tuple[int, int, int]) -> float:
        spans = [
            (c[f"max_{prefix}{a}"] - c[f"min_{prefix}{a}"]).max() / ((1 << b) - 1) / 2
            for a, b in zip(axes, bits, strict=True)
        ]
        return float(max(spans))

    return Tol(means=half_step("", "xyz", (11, 10, 11)) + 1e-6, scales=half_step("scale_", "xyz", (11, 10, 11)) + 1e-5,
               sh0=half_step("", "rgb", (8, 8, 8)) / SH_C0 + 1e-5, shN=1 / 32 + 1e-5, alpha=0.5 / 255 + 1e-6,
               quat_dot=0.999)  # fmt: skip


# -- vqpress writes, splat-transform reads -------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["scene.ply", "scene.splat", "scene.spz", "scene.sog", "meta.json", "scene.compressed.ply"]
)
def test_splat_transform_reads_what_vqpress_writes(tmp_path: Path, name: str) -> None:
    src = _lego()
    out = tmp_path / name
    write_splats(src, out, options=WriteOptions(sog=SogConfig(sh_palette=256)))
    ours = read_splats(out)
    theirs = st_read(out, tmp_path)
    # splat-transform decodes the file exactly as vqpress does (a .splat rotation byte v is
    # v / 255 * 2 - 1 there, (v - 128) / 128 in antimatter15's viewer and vqpress: a 1/256 apart)
    tight = replace(TIGHT, quat_dot=0.9999) if name.endswith(".splat") else TIGHT
    assert_agree(ours, theirs, tight, f"{name}: vqpress vs splat-transform", sh=not name.endswith(".splat"))
    # ... and that is the source within the format's quantization (SOG and compressed PLY reorder)
    if name.endswith((".sog", "meta.json", ".compressed.ply")):
        src = src.index(morton_order(src.means))
    if name == "scene.ply":
        assert_agree(ours, src, Tol(0, 0, 0, 0, 0, 1 - 1e-6), "ply vs source")  # lossless
    elif name.endswith(".splat"):
        src.sh0 = src.sh0.clamp(-0.5 / SH_C0, 0.5 / SH_C0)  # .splat stores the colour clamped to [0, 1]
        assert_agree(ours, src, SPLAT_TOL, "splat vs source", sh=False)
    elif name.endswith(".spz"):
        assert_agree(ours, _spz_source(src), SPZ_TOL, "spz vs source")
    elif name.endswith((".sog", "meta.json")):
        assert_agree(ours, src, _sog_tol(out), "sog vs source")
        assert float((ours.shN - src.shN).pow(2).mean().sqrt()) < 0.05  # a 256-entry palette for 1,000
    else:
        assert_agree(ours, src, _cply_tol(out, src), "compressed ply vs source")


# -- splat-transform writes, vqpress reads -------------------------------------------------------


@pytest.mark.parametrize(
    "scene,name",
    [(LEGO, n) for n in ("st.ply", "st.spz", "meta.json", "st.compressed.ply")]  # unbundled SOG here,
    + [(DONUT, n) for n in ("st.spz", "st.sog")],  # bundled (and without SH) here
    ids=lambda v: v.stem if isinstance(v, Path) else v,
)
def test_vqpress_reads_what_splat_transform_writes(tmp_path: Path, scene: Path, name: str) -> None:
    out = tmp_path / name
    st(scene, out)
    ours = read_splats(out)
    theirs = st_read(out, tmp_path)
    assert len(ours) == len(read_splats(scene))
    assert_agree(ours, theirs, TIGHT, f"{name}: vqpress vs splat-transform")
    if name == "st.spz":  # spz keeps the order: against the source within spz's quantization
        assert_agree(ours, _spz_source(read_splats(scene)), SPZ_TOL, "splat-transform's spz vs source")


@pytest.mark.parametrize("path", [BIKER_SPZ, BIKER_CPLY], ids=["biker_spz_v4", "biker_supersplat_cply"])
def test_playcanvas_files_read_as_splat_transform_reads_them(tmp_path: Path, path: Path) -> None:
    assert_agree(read_splats(path), st_read(path, tmp_path), TIGHT, path.name)


def test_shared_playcanvas_scenes_read_as_splat_transform_reads_them(
    tmp_path: Path, shared_scene: Callable[..., Path]
) -> None:
    d = shared_scene("playcanvas_compressed")
    for p in (d / "biker.spz", d / "guitar.compressed.ply"):
        assert_agree(read_splats(p), st_read(p, tmp_path), TIGHT, p.name)
    lod = shared_scene("playbot_sog") / "4_0" / "meta.json"  # 8,406 Gaussians with SH degree 2
    ours = read_splats(lod)
    assert ours.sh_degree == 2
    assert_agree(ours, st_read(lod, tmp_path), TIGHT, "playbot LOD 4")


# -- .spz axes -----------------------------------------------------------------------------------


def test_vqpress_spz_opens_where_its_ply_opens_in_splat_transform(tmp_path: Path) -> None:
    src = _lego()
    write_splats(src, tmp_path / "a.spz")
    write_splats(src, tmp_path / "a.ply")
    from_spz, from_ply = st_read(tmp_path / "a.spz", tmp_path), st_read(tmp_path / "a.ply", tmp_path)
    assert_agree(from_spz, _spz_source(from_ply), SPZ_TOL, "splat-transform: our .spz vs our .ply")
    # the RUB option is the other convention: splat-transform then sees y and z mirrored
    write_splats(src, tmp_path / "rub.spz", options=WriteOptions(spz_axes="rub"))
    rub = st_read(tmp_path / "rub.spz", tmp_path)
    flip = torch.tensor([1.0, -1.0, -1.0])
    assert (rub.means * flip - from_ply.means).abs().max() <= SPZ_TOL.means
    assert (rub.means - from_ply.means).abs().max() > 1.0  # lego spans a few units: clearly not upright


def test_splat_transform_spz_reads_upright_in_vqpress(tmp_path: Path) -> None:
    st(LEGO, tmp_path / "st.spz")
    assert_agree(read_splats(tmp_path / "st.spz"), _spz_source(_lego()), SPZ_TOL, "splat-transform's .spz")
    rub = read_splats(tmp_path / "st.spz", options=ReadOptions(spz_axes="rub"))
    assert (rub.means - _lego().means).abs().max() > 1.0


def test_playcanvas_biker_spz_is_stored_in_rub(tmp_path: Path) -> None:
    """PlayCanvas' biker.spz is the biker.compressed.ply turned 180 degrees about x: its engine
    shows it upright without the PLY's flip. splat-transform reads it as stored, as vqpress does by
    default; ``spz_axes="rub"`` brings it to the PLY's axes."""
    stored = st_read(BIKER_SPZ, tmp_path)
    assert_agree(read_splats(BIKER_SPZ), stored, TIGHT, "biker.spz as stored")
    rub = read_splats(BIKER_SPZ, options=ReadOptions(spz_axes="rub"))
    cply = read_splats(BIKER_CPLY)
    assert (rub.means - cply.means).abs().max() < 2.5e-4
    assert (stored.means - cply.means).abs().max() > 0.5


# -- spz-js, an independent SPZ reader -----------------------------------------------------------

_SPZ_JS_DUMP = """
import { readFileSync, writeFileSync } from 'fs';
import { pathToFileURL } from 'url';
const [lib, input, output] = process.argv.slice(2);
const { loadSpz } = await import(pathToFileURL(lib).href);
const buf = readFileSync(input);
const gs = await loadSpz(new Uint8Array(buf));  // a view: an ArrayBuffer never settles
if (!gs) { console.error('spz-js could not decode the file'); process.exit(3); }
for (const k of ['positions', 'scales', 'rotations', 'alphas', 'colors', 'sh']) {
    writeFileSync(`${output}.${k}.f32`, new Uint8Array(gs[k].buffer, gs[k].byteOffset, gs[k].byteLength));
}
writeFileSync(output, JSON.stringify({ numPoints: gs.numPoints, shDegree: gs.shDegree }));
"""


def spz_js_read(path: Path, tmp: Path) -> GaussianSplats:
    if not SPZ_JS.is_file():
        pytest.skip(f"spz-js 1.2.5 is missing (run `make node-tools`; looked in {NODE_TOOLS})")
    script, out = tmp / "spz_dump.mjs", tmp / f"{path.stem}.spzjs.json"
    script.write_text(_SPZ_JS_DUMP)
    assert NODE is not None
    p = subprocess.run([NODE, str(script), str(SPZ_JS), str(path), str(out)], capture_output=True, text=True,
                       timeout=TOOL_TIMEOUT_S)  # fmt: skip
    if p.returncode != 0:
        pytest.fail(f"spz-js could not read {path.name}:\n{p.stderr[-3000:]}")
    N = json.loads(out.read_text())["numPoints"]

    def f32(k: str) -> np.ndarray:  # spz-js's Float32Array, raw
        return np.fromfile(f"{out}.{k}.f32", dtype="<f4")

    xyzw = f32("rotations").reshape(N, 4)
    return GaussianSplats.from_numpy(
        means=f32("positions").reshape(N, 3),
        quats=xyzw[:, [3, 0, 1, 2]],
        scales=f32("scales").reshape(N, 3),
        opacities=f32("alphas"),
        sh0=f32("colors").reshape(N, 1, 3),
        shN=f32("sh").reshape(N, -1, 3),  # [N, coefficient, rgb], as spz stores it
    )


def test_spz_js_reads_vqpress_spz_as_vqpress_and_splat_transform_do(tmp_path: Path) -> None:
    src = _lego()
    write_splats(src, tmp_path / "a.spz")
    ours = read_splats(tmp_path / "a.spz")
    theirs = spz_js_read(tmp_path / "a.spz", tmp_path)
    assert_agree(ours, theirs, TIGHT, "spz-js vs vqpress")
    assert_agree(theirs, _spz_source(src), SPZ_TOL, "spz-js vs source")
    assert_agree(theirs, st_read(tmp_path / "a.spz", tmp_path), TIGHT, "spz-js vs splat-transform")


# -- a .vqp exported for the web viewers ---------------------------------------------------------


@pytest.mark.parametrize("name", ["scene.sog", "scene.compressed.ply"])
def test_vqp_exported_for_the_viewers_opens_in_splat_transform(tmp_path: Path, name: str) -> None:
    from vqpress_server.core.splats.compress import compress_file, decompress_file
    from vqpress_server.core.splats.formats import ExportFilter
    from vqpress_server.core.splats.quantize import QuantizeConfig, decode_vqp_splats

    cfg = QuantizeConfig(dc_codebook=256, sh_codebook=64, scale_codebook=256, rot_codebook=256, kmeans_iters=4)
    compress_file(LEGO, tmp_path / "lego.vqp", cfg, evaluate=False, device="cpu")
    written = decompress_file(tmp_path / "lego.vqp", tmp_path / name, filters=ExportFilter(sh_degree=1),
                              options=WriteOptions(sog=SogConfig(sh_palette=256)))  # fmt: skip
    assert written.sh_degree == 1
    theirs = st_read(tmp_path / name, tmp_path)
    assert_agree(read_splats(tmp_path / name), theirs, TIGHT, f"{name} from a .vqp")
    decoded = decode_vqp_splats((tmp_path / "lego.vqp").read_bytes()).with_sh_degree(1)
    decoded = decoded.index(morton_order(decoded.means))
    assert (theirs.means - decoded.means).abs().max() < 0.01  # the .vqp's scene, within the format's steps
