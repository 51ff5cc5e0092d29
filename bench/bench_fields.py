"""Neural-field benchmark on the Instant-NGP-class trainer: VQ-AD against its baselines.

Every method trains with the same sampler and schedule (``instant_ngp_train``: occupancy-grid
marcher at 1024 steps per box diagonal, 2^18 samples a step, warm-up + step decay, weight decay,
Huber loss, random backgrounds behind the photos' alpha) under the same decoder
(``instant_ngp_field``), for a wall-clock budget or a step count, and is measured on the decoded
.vqp: PSNR and SSIM on every held-out view (and the dataset's own test split when it has one),
bytes by section, peak GPU memory, training time. Methods (``--method``):

- ``ngp``: Instant-NGP's hash grid, 16 levels x 2 features to 2048^3, 2^19 rows (uncompressed);
- ``dense``: the uncompressed grid of VQ-AD's resolution (16 levels x F features to --max-res),
  then kmVQ (b = 4) and LRA (rank 1) of it post hoc;
- ``vqad-<b>``: sparse VQ-AD at b bits (fine levels only near occupied space), same levels;
- ``hash-<log2 T>``: the hash grid of ``ngp`` with 2^T rows (the equal-bytes baseline).

One method per process, so that methods can run side by side on one GPU; ``--summary`` merges the
JSON files and prints the table and the goals.

    python bench/bench_fields.py --method vqad-4 --time-budget 240 --out r/vqad-4.json
    python bench/bench_fields.py --summary r/*.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "server"), str(REPO / "client")]

from vqpress_server.core.data.dataset import DatasetConfig, load_dataset  # noqa: E402
from vqpress_server.core.fields.config import (  # noqa: E402
    DenseGridConfig,
    HashGridConfig,
    VqadGridConfig,
    instant_ngp_field,
    instant_ngp_train,
)
from vqpress_server.core.fields.model import NeuralField  # noqa: E402
from vqpress_server.core.fields.posthoc import kmvq_field, lra_field  # noqa: E402
from vqpress_server.core.fields.serialize import decode_field, encode_field, field_report  # noqa: E402
from vqpress_server.core.fields.train import SceneBox, field_occupancy, fit_radiance, render_field  # noqa: E402
from vqpress_server.core.metrics import psnr, ssim  # noqa: E402


def load_scene(data: Path, name: str, downscale: int = 1) -> dict[str, Any]:
    """Photos with their alpha (composited only in training, on random backgrounds)."""
    if name == "lego":
        cfg = DatasetConfig(test_every=8, keep_alpha=True, downscale=downscale)
        ds = load_dataset(data / "nerf_synthetic_lego_400", cfg)
        return {"name": "lego_400", "ds": ds, "box": SceneBox(), "background": (1.0, 1.0, 1.0)}
    ds = load_dataset(data / "instant_ngp_fox", DatasetConfig(downscale=4 * downscale, test_every=8, keep_alpha=True))
    return {
        "name": "fox_4x",
        "ds": ds,
        "box": SceneBox.from_cameras(ds.cameras, unbounded=True),
        "background": (0.0, 0.0, 0.0),
    }


def _rgba(ds: Any, i: int) -> torch.Tensor:  # [H, W, 4] straight rgb + alpha, or [H, W, 3]
    if ds.alphas is None:
        return ds.images[i]
    a = ds.alphas[i]
    bg = torch.tensor(ds.background)
    premult = ds.images[i] - bg * (1.0 - a)
    rgb = torch.where(a > 0, premult / a.clamp(min=1e-6), torch.zeros_like(premult)).clamp(0.0, 1.0)
    return torch.cat([rgb, a], -1)


def evaluate(model: NeuralField, scene: dict[str, Any], train: Any, views: int = 0) -> dict[str, Any]:
    """PSNR / SSIM over every held-out view (the first ``views`` when > 0), on the photos' own background."""
    march_steps = train.march_steps
    occ = field_occupancy(model, scene["box"], resolution=train.occupancy_resolution, march_steps=march_steps)
    ps, ss = [], []
    t0 = time.perf_counter()
    for img, cam in scene["ds"].split("test")[: views or None]:
        out = render_field(
            model, cam, box=scene["box"], background=scene["background"], march_steps=march_steps, occupancy=occ
        )
        ref = img.to(out.device)
        ps.append(psnr(out, ref))
        ss.append(ssim(out, ref))
    return {
        "psnr": float(np.mean(ps)),
        "ssim": float(np.mean(ss)),
        "views": len(ps),
        "render_s": time.perf_counter() - t0,
    }


def grid_for(method: str, max_res: int, features: int) -> Any:
    vq_levels = dict(levels=16, base_resolution=16, max_resolution=max_res, features=features, combine="concat")
    if method == "ngp":
        return instant_ngp_field().grid
    if method == "dense":
        return DenseGridConfig(**vq_levels, init_std=1e-4)
    if method.startswith("vqad-"):
        return VqadGridConfig(**vq_levels, bits=int(method[5:]), sparse=True, sparse_min_resolution=32)
    if method.startswith("hash-"):
        return HashGridConfig(
            levels=16,
            base_resolution=16,
            max_resolution=2048,
            features=2,
            log2_table_size=int(method[5:]),
            combine="concat",
            init_std=1e-4,
        )
    raise SystemExit(f"unknown method {method!r}")


