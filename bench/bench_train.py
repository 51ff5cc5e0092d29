"""Training benchmark: plain 3DGS vs Compact3D QAT vs post-hoc quantization of the plain result.

    python bench/bench_train.py [--steps 7000] [--quick] [--out train.json] [--scenes lego,fox]

Scenes (from the shared data folder): nerf_synthetic_lego_400 (400x400, white background) and
instant_ngp_fox (downscaled 2x to 540x960); every 8th photo is held out for PSNR/SSIM.

Schedule: the 30k-step 3DGS/Compact3D schedule scaled to --steps (default 7000, the length of the
gsplat reference run that reached 29.2 dB on lego, the shared trained_lego_sh3 scene), with
SplatTrainConfig.scale_schedule's floors: random init of 100k Gaussians in gsplat's box (3x the
scene scale), gsplat DefaultStrategy densifying every 100 steps in 500..3500 (no opacity reset
within it: the reset period stays 3000), SH degree +1 every 1000 steps, QAT from 3500 with a
re-assignment every 100 steps until 5833, pruning every 500 steps in 3500..4667; the same seed for
every method; codebooks 4096 (dc, scale, rot) / 512 (sh), 10 Lloyd iterations.
On one H100 lego takes about 3 minutes (two trainings plus the post-hoc quantization), fox a little more.

Rows: "3DGS" (the plain model, uncompressed .ply), "3DGS + post-hoc VQ" (core quantize of the plain
model with the same codebook sizes), "QAT" (the .vqp of the QAT codebooks). Bytes are the bytes
written (.ply or .vqp); the ratio is the plain .ply bytes over the row's bytes; the k-means share is
the part of the row's wall time spent in k-means (post-hoc: the whole quantization).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from vqpress_server.core.data import DatasetConfig, load_dataset
from vqpress_server.core.splats.train import SplatTrainConfig, train_splats

REPO = Path(__file__).resolve().parents[1]

SCENES = {
    "lego": ("nerf_synthetic_lego_400", DatasetConfig(background=(1.0, 1.0, 1.0), test_every=8)),
    "fox": ("instant_ngp_fox", DatasetConfig(downscale=2, test_every=8)),
}


def data_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("VQPRESS_TEST_DATA") or REPO.parent / "shared" / "data")


def run_scene(data: Path, name: str, steps: int, seed: int, downscale: int, device: str) -> list[dict]:
    folder, dcfg = SCENES[name]
    dcfg = replace(dcfg, downscale=dcfg.downscale * downscale)
    ds = load_dataset(data / folder, dcfg)
    base = SplatTrainConfig(seed=seed).scale_schedule(steps)
    plain_cfg = replace(base, qat=replace(base.qat, enabled=False))
    with tempfile.TemporaryDirectory() as tmp:
        plain = train_splats(ds, plain_cfg, checkpoint_dir=Path(tmp) / "plain", resume=False, device=device)
        qat = train_splats(ds, base, checkpoint_dir=Path(tmp) / "qat", resume=False, device=device)
    p, q = plain.report, qat.report
    H, W = ds.images[0].shape[:2]
    common = {"scene": name, "size": f"{W}x{H}", "steps": steps, "train_views": len(ds.train_indices)}
    common["test_views"] = len(ds.test_indices)
    ply = p["ply_bytes"]
    rows = [
        {
            **common,
            "method": "3DGS",
            "psnr": p["psnr_trained"],
            "ssim": p["ssim_trained"],
            "gaussians": p["num_gaussians"],
            "bytes": ply,
            "ratio": 1.0,
            "seconds": p["train_seconds"],
            "kmeans_share": 0.0,
        },
        {
            **common,
            "method": "3DGS + post-hoc VQ",
            "psnr": p["psnr"],
            "ssim": p["ssim"],
            "gaussians": p["num_gaussians"],
            "bytes": p["vqp_bytes"],
            "ratio": ply / p["vqp_bytes"],
            "seconds": p["train_seconds"] + p["encode_seconds"],
            "kmeans_share": p["encode_seconds"] / (p["train_seconds"] + p["encode_seconds"]),
        },
        {
            **common,
            "method": "QAT",
            "psnr": q["psnr"],
            "ssim": q["ssim"],
            "gaussians": q["num_gaussians"],
            "gaussians_before_prune": q["num_gaussians_before_prune"],
            "bytes": q["vqp_bytes"],
            "ratio": ply / q["vqp_bytes"],
            "seconds": q["train_seconds"] + q["encode_seconds"],
            "kmeans_share": q["kmeans_seconds"] / (q["train_seconds"] + q["encode_seconds"]),
        },
    ]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=7000, help="training steps per run (default 7000)")
    ap.add_argument("--quick", action="store_true", help="1000 steps on 4x smaller photos: a smoke run")
    ap.add_argument("--scenes", default="lego,fox", help="comma-separated: " + ",".join(SCENES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="", help="write the rows as JSON here")
    ap.add_argument("--data", help="shared data dir (default: VQPRESS_TEST_DATA, then ../shared/data)")
    args = ap.parse_args()
    data = data_dir(args.data)
    if not data.is_dir():
        raise SystemExit(f"{data}: no shared data; pass --data DIR or set VQPRESS_TEST_DATA")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = 1000 if args.quick else args.steps
    downscale = 4 if args.quick else 1
    t0 = time.time()
    rows: list[dict] = []
    for name in args.scenes.split(","):
        scene_rows = run_scene(data, name, steps, args.seed, downscale, device)
        for r in scene_rows:
            print(
                f"{name} {r['method']}: PSNR {r['psnr']:.2f}  k-means share {100 * r['kmeans_share']:.1f}%", flush=True
            )
        rows += scene_rows
    dev_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"device: {dev_name}  torch {torch.__version__}  steps {steps}  seed {args.seed}\n")
    print("| scene | size | method | PSNR | SSIM | Gaussians | bytes | ratio | wall s | k-means share |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['scene']} | {r['size']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['gaussians']:,} "
            f"| {r['bytes']:,} | {r['ratio']:.1f} | {r['seconds']:.1f} | {100 * r['kmeans_share']:.1f}% |"
        )
    print(f"\ntotal bench time {time.time() - t0:.0f} s")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"device": dev_name, "steps": steps, "seed": args.seed, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
