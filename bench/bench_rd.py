"""Rate-distortion of the web viewers' formats against vqpress: bytes on disk vs PSNR/SSIM.

Three phases, so that the files of the Node tool can be made where node is and evaluated where
the GPU is:

    python bench/bench_rd.py make SCENE.ply --name NAME --out DIR [--cameras cameras.json] [--pack]
    python bench/bench_rd.py eval DIR/NAME [--device cuda|cpu] [--views N] --out rd_NAME.json
    python bench/bench_rd.py summary rd_*.json

``make`` (needs node and ``make node-tools``) writes, per scene, PlayCanvas splat-transform 3.7.0's
outputs of the original scene: SOG at its default settings (``--sh-iterations 10``), SOG at the
highest quality it offers (SOG has one quality knob, the Lloyd iterations of its SH palette
k-means: ``--sh-iterations 50``), SPZ (its default, version 4) and compressed PLY, all with every
SH band. It records their bytes and commands in ``manifest.json`` with the scene's cameras.json
(the scene's own; for a scene without one, orbit cameras: 24 train views at 10 and 45 degrees of
elevation and 8 held-out test views at 25 degrees, as ``compress_file`` places them). ``--pack``
also stores the original as ``original.ply.zst`` (zstd level 19) so the folder can travel.

``eval`` (torch; gsplat on CUDA) compresses the original with vqpress's presets (``default``,
``high_quality``, ``high_ratio``; k-means weighted by the train cameras, never the test ones) and
writes it with vqpress's own SOG, SPZ and compressed-PLY writers, reads every file back with
vqpress's readers, renders the original and each decoded scene with the same renderer
(``core.render.splats.render``: gsplat on CUDA, its PyTorch twin on CPU) at every test camera, and
reports bytes, the ratio to the original .ply, and PSNR/SSIM against the original's renders.
A file of the manifest that is not in the folder (left behind to keep a travelling folder small)
is reported with its bytes and no quality.

``summary`` prints the markdown table and "bytes at equal PSNR": vqpress's rate-distortion curve
is its presets' Pareto front (no point that another beats in both bytes and PSNR), interpolated
linearly in log(bytes) against PSNR between neighbouring points; at each SOG file's PSNR, the
advantage is SOG's bytes over vqpress's interpolated bytes. Below vqpress's lowest PSNR the
smallest preset already beats SOG in both bytes and PSNR, so the advantage is at least SOG's
bytes over that preset's (printed with ">="); above vqpress's highest PSNR there is no figure.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ST_VERSION = "3.7.0"
SOG_HQ_ITERS = 50  # --sh-iterations of "highest quality" SOG (splat-transform's default is 10)
PRESETS = ("high_ratio", "default", "high_quality")
MANIFEST = "manifest.json"
ORIGINAL_ZST = "original.ply.zst"
ZSTD_LEVEL = 19

# splat-transform outputs: (method, file name, extra arguments, SH bands kept or None for all). The
# band-limited SOGs (-H) are SOG's own lower rates; one with bands >= the scene's degree is the
# default SOG again and is not made.
ST_OUTPUTS: tuple[tuple[str, str, tuple[str, ...], int | None], ...] = (
    ("splat-transform SOG (default)", "st_default.sog", (), None),
    (f"splat-transform SOG (-i {SOG_HQ_ITERS})", "st_hq.sog", ("-i", str(SOG_HQ_ITERS)), None),
    ("splat-transform SOG (-H 2)", "st_h2.sog", ("-H", "2"), 2),
    ("splat-transform SOG (-H 1)", "st_h1.sog", ("-H", "1"), 1),
    ("splat-transform SOG (-H 0)", "st_h0.sog", ("-H", "0"), 0),
    ("splat-transform SPZ v4", "st.spz", (), None),
    ("splat-transform compressed PLY", "st.compressed.ply", (), None),
)
# vqpress's own writers of the viewers' formats, from the original (made in eval)
VQ_WRITERS: tuple[tuple[str, str], ...] = (
    ("vqpress SOG", "vq.sog"),
    ("vqpress SPZ v2", "vq.spz"),
    ("vqpress compressed PLY", "vq.compressed.ply"),
)


# -- make ----------------------------------------------------------------------------------------


def _node_tools() -> Path:
    return Path(os.environ.get("VQPRESS_NODE_TOOLS") or REPO / ".node-tools")


def _st_cli() -> Path:
    return _node_tools() / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _orbit_cameras_json(src: Path) -> dict[str, Any]:
    """Cameras for a scene that has none: train views at 10 and 45 degrees, test views at 25."""
    from vqpress_server.core.render.cameras import camera_to_dict, orbit_cameras
    from vqpress_server.core.splats.formats import load_scene

    scene, _ = load_scene(src)
    cams = []
    for split, n, elevation in (("train", 12, 10.0), ("train", 12, 45.0), ("test", 8, 25.0)):
        for i, cam in enumerate(orbit_cameras(scene, n=n, elevation_deg=elevation)):
            d = camera_to_dict(cam)
            d.update(name=f"orbit_{elevation:g}_{i}", split=split)
            cams.append(d)
    return {"background": [0.0, 0.0, 0.0], "cameras": cams, "note": "orbit cameras made by bench_rd.py"}


def make(args: argparse.Namespace) -> int:
    from vqpress_server.core.splats.formats import read_splats

    node, cli = shutil.which("node"), _st_cli()
    if node is None or not cli.is_file():
        print(f"node or splat-transform {ST_VERSION} is missing (run `make node-tools`; looked for {cli})")
        return 2
    src = Path(args.scene).resolve()
    out = Path(args.out) / args.name
    out.mkdir(parents=True, exist_ok=True)
    scene = read_splats(src)
    cam_src = Path(args.cameras) if args.cameras else src.parent / "cameras.json"
    if cam_src.is_file():
        shutil.copyfile(cam_src, out / "cameras.json")
        cameras_source = str(cam_src)
    else:
        (out / "cameras.json").write_text(json.dumps(_orbit_cameras_json(src)))
        cameras_source = "orbit (bench_rd.py make)"
    old = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).is_file() else {}
    old_files = {f["file"]: f for f in old.get("files", [])}
    sha = _sha256(src)
    skip = dict(item.split("=", 1) if "=" in item else (item, "not made") for item in args.skip)
    files = []
    for method, name, extra, bands in ST_OUTPUTS:
        if bands is not None and bands >= scene.sh_degree:
            continue
        if "-i" in extra and scene.sh_degree == 0:
            continue  # the iterations are the SH palette's: without SH it is the default SOG again
        dst = out / name
        # the actions (-H) follow the input; the SOG options are global
        glob, actions = (extra, ()) if bands is None else ((), extra)
        cmd = [node, str(cli), "-w", "-q", "-g", "cpu", *glob, str(src), *actions, str(dst)]
        shown = " ".join(["splat-transform", "-w", "-q", "-g", "cpu", *glob, src.name, *actions, name])
        if name in skip:
            files.append({"method": method, "file": name, "bytes": None, "command": shown, "not_made": skip[name]})
            print(f"{args.name}: {name}: {skip[name]}")
            continue
        if args.reuse and dst.is_file() and old.get("source_sha256") == sha:
            entry = old_files.get(name) or {}
            if entry.get("bytes") != dst.stat().st_size:  # written by a run that ended before its manifest
                entry = {"method": method, "file": name, "bytes": dst.stat().st_size, "command": shown, "seconds": None}
            print(f"{args.name}: reuse {name}", flush=True)
            files.append(entry)
            continue
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0 or not dst.is_file():
            print(f"{shown} failed ({p.returncode}):\n{p.stderr[-3000:]}")
            return 1
        secs = time.perf_counter() - t0
        files.append(
            {"method": method, "file": name, "bytes": dst.stat().st_size, "command": shown, "seconds": round(secs, 1)}
        )
        print(f"{args.name}: {name} {dst.stat().st_size:,} B in {secs:.0f} s", flush=True)
    if args.pack and not (args.reuse and (out / ORIGINAL_ZST).is_file() and old.get("source_sha256") == sha):
        import zstandard

        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1)
        with open(src, "rb") as fi, open(out / ORIGINAL_ZST, "wb") as fo:
            cctx.copy_stream(fi, fo)
    manifest = {
        "name": args.name,
        "source": str(src),
        "source_name": src.name,
        "source_bytes": src.stat().st_size,
        "source_sha256": sha,
        "num_gaussians": len(scene),
        "sh_degree": scene.sh_degree,
        "cameras_source": cameras_source,
        "splat_transform": ST_VERSION,
        "node": subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip(),
        "made": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    print(f"{args.name}: wrote {out / MANIFEST}")
    return 0


# -- eval ----------------------------------------------------------------------------------------


def _original(folder: Path, manifest: dict[str, Any], tmp: Path) -> Path:
    """The original scene: ``original.ply.zst`` unpacked (checked against the manifest's sha256),
    else the manifest's source path."""
    packed = folder / ORIGINAL_ZST
    if packed.is_file():
        import zstandard

        dst = tmp / manifest["source_name"]
        with open(packed, "rb") as fi, open(dst, "wb") as fo:
            zstandard.ZstdDecompressor().copy_stream(fi, fo)
    else:
        dst = Path(manifest["source"])
    if _sha256(dst) != manifest["source_sha256"]:
        raise SystemExit(f"{dst}: sha256 differs from the manifest's; not the scene the files were made from")
    return dst


def _evaluate(decoded: Any, refs: Sequence[Any], cameras: Sequence[Any], bg: Sequence[float]) -> dict[str, Any]:
    from vqpress_server.core.metrics import psnr, ssim
    from vqpress_server.core.render.splats import render

    psnrs, ssims = [], []
    for ref, cam in zip(refs, cameras, strict=True):
        img = render(decoded, cam, background=bg)
        psnrs.append(psnr(img, ref))
        ssims.append(ssim(img, ref))
    return {
        "psnr": sum(psnrs) / len(psnrs),
        "ssim": sum(ssims) / len(ssims),
        "psnr_per_view": psnrs,
        "num_gaussians": len(decoded),
        "sh_degree": decoded.sh_degree,
    }


def evaluate(args: argparse.Namespace) -> int:
    import torch
    from vqpress_server.core.render.cameras import read_cameras_json
    from vqpress_server.core.render.splats import render
    from vqpress_server.core.splats.compress import compress_file
    from vqpress_server.core.splats.formats import load_scene, write_splats
    from vqpress_server.core.splats.quantize import QuantizeConfig, decode_vqp_splats

    folder = Path(args.folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    dev = torch.device(args.device)
    test = read_cameras_json(folder / "cameras.json", split="test")
    train = read_cameras_json(folder / "cameras.json", split="train").cameras
    cameras = test.cameras[: args.views] if args.views else test.cameras
    bg = test.background or (0.0, 0.0, 0.0)
    rows: list[dict[str, Any]] = []
    result = {
        "scene": manifest["name"],
        "source_name": manifest["source_name"],
        "source_bytes": manifest["source_bytes"],
        "num_gaussians": manifest["num_gaussians"],
        "sh_degree": manifest["sh_degree"],
        "cameras_source": manifest["cameras_source"],
        "num_views": len(cameras),
        "num_train_views": len(train),
        "device": str(dev),
        "backend": "gsplat" if dev.type == "cuda" else "torch",
        "torch": torch.__version__,
        "splat_transform": manifest["splat_transform"],
        "rows": rows,
    }

    def read_back(path: Path) -> tuple[Any, dict[str, int]]:
        """A viewer format's file as vqpress loads it: read, then non-finite values repaired (an 8-bit
        alpha of 255 reads as an infinite logit; the repair clamps it to 20, alpha 1 - 2e-9)."""
        decoded, repair = load_scene(path)
        return decoded, {k: v for k, v in repair.as_dict().items() if v}

    def add(method: str, path: Path, decoded: Any, extra: dict[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        row = {"method": method, "file": path.name, "bytes": path.stat().st_size, **(extra or {})}
        row.update(_evaluate(decoded.to(dev), refs, cameras, bg))
        row["ratio"] = manifest["source_bytes"] / row["bytes"]
        row["eval_seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(f"{manifest['name']}: {method}: {row['bytes']:,} B  {row['ratio']:.1f}x  "
              f"{row['psnr']:.2f} dB  SSIM {row['ssim']:.4f}", flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = _original(folder, manifest, tmp)
        original, _ = load_scene(src)
        original = original.to(dev)
        refs = [render(original, cam, background=bg) for cam in cameras]
        print(f"{manifest['name']}: {len(original):,} Gaussians, {len(cameras)} test views on {dev}", flush=True)

        for preset in PRESETS:
            dst = tmp / f"{preset}.vqp"
            t0 = time.perf_counter()
            cfg = QuantizeConfig.preset(preset)
            compress_file(src, dst, cfg, importance_cameras=train or None, evaluate=False, device=dev)
            secs = round(time.perf_counter() - t0, 1)
            add(f"vqpress {preset}", dst, decode_vqp_splats(dst.read_bytes(), name=str(dst), device=dev),
                {"compress_seconds": secs})  # fmt: skip
            if args.keep:  # the files themselves, e.g. to re-encode them later with another writer
                Path(args.keep).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dst, Path(args.keep) / f"{manifest['name']}_{preset}.vqp")
        for method, name in VQ_WRITERS:
            dst = tmp / name
            t0 = time.perf_counter()
            write_splats(original, dst)
            secs = round(time.perf_counter() - t0, 1)
            decoded, repaired = read_back(dst)
            add(method, dst, decoded, {"compress_seconds": secs, "repaired": repaired})
        for f in manifest["files"]:
            path = folder / f["file"]
            if f["bytes"] is None:
                rows.append({**f, "ratio": None, "psnr": None, "ssim": None, "note": f["not_made"]})
                print(f"{manifest['name']}: {f['method']}: not made ({f['not_made']})")
                continue
            if not path.is_file():
                rows.append({**f, "ratio": manifest["source_bytes"] / f["bytes"], "psnr": None, "ssim": None,
                             "note": "not in the folder: bytes only"})  # fmt: skip
                print(f"{manifest['name']}: {f['method']}: {f['bytes']:,} B (file not here: not evaluated)")
                continue
            assert path.stat().st_size == f["bytes"], f"{path}: not the file the manifest measured"
            decoded, repaired = read_back(path)
            add(f["method"], path, decoded, {"command": f["command"], "repaired": repaired})
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


# -- summary -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    bytes: int
    psnr: float


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats (fewer or equal bytes and higher or equal PSNR, one strictly),
    sorted by bytes: along it, PSNR rises with bytes."""
    front = []
    for p in sorted(points, key=lambda q: (q.bytes, -q.psnr)):
        if not front or p.psnr > front[-1].psnr:
            front.append(p)
    return front


def bytes_at_psnr(curve: Sequence[Point], psnr: float) -> tuple[float | None, str]:
    """The bytes of ``curve`` (its Pareto front) at ``psnr``: log(bytes) interpolated linearly in PSNR.

    Returns (bytes, how): "interpolated", "bound" (``psnr`` is below the curve: its smallest point
    already reaches more, so the bytes needed are at most that point's) or "above" (None: the curve
    does not reach ``psnr``)."""
    front = pareto_front(curve)
    if not front:
        return None, "above"
    if psnr <= front[0].psnr:
        return float(front[0].bytes), "bound" if psnr < front[0].psnr else "interpolated"
    for a, b in zip(front, front[1:], strict=False):
        if a.psnr <= psnr <= b.psnr:
            t = (psnr - a.psnr) / (b.psnr - a.psnr)
            return math.exp((1 - t) * math.log(a.bytes) + t * math.log(b.bytes)), "interpolated"
    return None, "above"


def equal_psnr_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per SOG file of splat-transform: its bytes over vqpress's presets' bytes at its PSNR (a file
    without a PSNR gets no figure; ``how`` then says why)."""
    curve = [
        Point(r["bytes"], r["psnr"])
        for r in result["rows"]
        if r["method"].startswith("vqpress ") and r["file"].endswith(".vqp") and r["psnr"] is not None
    ]
    out = []
    for r in result["rows"]:
        if not r["method"].startswith("splat-transform SOG"):
            continue
        if r["psnr"] is None:  # not made, or not carried to where eval ran
            out.append({"scene": result["scene"], "method": r["method"], "bytes": r["bytes"], "psnr": None,
                        "vqpress_bytes": None, "how": r.get("note", "not evaluated"), "advantage": None})  # fmt: skip
            continue
        vq, how = bytes_at_psnr(curve, r["psnr"])
        adv = r["bytes"] / vq if vq else None
        out.append({"scene": result["scene"], "method": r["method"], "bytes": r["bytes"], "psnr": r["psnr"],
                    "vqpress_bytes": vq, "how": how, "advantage": adv})  # fmt: skip
    return out


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def summary(args: argparse.Namespace) -> int:
    results = [json.loads(Path(p).read_text()) for p in args.results]
    lines = []
    for res in results:
        lines += [
            f"**{res['scene']}** ({res['source_name']}, {res['num_gaussians']:,} Gaussians, SH {res['sh_degree']}, "
            f"{res['source_bytes']:,} B): {res['num_views']} test views ({res['cameras_source']}), "
            f"{res['backend']} on {res['device']}",
            "",
            "| method | bytes | ratio | Gaussians | SH | PSNR dB | SSIM | note |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in sorted(res["rows"], key=lambda r: -(r["bytes"] or 0)):
            lines.append(
                f"| {r['method']} | {_fmt(r['bytes'], ',')} | {_fmt(r['ratio'], '.1f')}{'x' if r['ratio'] else ''} | "
                f"{_fmt(r.get('num_gaussians'), ',')} | {_fmt(r.get('sh_degree'), 'd')} | {_fmt(r['psnr'], '.2f')} | "
                f"{_fmt(r['ssim'], '.4f')} | {r.get('note', '')} |"
            )
        lines.append("")
    lines += [
        "Bytes at equal PSNR (vqpress's presets' Pareto front, log(bytes) interpolated in PSNR, at SOG's PSNR):",
        "",
        "| scene | SOG | SOG bytes | SOG PSNR dB | vqpress bytes at that PSNR | SOG / vqpress | >= 1.5x |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for res in results:
        for e in equal_psnr_rows(res):
            adv, how = e["advantage"], e["how"]
            if e["psnr"] is None:
                lines.append(f"| {e['scene']} | {e['method']} | {_fmt(e['bytes'], ',')} | n/a | n/a | n/a | {how} |")
                continue
            if adv is None:
                vq, cell, ok = "not reached", "n/a", "no (vqpress's presets do not reach this PSNR)"
            else:
                bound = how == "bound"  # below vqpress's lowest PSNR: its smallest preset beats SOG outright
                vq = f"{'<= ' if bound else ''}{e['vqpress_bytes']:,.0f}"
                cell = f"{'>= ' if bound else ''}{adv:.2f}x"
                ok = "yes" if adv >= 1.5 else "not shown (a lower bound)" if bound else "no"
            lines.append(f"| {e['scene']} | {e['method']} | {e['bytes']:,} | {e['psnr']:.2f} | {vq} | {cell} | {ok} |")
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="phase", required=True)
    m = sub.add_parser("make", help="splat-transform's files of one scene, and the manifest (needs node)")
    m.add_argument("scene", help="the original scene (.ply)")
    m.add_argument("--name", required=True, help="the scene's folder name under --out")
    m.add_argument("--out", required=True)
    m.add_argument("--cameras", help="cameras.json (default: the one beside the scene, else orbit cameras)")
    m.add_argument("--pack", action="store_true", help=f"also store the original as {ORIGINAL_ZST}")
    m.add_argument("--reuse", action="store_true", help="keep the files already made from the same scene")
    why = "a file of splat-transform not to make, and why (recorded in the manifest); repeatable"
    m.add_argument("--skip", action="append", default=[], metavar="FILE[=WHY]", help=why)
    e = sub.add_parser("eval", help="vqpress's files, every file decoded and rendered against the original")
    e.add_argument("folder", help="a scene folder that make wrote")
    e.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    e.add_argument("--views", type=int, default=0, help="only the first N test views (0 = all)")
    e.add_argument("--out", help="write the result JSON here")
    e.add_argument("--keep", metavar="DIR", help="also keep vqpress's .vqp files here, as NAME_PRESET.vqp")
    s = sub.add_parser("summary", help="markdown tables from eval's JSON files")
    s.add_argument("results", nargs="+")
    args = ap.parse_args(argv)
    if args.phase == "make":
        return make(args)
    if args.phase == "eval":
        if args.device is None:
            import torch

            args.device = "cuda" if torch.cuda.is_available() else "cpu"
        return evaluate(args)
    return summary(args)


if __name__ == "__main__":
    sys.exit(main())
