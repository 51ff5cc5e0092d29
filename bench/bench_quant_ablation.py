"""Where quantization loses its dB: one attribute at a time, and the rate-distortion curve of each setting.

    python bench/bench_quant_ablation.py SCENE.ply --cameras cameras.json [--photos DIR] [--views N]
        [--variants default,high_ratio,...] [--out results.json]

The scene is quantized with each variant; the decoded scene is rendered at the eval cameras (the
``test`` split of cameras.json, all of them unless --views) against the original's renders (and
against the photos of --photos, a NeRF-synthetic folder with transforms_*.json, when given).

Ablation rows ("only:<attr>") take one attribute from the decoded default scene and keep every
other attribute at full precision: positions, opacity, dc, sh, scale, rot. Their bytes are the
sections of that attribute. Variant rows are whole files: bytes on disk, ratio to the .ply, PSNR and
SSIM. Pruning (``prune``) is quantize_splats' own.
Importance-weighted variants weight k-means by the summed blending weight of each Gaussian at
the ``train`` cameras (``views``) or by opacity x footprint (``footprint``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "client"), str(REPO / "server")]

SECTIONS = {  # attribute -> its .vqp sections
    "positions": ("means_morton", "means"),
    "opacity": ("opacities",),
    "dc": ("dc_codebook", "dc_idx"),
    "sh": ("sh_codebook", "sh_idx"),
    "scale": ("scale_codebook", "scale_idx"),
    "rot": ("rot_codebook", "rot_idx"),
}
FIELD_OF = {"positions": "means", "opacity": "opacities", "dc": "sh0", "sh": "shN", "scale": "scales", "rot": "quats"}

# name -> (preset, overrides of QuantizeConfig fields). A variant keeps its preset's importance weights
# and pruning unless it sets them (the presets gained both after BENCHMARKS 3b's first tables, whose
# rows were measured with the unweighted, unpruned presets of their day).
VARIANTS: dict[str, tuple[str, dict]] = {
    "high_ratio": ("high_ratio", {}),
    "default": ("default", {}),
    "high_quality": ("high_quality", {}),
    "default+views": ("default", {"importance": "views"}),
    "high_ratio+views": ("high_ratio", {"importance": "views"}),
    "high_quality+views": ("high_quality", {"importance": "views"}),
    "dc16k": ("default", {"dc_codebook": 16384}),
    "dc64k": ("default", {"dc_codebook": 65536}),
    "sh2k": ("default", {"sh_codebook": 2048}),
    "sh8k": ("default", {"sh_codebook": 8192}),
    "scale16k": ("default", {"scale_codebook": 16384}),
    "rot16k": ("default", {"rot_codebook": 16384}),
    "rot1k": ("default", {"rot_codebook": 1024}),
    "sh2k+views": ("default", {"sh_codebook": 2048, "importance": "views"}),
    "sh8k+views": ("default", {"sh_codebook": 8192, "importance": "views"}),
    "dc16k+views": ("default", {"dc_codebook": 16384, "importance": "views"}),
    "dc16k+sh2k+views": ("default", {"dc_codebook": 16384, "sh_codebook": 2048, "importance": "views"}),
    "scale16k+views": ("default", {"scale_codebook": 16384, "importance": "views"}),
    "rot1k+sh2k+views": ("default", {"rot_codebook": 1024, "sh_codebook": 2048, "importance": "views"}),
    "sh_degree2+views": ("default", {"sh_degree": 2, "importance": "views"}),
    "fp16pos+views": ("default", {"position_precision": "fp16", "importance": "views"}),
    "iters30+views": ("default", {"kmeans_iters": 30, "importance": "views"}),
    "prune10+views": ("default", {"importance": "views", "prune": 0.10}),
    "prune30+views": ("default", {"importance": "views", "prune": 0.30}),
    "prune30+views+sh2k+dc16k": (
        "default",
        {"importance": "views", "prune": 0.30, "sh_codebook": 2048, "dc_codebook": 16384},
    ),
    "prune50+views+sh2k+dc16k": (
        "default",
        {"importance": "views", "prune": 0.50, "sh_codebook": 2048, "dc_codebook": 16384},
    ),
    "v14p10": ("default", {"importance": "views", "position_bits": 14, "prune": 0.1}),
    "v14p10sc16k": ("default", {"importance": "views", "position_bits": 14, "prune": 0.1, "scale_codebook": 16384}),
    "v14p10s2k": ("default", {"importance": "views", "position_bits": 14, "prune": 0.1, "sh_codebook": 2048,
                              "scale_codebook": 16384}),
    "v14p10s4k": ("default", {"importance": "views", "position_bits": 14, "prune": 0.1, "sh_codebook": 4096,
                              "scale_codebook": 16384}),
    "v13p20s4k": ("default", {"importance": "views", "position_bits": 13, "prune": 0.2, "sh_codebook": 4096,
                              "scale_codebook": 16384}),
    "v14p20s4kr2k": ("default", {"importance": "views", "position_bits": 14, "prune": 0.2, "sh_codebook": 4096,
                                 "scale_codebook": 16384, "rot_codebook": 2048}),
    "v14p15s4k": ("default", {"importance": "views", "position_bits": 14, "prune": 0.15, "sh_codebook": 4096,
                              "scale_codebook": 16384}),
    "default-prune0": ("default", {"prune": 0.0}),
    "default-16bit": ("default", {"position_bits": 16}),
    "default-16bit-prune0": ("default", {"position_bits": 16, "prune": 0.0}),
    "v14p10hr": ("high_ratio", {"importance": "views", "position_bits": 14, "prune": 0.1}),
    "v14p10hq": ("high_quality", {"importance": "views", "position_bits": 14, "prune": 0.1}),
}  # fmt: skip


def load_photos(folder: Path, n: int, device: torch.device) -> list[torch.Tensor] | None:
    """The first n photos of transforms_val.json / transforms_test.json in folder, composited on white."""
    from PIL import Image

    for name in ("transforms_val.json", "transforms_test.json"):
        path = folder / name
        if path.is_file():
            frames = json.loads(path.read_text())["frames"][:n]
            out = []
            for f in frames:
                img = np.asarray(Image.open(folder / (f["file_path"].lstrip("./") + ".png")).convert("RGBA"))
                rgba = torch.from_numpy(img.astype(np.float32) / 255.0)
                out.append((rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])).to(device))
            return out
    return None


def main() -> None:
    from vqpress.vqp import read_vqp
    from vqpress_server.core.metrics import psnr, ssim
    from vqpress_server.core.render.cameras import read_cameras_json
    from vqpress_server.core.render.splats import render_views
    from vqpress_server.core.splats.formats import load_scene
    from vqpress_server.core.splats.importance import view_importance
    from vqpress_server.core.splats.quantize import QuantizeConfig, decode_vqp_splats, quantize_splats

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scene")
    ap.add_argument("--cameras", required=True)
    ap.add_argument("--photos", default=None)
    ap.add_argument("--views", type=int, default=0, help="eval views (0: the whole test split)")
    ap.add_argument("--importance-views", type=int, default=0, help="train views for importance (0: all)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    scene, _ = load_scene(args.scene)
    scene = scene.to(dev)
    ply_bytes = Path(args.scene).stat().st_size
    test = read_cameras_json(args.cameras, split="test")
    cams = test.cameras[: args.views] if args.views else test.cameras
    bg = test.background or (1.0, 1.0, 1.0)
    train_cams = read_cameras_json(args.cameras, split="train").cameras
    if args.importance_views:
        train_cams = train_cams[: args.importance_views]
    refs = render_views(scene, cams, background=bg)
    photos = load_photos(Path(args.photos), len(cams), dev) if args.photos else None
    print(
        f"scene {args.scene}: {scene.num_gaussians} Gaussians, {ply_bytes} B; {len(cams)} eval views, "
        f"{len(train_cams)} importance views, device {dev}",
        flush=True,
    )

    def score(s) -> dict[str, float]:
        imgs = render_views(s, cams, background=bg)
        out = {
            "psnr": float(np.mean([psnr(i, r) for i, r in zip(imgs, refs, strict=True)])),
            "ssim": float(np.mean([ssim(i, r) for i, r in zip(imgs, refs, strict=True)])),
        }
        if photos is not None:
            out["psnr_photos"] = float(np.mean([psnr(i, p) for i, p in zip(imgs, photos, strict=True)]))
        return out

    rows = []
    base = score(scene)
    rows.append({"name": "original (.ply)", "bytes": ply_bytes, **base})
    if photos is not None:
        print(f"original vs photos {base['psnr_photos']:.2f} dB", flush=True)

    weights_cache: dict[str, torch.Tensor] = {}

    def weights(kind: str) -> torch.Tensor | None:
        if kind == "none":
            return None
        if kind not in weights_cache:
            t0 = time.perf_counter()
            w = view_importance(scene, train_cams)
            weights_cache[kind] = w
            print(f"importance {kind}: {time.perf_counter() - t0:.1f} s", flush=True)
        return weights_cache[kind]

    def run(name: str, preset: str, over: dict) -> tuple[dict, bytes, object]:
        # importance and prune are the preset's unless the variant sets them; quantize_splats prunes
        cfg = replace(QuantizeConfig.preset(preset), **over)
        t0 = time.perf_counter()
        q = quantize_splats(scene, cfg, weights=weights(cfg.importance))
        data = q.to_vqp_bytes()
        secs = time.perf_counter() - t0
        dec = decode_vqp_splats(data, device=dev)
        row = {"name": name, "bytes": len(data), "ratio": ply_bytes / len(data), "seconds": secs, **score(dec)}
        row["gaussians"] = q.num_gaussians
        row["section_bytes"] = read_vqp(data).section_bytes
        return row, data, (q, dec)

    for name in [v for v in args.variants.split(",") if v]:
        preset, over = VARIANTS[name]
        row, data, qd = run(name, preset, over)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "section_bytes"}), flush=True)
        if name in ("default", "default+views") and not args.no_ablation:
            q, dec = qd
            sec = row["section_bytes"]
            ordered = scene.index(torch.from_numpy(q.order).to(dev))
            for attr, field_name in FIELD_OF.items():
                mixed = replace(ordered, **{field_name: getattr(dec, field_name)})
                b = sum(sec.get(s, 0) for s in SECTIONS[attr])
                r = {
                    "name": f"{name} only:{attr}",
                    "bytes": b,
                    "bits_per_gaussian": 8 * b / q.num_gaussians,
                    **score(mixed),
                }
                rows.append(r)
                print(json.dumps(r), flush=True)

    print()
    print(f"| variant | bytes | ratio | PSNR vs original (dB) | SSIM |{' PSNR vs photos |' if photos else ''}")
    print(f"|---|---:|---:|---:|---:|{'---:|' if photos else ''}")
    for r in rows:
        ratio = f"{r['ratio']:.1f}x" if "ratio" in r else ("-" if r["name"].startswith("original") else "")
        extra = f" {r.get('psnr_photos', float('nan')):.2f} |" if photos else ""
        p = "inf" if r["name"].startswith("original") else f"{r['psnr']:.2f}"
        print(f"| {r['name']} | {r['bytes']:,} | {ratio} | {p} | {r['ssim']:.4f} |{extra}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
