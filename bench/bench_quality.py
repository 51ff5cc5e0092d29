"""Compression quality per scene and preset: ratio on disk, bits per Gaussian per section, PSNR/SSIM.

    python bench/bench_quality.py [--data DIR] [--device cuda|cpu] [--quick] [--out results.json]

Every scene file in the shared data that loads as splats (ply, compressed ply, splat, spz) is
compressed with the presets default, high_ratio and high_quality, then the decoded scene is rendered
against the original at the scene's cameras (cameras.json beside it: its test split and background)
or at 8 orbit cameras of 400x400 when it has none. --quick: default preset only, 2 views each.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PRESETS = ("default", "high_ratio", "high_quality")
SECTION_GROUPS = {  # report columns: bits per Gaussian summed over these sections
    "pos": ("means_morton", "means"),
    "opac": ("opacities",),
    "dc": ("dc_codebook", "dc_idx"),
    "sh": ("sh_codebook", "sh_idx"),
    "scale": ("scale_codebook", "scale_idx"),
    "rot": ("rot_codebook", "rot_idx"),
}


def data_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("VQPRESS_TEST_DATA") or REPO.parent / "shared" / "data")


def splat_scenes(root: Path) -> list[Path]:
    from vqpress_server.core.errors import VqpressInputError
    from vqpress_server.core.splats.formats import detect_format

    out = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in (".ply", ".splat", ".spz"):
            continue
        try:
            detect_format(p)
        except VqpressInputError:
            continue
        out.append(p)
    return out


def main() -> int:
    from vqpress_server.core.errors import VqpressInputError
    from vqpress_server.core.render.cameras import orbit_cameras
    from vqpress_server.core.splats.compress import compress_file, scene_cameras
    from vqpress_server.core.splats.formats import load_scene
    from vqpress_server.core.splats.quantize import QuantizeConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="shared data dir (default: VQPRESS_TEST_DATA, then ../shared/data)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    root = data_dir(args.data)
    presets = ("default",) if args.quick else PRESETS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in splat_scenes(root):
            found = scene_cameras(src)
            if found is not None:
                cams, bg, source = found
            else:
                try:
                    scene, _ = load_scene(src)
                except VqpressInputError as exc:
                    print(f"skip {src}: {exc}")
                    continue
                cams, bg, source = orbit_cameras(scene, n=8), None, "orbit"
                del scene
            if args.quick:
                cams = cams[:2]
            for preset in presets:
                cfg = QuantizeConfig.preset(preset)
                if args.quick:
                    cfg = replace(cfg, kmeans_iters=3)
                try:
                    rep = compress_file(
                        src, Path(tmp) / "out.vqp", cfg, cameras=cams, background=bg, device=args.device
                    )
                except VqpressInputError as exc:
                    print(f"skip {src} ({preset}): {exc}")
                    break
                d = rep.as_dict()
                d["cameras_source"] = source
                d["scene"] = str(src.relative_to(root))
                d["preset"] = preset
                rows.append(d)
                print(f"done {d['scene']} {preset}: {d['ratio']:.1f}x, {d['psnr']:.2f} dB", flush=True)

    groups = list(SECTION_GROUPS)
    print(f"\ncompression quality on {args.device}: decoded vs original renders\n")
    print(
        "| scene | preset | N | SH | input B | .vqp B | ratio | "
        + " | ".join(f"{g} b/G" for g in groups)
        + " | total b/G | PSNR dB | SSIM | views |"
    )
    print("|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(groups) + "---:|---:|---:|---|")
    for d in rows:
        bpg = d["bits_per_gaussian"]
        cells = " | ".join(f"{sum(bpg.get(s, 0.0) for s in SECTION_GROUPS[g]):.2f}" for g in groups)
        print(
            f"| {d['scene']} | {d['preset']} | {d['num_gaussians']:,} | {d['sh_degree']} | {d['input_bytes']:,} | "
            f"{d['output_bytes']:,} | {d['ratio']:.1f}x | {cells} | {bpg['total']:.1f} | {d['psnr']:.2f} | "
            f"{d['ssim']:.4f} | {d['num_cameras']} {d['cameras_source']} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"device": args.device, "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
