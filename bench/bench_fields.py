"""Neural-field benchmark: quality vs bytes of VQ-AD and its baselines, training time and peak memory.

For each scene (lego_400: NeRF-synthetic, every 8th image held out; fox: instant-ngp photos,
downscaled, every 8th held out, unbounded: the room around the fox is contracted into the field
unless --bounded-fox) it trains
- VQ-AD at b in {2, 4, 6, 8} (the memory-efficient lookup), on the dense grid and on the sparse grid
  (fine levels allocated near occupied space only),
- the uncompressed dense grid of the same resolution, then kmVQ (b = 4) and LRA (rank 2) of it post hoc,
- Instant-NGP hash grids with the same grid bytes as VQ-AD at b = 4, dense and sparse,
and measures PSNR/SSIM on the held-out views of the decoded .vqp, its bytes, training time and peak
GPU memory. It also runs a few steps of the dense kaolin-wisp-style VQ-AD lookup (which materialises
[samples, 8, 2^b, k]) to compare peak memory.

    python bench/bench_fields.py --scene lego --out lego.json   # one scene (~5 min on an H100)
    python bench/bench_fields.py --quick --out r.json           # lego, 400 steps, b in {2, 4, 8}
"""

from __future__ import annotations

import argparse
import json
import math
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
    DecoderConfig,
    DenseGridConfig,
    FieldConfig,
    HashGridConfig,
    TrainConfig,
    VqadGridConfig,
)
from vqpress_server.core.fields.grid import VqadGrid  # noqa: E402
from vqpress_server.core.fields.model import NeuralField  # noqa: E402
from vqpress_server.core.fields.posthoc import kmvq_field, lra_field  # noqa: E402
from vqpress_server.core.fields.serialize import decode_field, encode_field, field_report  # noqa: E402
from vqpress_server.core.fields.train import SceneBox, fit_radiance, radiance_fn, render_field  # noqa: E402
from vqpress_server.core.metrics import psnr, ssim  # noqa: E402
from vqpress_server.core.render.volume import camera_rays, render_rays  # noqa: E402

GRID = dict(levels=4, base_resolution=16, max_resolution=64, features=8)
DECODER = DecoderConfig(hidden=64, layers=2, color_layers=2)


def scenes(data: Path, which: str, unbounded: bool = True) -> list[dict[str, Any]]:
    out = []
    if which in ("lego", "all"):
        lego = load_dataset(data / "nerf_synthetic_lego_400", DatasetConfig(test_every=8))
        out.append({"name": "lego_400", "ds": lego, "box": SceneBox(), "background": (1.0, 1.0, 1.0)})
    if which in ("fox", "all"):
        fox = load_dataset(data / "instant_ngp_fox", DatasetConfig(downscale=4, test_every=8))
        box = SceneBox.from_cameras(fox.cameras, unbounded=unbounded)
        out.append({"name": "fox_4x", "ds": fox, "box": box, "background": (0.0, 0.0, 0.0)})
    return out


def evaluate(model: NeuralField, scene: dict[str, Any], samples: int, max_views: int) -> tuple[float, float]:
    ps, ss = [], []
    for img, cam in scene["ds"].split("test")[:max_views]:
        out = render_field(model, cam, box=scene["box"], samples_per_ray=samples, background=scene["background"])
        ref = img.to(out.device)
        ps.append(psnr(out, ref))
        ss.append(ssim(out, ref))
    return float(np.mean(ps)), float(np.mean(ss))


def run_method(
    method: str, model: NeuralField, scene: dict[str, Any], train: TrainConfig, metrics: dict[str, Any], max_views: int
) -> dict[str, Any]:
    data = encode_field(model, {"box": [scene["box"].lo, scene["box"].hi]})
    decoded, _ = decode_field(data, device=next(model.parameters()).device)
    p, s = evaluate(decoded, scene, train.samples_per_ray, max_views)
    rep = field_report(method, data, model, psnr=p, ssim=s, **metrics)
    row = {"scene": scene["name"], **rep.as_dict()}
    print(
        f"{scene['name']:9s} {method:12s} {p:6.2f} dB  SSIM {s:.3f}  {rep.total_bytes / 1024:9.1f} KiB"
        f"  grid {rep.bits_per_vertex:6.2f} bit/vertex  train {metrics.get('train_time_s') or 0:6.1f} s"
        f"  peak {(metrics.get('peak_memory_bytes') or 0) / 2**20:8.1f} MiB",
        flush=True,
    )
    return row


