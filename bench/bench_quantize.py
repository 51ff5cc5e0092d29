"""Quantization end to end: read .ply -> 4 codebooks x 10 Lloyd iterations -> write .vqp, time per stage.

    python bench/bench_quantize.py [--data DIR] [--device cuda|cpu] [--quick] [--scene X.ply] [--repeats N]
                                   [--out results.json]

Scenes: trained_lego_sh3 (71,616 Gaussians, SH 3) and a 3M-Gaussian SH-3 scene made by tiling the
lego scene on a grid and jittering each copy (written to a temporary directory as .ply first, so
the read time is that of a real file). No evaluation: this is the cost of compressing.
--quick: the lego scene only, 3 iterations. Device: CUDA when present unless --device says.
--repeats: quantize the lego scene that many times (a loaded machine's spread shows); each row notes
the 1-minute load average when it started. Which code runs is the one on PYTHONPATH, so the same
script measures two checkouts back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
LEGO = Path("trained_lego_sh3") / "lego_7k.ply"
TILED_N = 3_000_000


def data_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("VQPRESS_TEST_DATA") or REPO.parent / "shared" / "data")


def make_tiled(src: Path, dst: Path, n: int, seed: int = 0) -> None:
    """Tile the scene on a cubic grid (spacing = its extent) until n Gaussians, jitter every attribute."""
    from vqpress_server.core.splats.formats import load_scene, write_splats
    from vqpress_server.core.splats.model import GaussianSplats

    s, _ = load_scene(src)
    reps = -(-n // s.num_gaussians)
    side = int(np.ceil(reps ** (1 / 3)))
    g = torch.Generator().manual_seed(seed)
    lo, hi = s.means.min(0).values, s.means.max(0).values
    span = hi - lo
    cells = torch.stack(torch.meshgrid(*(torch.arange(side),) * 3, indexing="ij"), -1).reshape(-1, 3)[:reps].float()
    idx = torch.arange(reps * s.num_gaussians) % s.num_gaussians
    idx, cells = idx[:n], cells.repeat_interleave(s.num_gaussians, 0)[:n]

    def jit(t: torch.Tensor, sigma: float) -> torch.Tensor:
        return t + sigma * torch.randn(t.shape, generator=g)

    big = GaussianSplats(
        means=jit(s.means[idx] + cells * span, 1e-3 * float(span.norm())),
        quats=jit(s.quats[idx], 0.02),
        scales=jit(s.scales[idx], 0.05),
        opacities=jit(s.opacities[idx], 0.1),
        sh0=jit(s.sh0[idx], 0.02),
        shN=jit(s.shN[idx], 0.005),
    )
    write_splats(big, dst)


def run_one(src: Path, dst: Path, iters: int, device: str) -> dict:
    from vqpress_server.core.splats.compress import compress_file
    from vqpress_server.core.splats.quantize import QuantizeConfig

    cfg = replace(QuantizeConfig(), kmeans_iters=iters)
    if device == "cuda":
        torch.cuda.synchronize()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    rep = compress_file(src, dst, cfg, evaluate=False, device=device)
    total = time.perf_counter() - t0
    d = rep.as_dict()
    return {
        "scene": src.name,
        "num_gaussians": d["num_gaussians"],
        "device": device,
        "iters": iters,
        "input_bytes": d["input_bytes"],
        "output_bytes": d["output_bytes"],
        "ratio": d["ratio"],
        "bits_per_gaussian": d["bits_per_gaussian"]["total"],
        "timings_s": d["timings_s"],
        "total_s": total,
        "load_avg_1min": load,
        "threads": torch.get_num_threads(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="shared data dir (default: VQPRESS_TEST_DATA, then ../shared/data)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-tiled", action="store_true", help="lego only (the 3M scene takes long on a CPU)")
    ap.add_argument("--scene", action="append", default=[], help="also quantize this .ply (repeatable)")
    ap.add_argument("--repeats", type=int, default=1, help="quantize the lego scene this many times")
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    src = data_dir(args.data) / LEGO
    if not src.is_file():
        print(f"no {LEGO} under {data_dir(args.data)}; nothing to measure")
        return 0
    iters = 3 if args.quick else 10
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(max(1, args.repeats)):
            rows.append(run_one(src, Path(tmp) / "lego.vqp", iters, args.device))
        for extra in args.scene:
            rows.append(run_one(Path(extra), Path(tmp) / (Path(extra).stem + ".vqp"), iters, args.device))
        if not args.quick and not args.skip_tiled:
            big = Path(tmp) / "lego_tiled_3m.ply"
            t0 = time.perf_counter()
            make_tiled(src, big, TILED_N)
            print(f"made {big.name} ({big.stat().st_size:,} B) in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            rows.append(run_one(big, Path(tmp) / "tiled.vqp", iters, args.device))

    stages = [
        "read",
        "repair",
        "importance",
        "sort",
        "quantize:dc",
        "quantize:sh",
        "quantize:scale",
        "quantize:rot",
        "encode",
        "write",
    ]
    print(
        f"\nquantize end to end on {args.device} ({torch.__version__}), {iters} Lloyd iterations, default codebooks\n"
    )
    print("| scene | N | load | " + " | ".join(stages) + " | total s | .vqp bytes | ratio | bits/G |")
    print("|---|---:|---:|" + "---:|" * len(stages) + "---:|---:|---:|---:|")
    for r in rows:
        t = r["timings_s"]
        cells = " | ".join(f"{t.get(s, 0.0):.2f}" for s in stages)
        print(
            f"| {r['scene']} | {r['num_gaussians']:,} | {r['load_avg_1min']:.1f} | {cells} | {r['total_s']:.2f} | "
            f"{r['output_bytes']:,} | {r['ratio']:.1f}x | {r['bits_per_gaussian']:.1f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps({"device": args.device, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