def measure(
    name: str, model: NeuralField, scene: dict[str, Any], train: Any, views: int = 0, **metrics: Any
) -> dict[str, Any]:
    data = encode_field(model, {"box": [scene["box"].lo, scene["box"].hi]})
    decoded, _ = decode_field(data, device=next(model.parameters()).device)
    q = evaluate(decoded, scene, train, views)
    rep = field_report(name, data, model, psnr=q["psnr"], ssim=q["ssim"], **metrics)
    row = {"scene": scene["name"], **rep.as_dict(), "views": q["views"], "render_s": q["render_s"]}
    print(
        f"{scene['name']:9s} {name:10s} {q['psnr']:6.2f} dB  SSIM {q['ssim']:.4f}  ({q['views']} views)"
        f"  {rep.total_bytes / 2**20:9.3f} MiB (grid {rep.grid_bytes / 2**20:.3f})"
        f"  train {metrics.get('train_time_s') or 0:6.1f} s"
        f"  peak {(metrics.get('peak_memory_bytes') or 0) / 2**30:6.2f} GiB",
        flush=True,
    )
    return row


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    torch.backends.cuda.matmul.allow_tf32 = True
    device = "cuda" if torch.cuda.is_available() else "cpu"
    scene = load_scene(args.data, args.scene, args.downscale)
    ds = scene["ds"]
    imgs = [_rgba(ds, i) for i in ds.train_indices]
    cams = [ds.cameras[i] for i in ds.train_indices]
    train = instant_ngp_train(steps=args.steps, time_budget_s=args.time_budget)
    if args.target_samples:
        train = dataclasses.replace(train, target_samples=args.target_samples)
    if args.smoke:  # a CPU check of the whole pipeline, not a measurement
        train = dataclasses.replace(
            train, target_samples=4096, march_steps=128, occupancy_resolution=32, occupancy_warmup=4
        )
    cfg = instant_ngp_field(grid_for(args.method, args.max_res, args.features))
    print(
        f"== {scene['name']} {args.method}: {len(imgs)} train / {len(ds.test_indices)} test views on {device}",
        flush=True,
    )
    res = fit_radiance(imgs, cams, cfg, train, box=scene["box"], background=scene["background"], device=device)
    last = res.history[-1] if res.history else {}
    print(f"   {res.step} steps in {res.train_time_s:.1f} s, last {last}", flush=True)
    m = {"train_time_s": res.train_time_s, "peak_memory_bytes": res.peak_memory_bytes}
    rows = [measure(args.method, res.field, scene, train, args.views, **m)]
    rows[-1]["steps"] = res.step
    rows[-1]["history"] = res.history
    if args.method == "dense":
        for name, f in (
            ("kmvq-4", lambda: kmvq_field(res.field, bits=4)),
            ("lra-1", lambda: lra_field(res.field, rank=1)),
        ):
            t0 = time.perf_counter()
            post = f()
            rows.append(measure(name, post, scene, train, args.views, train_time_s=time.perf_counter() - t0))
    return rows


def summary(paths: list[Path]) -> None:
    rows = [r for p in paths for r in json.loads(p.read_text())["rows"]]
    for scene in sorted({r["scene"] for r in rows}):
        r = {row["method"]: row for row in rows if row["scene"] == scene}
        print(f"\n| {scene} | PSNR | SSIM | file KiB | grid KiB | train s | steps | peak GiB |")
        print("|---|---|---|---|---|---|---|---|")
        for name, row in sorted(r.items(), key=lambda kv: -kv[1]["total_bytes"]):
            peak = f"{row['peak_memory_bytes'] / 2**30:.2f}" if row.get("peak_memory_bytes") else "-"
            print(
                f"| {name} | {row['psnr']:.2f} | {row['ssim']:.4f} | {row['total_bytes'] / 1024:.0f} |"
                f" {row['grid_bytes'] / 1024:.0f} | {row['train_time_s']:.0f} | {row.get('steps', '-')} | {peak} |"
            )
        b4, dense = r.get("vqad-4"), r.get("dense")
        if b4 and dense:
            print(
                f"-- vqad-4 vs dense: {dense['grid_bytes'] / b4['grid_bytes']:.1f}x smaller grid,"
                f" {b4['psnr'] - dense['psnr']:+.2f} dB"
            )
        if b4:
            hashes = [v for k, v in r.items() if k.startswith("hash-")]
            for h in hashes:
                print(
                    f"-- vqad-4 vs {h['method']}: grid bytes ratio {h['grid_bytes'] / b4['grid_bytes']:.2f},"
                    f" {b4['psnr'] - h['psnr']:+.2f} dB"
                )
        b8 = r.get("vqad-8")
        if b4 and b8 and b4.get("peak_memory_bytes") and b8.get("peak_memory_bytes"):
            print(f"-- peak memory b=8 / b=4 = {b8['peak_memory_bytes'] / b4['peak_memory_bytes']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--scene", choices=("lego", "fox"), default="lego")
    ap.add_argument("--method", default="vqad-4", help="ngp | dense | vqad-<bits> | hash-<log2 rows>")
    ap.add_argument("--steps", type=int, default=20_000, help="training steps (default 20000)")
    ap.add_argument("--time-budget", type=float, default=0.0, help="seconds of training; the schedule follows it")
    ap.add_argument("--max-res", type=int, default=256, help="finest level of the dense and VQ-AD grids (default 256)")
    ap.add_argument("--features", type=int, default=2, help="features per level of dense and VQ-AD (default 2)")
    ap.add_argument("--target-samples", type=int, default=0, help="samples per step (default: the preset's 2^18)")
    ap.add_argument("--downscale", type=int, default=1, help="reduce the photos by this factor (default 1)")
    ap.add_argument("--smoke", action="store_true", help="tiny sample budget and grids: checks the pipeline on a CPU")
    ap.add_argument("--views", type=int, default=0, help="evaluate the first N held-out views only (default: all)")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    ap.add_argument("--summary", type=Path, nargs="+", help="merge these JSON files into a table")
    args = ap.parse_args()
    if args.summary:
        summary(args.summary)
        return
    rows = run(args)
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))


if __name__ == "__main__":
    main()