def fit(scene: dict[str, Any], grid: Any, train: TrainConfig, device: str) -> Any:
    imgs, cams = zip(*scene["ds"].split("train"), strict=True)
    cfg = FieldConfig(dims=3, grid=grid, decoder=DECODER)
    return fit_radiance(
        list(imgs), list(cams), cfg, train, box=scene["box"], background=scene["background"], device=device
    )


def wisp_memory(scene: dict[str, Any], bits: int, train: TrainConfig, device: str, steps: int = 5) -> dict[str, Any]:
    """Peak memory of a few training steps with the dense [samples, 8, 2^b, k] lookup (kaolin-wisp
    style), same rays and samples per step as the real training (no occupancy skipping)."""
    model = NeuralField(FieldConfig(dims=3, grid=VqadGridConfig(bits=bits, sparse=False, **GRID), decoder=DECODER)).to(
        device
    )
    assert isinstance(model.grid, VqadGrid)
    model.grid.reference = True
    opt = torch.optim.Adam(model.parameters(), lr=train.lr)
    aabb = scene["box"].tensor(device)
    fn = radiance_fn(model, aabb, scene["box"].unbounded)
    img, cam = scene["ds"].split("train")[0]
    origins, dirs = camera_rays(cam, device)
    target = img.to(device).reshape(-1, 3)
    gen = torch.Generator(device=device).manual_seed(0)
    bg = torch.tensor(scene["background"], device=device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        t0 = time.perf_counter()
        for _ in range(steps):
            sel = torch.randint(0, target.shape[0], (train.batch_size,), device=device, generator=gen)
            rgb, _, _ = render_rays(
                fn,
                origins[sel],
                dirs[sel],
                aabb,
                train.samples_per_ray,
                background=bg,
                generator=gen,
                unbounded=scene["box"].unbounded,
            )
            loss = torch.mean((rgb - target[sel]) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        return {
            "bits": bits,
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated()),
            "step_s": (time.perf_counter() - t0) / steps,
        }
    except torch.OutOfMemoryError:
        return {"bits": bits, "peak_memory_bytes": None, "oom": True}
    finally:
        del model, opt
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--scene", choices=("lego", "fox", "all"), default="all", help="scenes to run (default all)")
    ap.add_argument("--steps", type=int, default=1500, help="training steps per method (default 1500)")
    ap.add_argument("--batch", type=int, default=8192, help="rays per step (default 8192)")
    ap.add_argument("--samples", type=int, default=64, help="samples per ray in training and evaluation (default 64)")
    ap.add_argument("--views", type=int, default=4, help="held-out views evaluated per scene (default 4)")
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 4, 6, 8], help="VQ-AD bit widths (default 2 4 6 8)")
    ap.add_argument("--max-res", type=int, help=f"finest grid resolution (default {GRID['max_resolution']})")
    ap.add_argument("--levels", type=int, help=f"grid levels (default {GRID['levels']})")
    ap.add_argument("--forward", choices=("hard", "soft"), default="hard", help="VQ-AD training forward (default hard)")
    ap.add_argument("--bounded-fox", action="store_true", help="fox in its object box only (no contraction)")
    ap.add_argument("--only-vqad", action="store_true", help="skip the uncompressed, post-hoc and hash baselines")
    ap.add_argument("--no-dense-vqad", action="store_true", help="skip VQ-AD on the dense grid")
    ap.add_argument("--no-wisp", action="store_true", help="skip the wisp-style memory runs")
    ap.add_argument("--quick", action="store_true", help="lego only, 400 steps, b in {2, 4, 8}")
    ap.add_argument("--out", type=Path, help="write all rows as JSON here")
    args = ap.parse_args()
    if args.max_res:
        GRID["max_resolution"] = args.max_res
    if args.levels:
        GRID["levels"] = args.levels
    device = "cuda" if torch.cuda.is_available() else "cpu"
    steps = 400 if args.quick and args.steps == 1500 else args.steps
    train = TrainConfig(
        steps=steps,
        batch_size=args.batch,
        samples_per_ray=args.samples,
        lr=1e-2,
        mlp_lr=1e-2,
        log_every=max(1, steps // 10),
        occupancy_warmup=min(256, steps // 4),
        occupancy_resolution=64,
    )
    bit_list = [2, 4, 8] if args.quick else sorted(set(args.bits) | {4})
    rows: list[dict[str, Any]] = []
    wisp: list[dict[str, Any]] = []
    for scene in scenes(args.data, "lego" if args.quick else args.scene, not args.bounded_fox):
        print(
            f"== {scene['name']}: {len(scene['ds'].train_indices)} train / {len(scene['ds'].test_indices)} test views,"
            f" {tuple(scene['ds'].images[0].shape)}, {steps} steps x {args.batch} rays x {args.samples} samples"
            f" on {device}, grid {GRID}",
            flush=True,
        )
        vq_bytes = {}
        for sparse in (False, True):
            if not sparse and args.no_dense_vqad:
                continue
            for bits in bit_list:
                grid = VqadGridConfig(bits=bits, sparse=sparse, forward=args.forward, **GRID)
                res = fit(scene, grid, train, device)
                m = {"train_time_s": res.train_time_s, "peak_memory_bytes": res.peak_memory_bytes}
                name = f"vqad{'-sparse' if sparse else ''}{'-soft' if args.forward == 'soft' else ''} b={bits}"
                rows.append(run_method(name, res.field, scene, train, m, args.views))
                rows[-1]["allocated_vertices"] = sum(res.field.grid.allocated_vertices())
                vq_bytes[name] = rows[-1]["grid_bytes"]
                del res
        if args.only_vqad:
            save(args.out, rows, wisp, steps, args)
            continue
        dense = fit(scene, DenseGridConfig(**GRID), train, device)
        m = {"train_time_s": dense.train_time_s, "peak_memory_bytes": dense.peak_memory_bytes}
        rows.append(run_method("dense", dense.field, scene, train, m, args.views))
        t0 = time.perf_counter()
        km = kmvq_field(dense.field, bits=4)
        rows.append(run_method("kmvq b=4", km, scene, train, {"train_time_s": time.perf_counter() - t0}, args.views))
        t0 = time.perf_counter()
        lra = lra_field(dense.field, rank=2)
        rows.append(run_method("lra r=2", lra, scene, train, {"train_time_s": time.perf_counter() - t0}, args.views))
        del dense, km, lra
        # Hash grids: the power-of-two table whose fp16 rows come nearest to each VQ-AD b=4's grid bytes.
        for ref in ("vqad b=4", "vqad-sparse b=4"):
            if ref not in vq_bytes:
                continue
            log2_t = max(4, round(math.log2(vq_bytes[ref] / (GRID["levels"] * GRID["features"] * 2))))
            same = [r for r in rows if r["method"] == f"hash T=2^{log2_t}" and r["scene"] == scene["name"]]
            if same:  # one table size serves both
                same[0]["equal_bytes_to"].append(ref)
                continue
            hres = fit(scene, HashGridConfig(log2_table_size=log2_t, **GRID), train, device)
            m = {"train_time_s": hres.train_time_s, "peak_memory_bytes": hres.peak_memory_bytes}
            rows.append(run_method(f"hash T=2^{log2_t}", hres.field, scene, train, m, args.views))
            rows[-1]["equal_bytes_to"] = [ref]
            del hres
        if device == "cuda" and not args.no_wisp:
            for bits in (2, 4, 6) if not args.quick else (2, 4):
                w = {"scene": scene["name"], **wisp_memory(scene, bits, train, device)}
                wisp.append(w)
                peak = "OOM" if w.get("oom") else f"{w['peak_memory_bytes'] / 2**20:.1f} MiB"
                print(f"{scene['name']:9s} wisp-dense b={bits}: peak {peak}", flush=True)
        goals(rows, scene["name"])
        save(args.out, rows, wisp, steps, args)


def save(out: Path | None, rows: list, wisp: list, steps: int, args: argparse.Namespace) -> None:
    """Write what was measured so far (after every scene: a run cut short keeps its rows)."""
    if out:
        doc = {"rows": rows, "wisp_dense": wisp, "steps": steps, "batch": args.batch, "samples": args.samples}
        out.write_text(json.dumps({**doc, "grid": GRID, "forward": args.forward}, indent=1))


def goals(rows: list[dict[str, Any]], scene: str) -> None:
    r = {row["method"]: row for row in rows if row["scene"] == scene}
    dense = r["dense"]
    for grid in ("vqad", "vqad-sparse"):
        b4 = r.get(f"{grid} b=4")
        if b4 is None:
            continue
        line = (
            f"-- {scene} {grid}: b=4 is {dense['grid_bytes'] / b4['grid_bytes']:.1f}x smaller than dense"
            f" (grid sections), {dense['psnr'] - b4['psnr']:+.2f} dB loss"
        )
        hash_row = next((v for v in r.values() if f"{grid} b=4" in v.get("equal_bytes_to", [])), None)
        if hash_row is not None:
            line += f"; vs {hash_row['method']} at equal bytes: {b4['psnr'] - hash_row['psnr']:+.2f} dB"
        b8 = r.get(f"{grid} b=8")
        if b8 is not None and b4["peak_memory_bytes"] and b8["peak_memory_bytes"]:
            line += f"; peak memory b=8 / b=4 = {b8['peak_memory_bytes'] / b4['peak_memory_bytes']:.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
